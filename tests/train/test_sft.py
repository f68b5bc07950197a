"""SFT bootstrap: verified gold conversations, token-exact encoding, and a loss that goes down."""

from __future__ import annotations

import asyncio

import torch

from forgerl.chat import get_format
from forgerl.model.loading import tiny_config
from forgerl.testing import MICRO_SHAPE
from forgerl.train.sft import encode_conversation, sft_loss, train_sft, verified_conversations


def micro_policy(tokenizer):
    from transformers import AutoModelForCausalLM

    torch.manual_seed(0)
    return AutoModelForCausalLM.from_config(tiny_config(len(tokenizer), tokenizer.pad_token_id, None, MICRO_SHAPE))


def test_gold_conversations_are_verified_and_masks_cover_assistant_text(tokenizer):
    convs, rejected = asyncio.run(verified_conversations("arithmetic", range(5)))
    assert len(convs) == 5 and rejected == 0
    fmt = get_format("minimax_m2")
    ids, mask = encode_conversation(tokenizer, fmt, convs[0])
    trained = tokenizer.decode([t for t, m in zip(ids, mask) if m])
    assert "submit_answer" in trained and "]~b]user" not in trained and "<response>" not in trained
    assert sum(mask) > 0 and len(ids) == len(mask)


def test_sft_lowers_the_loss(tokenizer):
    convs, _ = asyncio.run(verified_conversations("arithmetic", range(8)))
    fmt = get_format("minimax_m2")
    model = micro_policy(tokenizer)
    batch = [encode_conversation(tokenizer, fmt, c) for c in convs]
    with torch.no_grad():
        before = float(sft_loss(model, batch, "cpu")[0] / sft_loss(model, batch, "cpu")[1])
    losses = train_sft(model, tokenizer, fmt, convs, steps=12, batch_size=4, lr=5e-3, warmup=3)
    with torch.no_grad():
        loss_sum, n = sft_loss(model, batch, "cpu")
    assert len(losses) == 12
    assert float(loss_sum / n) < 0.7 * before
