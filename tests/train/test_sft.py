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


def _grads(model):
    return torch.cat([p.grad.flatten() for p in model.parameters() if p.grad is not None])


def _tiny_llama(tokenizer):
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(1)
    return LlamaForCausalLM(LlamaConfig(vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                                        num_attention_heads=4, num_key_value_heads=2, pad_token_id=tokenizer.pad_token_id))


def test_shared_prefix_loss_and_gradients_equal_the_padded_computation(tokenizer):
    """The shared-prefix path (prefix run once, KV repeated) against the plain padded batch:
    loss within 1e-5 relative, gradients within 1e-5 relative norm (fp32, CPU), for the MoE policy
    (same routing) and a Llama-style decoder."""
    from forgerl.train.rollouts import make_task
    from forgerl.train.sft import shared_prefix_length

    convs, _ = asyncio.run(verified_conversations(
        "tool-reasoning", range(4), make_task=lambda s: make_task("tool-reasoning", s, 1 + s % 3)[1]))
    fmt = get_format("minimax_m2")
    batch = [encode_conversation(tokenizer, fmt, c) for c in convs]
    prefix = shared_prefix_length(batch)
    assert prefix > 500  # the system prompt and the tool schemas
    assert not any(mask[:prefix + 1].count(1) for _, mask in batch)
    for model in (micro_policy(tokenizer), _tiny_llama(tokenizer)):
        results = []
        for share in (False, True):
            model.zero_grad()
            loss, n = sft_loss(model, batch, "cpu", share_prefix=share)
            loss.backward()
            results.append((float(loss.detach()), n, _grads(model)))
        (plain, n0, g0), (shared, n1, g1) = results
        assert n0 == n1
        assert abs(shared - plain) <= 1e-5 * abs(plain)
        assert float((g1 - g0).norm()) <= 1e-5 * float(g0.norm())


def test_shared_prefix_stops_at_the_first_difference_or_trainable_token():
    from forgerl.train.sft import shared_prefix_length

    assert shared_prefix_length([([1, 2, 3, 4], [0, 0, 0, 1]), ([1, 2, 5, 6], [0, 0, 0, 1])]) == 2
    assert shared_prefix_length([([1, 2, 3, 4], [0, 1, 1, 1]), ([1, 2, 3, 4], [0, 1, 1, 1])]) == 1
    assert shared_prefix_length([([1, 2, 3], [0, 0, 1]), ([1, 2, 3], [0, 0, 1])]) == 2  # one token left to run
    assert shared_prefix_length([([1, 2, 3], [0, 0, 1])]) == 0


def test_varied_styles_give_verified_conversations_in_several_styles():
    """`forgerl sft --varied-styles`: each conversation's solver style comes from its seed, every
    conversation still passes the verifier, and the lookup rounds really differ between seeds."""
    from forgerl.envs.tool_reasoning import generate_task

    seeds = range(24)
    convs, rejected = asyncio.run(verified_conversations("tool-reasoning", seeds, make_task=lambda s: generate_task(s, 3),
                                                         varied=True))
    plain, _ = asyncio.run(verified_conversations("tool-reasoning", seeds, make_task=lambda s: generate_task(s, 3)))
    assert rejected == 0 and len(convs) == len(seeds)

    def lookup_rounds(conv):
        return [len(m.tool_calls) for m in conv.messages if m.role == "assistant" and m.tool_calls[0].name == "lookup"]

    assert all(len(lookup_rounds(c)) == 1 for c in plain)  # the gold path: one parallel round
    assert sum(len(lookup_rounds(c)) > 1 for c in convs) >= 6  # split rounds in a good share of the varied data
    assert sum(c.messages[4].reasoning != p.messages[4].reasoning for c, p in zip(convs, plain, strict=True)) >= 12
