"""SFT with the MTP loss (train/sft.py sft_mtp_loss): the SFT part is unchanged, the MTP part from
the shared-prefix forward equals the heads run over whole padded sequences, and the objective
trained is SFT + W x MTP."""

from __future__ import annotations

import asyncio

import pytest
import torch

from forgerl.chat import get_format
from forgerl.model.loading import load_policy
from forgerl.model.mtp import MTPShape, attach_mtp, get_mtp, mtp_cross_entropy
from forgerl.train.rollouts import make_task
from forgerl.train.sft import (
    MIN_SHARED_PREFIX,
    _mtp_setup,
    encode_conversation,
    sft_loss,
    sft_mtp_loss,
    shared_prefix_length,
    train_sft_encoded,
    verified_conversations,
)


@pytest.fixture(scope="module")
def batch(tokenizer):
    convs, _ = asyncio.run(verified_conversations(
        "tool-reasoning", range(3), make_task=lambda s: make_task("tool-reasoning", s, 1 + s % 3)[1]))
    fmt = get_format("minimax_m2")
    return [encode_conversation(tokenizer, fmt, c) for c in convs]


def policy(seed: int = 0, window: int = 8) -> torch.nn.Module:
    torch.set_num_threads(1)
    model, _ = load_policy("tiny-random", seed=seed)
    attach_mtp(model, MTPShape(2, 1, window), seed=seed)
    return model


def reference_mtp(model: torch.nn.Module, batch) -> tuple[float, list[float]]:
    """The heads over whole right-padded sequences, straight from MTPHeads.forward."""
    width = max(len(ids) for ids, _ in batch)
    ids = torch.zeros(len(batch), width, dtype=torch.long)
    mask = torch.zeros(len(batch), width, dtype=torch.bool)
    valid = torch.zeros(len(batch), width, dtype=torch.bool)
    for i, (seq, seq_mask) in enumerate(batch):
        ids[i, :len(seq)], mask[i, :len(seq)], valid[i, :len(seq)] = torch.tensor(seq), torch.tensor(seq_mask).bool(), True
    hidden = model.model(input_ids=ids, attention_mask=valid.long()).last_hidden_state
    outputs = get_mtp(model)(hidden, ids, model.model.embed_tokens, valid=valid)
    loss, per_depth = mtp_cross_entropy(model.lm_head, outputs, ids, mask)
    return float(loss), per_depth


@pytest.mark.parametrize("shared", [True, False])
def test_sft_and_mtp_terms_equal_the_direct_computations(batch, shared) -> None:
    """Shared prefix (the heads read the prefix's last positions, then each suffix) and plain
    padded rows: the SFT sum equals sft_loss's and the MTP loss the whole-sequence reference,
    within 1e-5 relative (fp32). The window (64) is wide enough for the heads to read into the
    shared prefix (the user's message before the first trained token is shorter than 2 x 64)."""
    model = policy(window=64)
    # unshared: the second row's first token changed, so the rows share no prefix and run padded
    rows = batch if shared else [batch[0], ([7] + batch[1][0][1:], batch[1][1])]
    assert (shared_prefix_length(rows) >= MIN_SHARED_PREFIX) == shared
    with torch.no_grad():
        sft_sum, n, mtp, per_depth = sft_mtp_loss(model, rows, "cpu")
        plain_sum, plain_n = sft_loss(model, rows, "cpu")
        ref, ref_depths = reference_mtp(model, rows)
    assert n == plain_n
    assert float(sft_sum) == pytest.approx(float(plain_sum), rel=1e-5)
    assert float(mtp) == pytest.approx(ref, rel=1e-5)
    assert per_depth == pytest.approx(ref_depths, rel=1e-5)


def test_objective_is_sft_plus_weighted_mtp_and_trains_the_heads(batch) -> None:
    """Same model, same batches: step 0's objective with W=0.5 exceeds W=0's by 0.5 x the logged
    mean MTP loss, and the heads move only when W > 0."""
    results = {}
    for weight in (0.0, 0.5):
        model = policy()
        before = [p.detach().clone() for p in get_mtp(model).parameters()]
        logged: list[list[float]] = []
        losses = train_sft_encoded(model, batch, steps=2, batch_size=2, lr=1e-3, warmup=1, mtp_weight=weight,
                                   mtp_log=lambda step, depths, logged=logged: logged.append(depths))
        moved = any(not torch.equal(a, b) for a, b in zip(before, get_mtp(model).parameters()))
        results[weight] = (losses, logged, moved)
    (plain, plain_logged, plain_moved), (mixed, mixed_logged, mixed_moved) = results[0.0], results[0.5]
    assert not plain_logged and len(mixed_logged) == 2 and len(mixed_logged[0]) == 2
    assert mixed[0] == pytest.approx(plain[0] + 0.5 * sum(mixed_logged[0]) / 2, rel=1e-5)
    assert mixed_moved and not plain_moved


def test_mtp_setup_defaults_and_errors() -> None:
    model, _ = load_policy("tiny-random")
    assert _mtp_setup(model, None, 0, 0) == 0.0 and get_mtp(model) is None
    with pytest.raises(ValueError, match="--mtp-modules"):
        _mtp_setup(model, 0.3, 0, 0)
    assert _mtp_setup(model, None, 1, 0) == 0.3 and get_mtp(model).shape.modules == 1
    assert _mtp_setup(model, 0.1, 3, 0) == 0.1 and get_mtp(model).shape.modules == 1  # heads already there
