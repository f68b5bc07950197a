"""MTP modules (model/mtp.py): structure, the window rule, the losses against direct computations."""

from __future__ import annotations

import pytest
import torch

from forgerl.model.loading import load_policy
from forgerl.model.mtp import (
    MTPShape,
    attach_mtp,
    expand_mtp,
    get_mtp,
    mtp_cross_entropy,
    mtp_logprobs,
    split_state,
    topk_kl,
    window_mask,
)


@pytest.fixture(scope="module")
def policy():
    torch.set_num_threads(1)
    model, _ = load_policy("tiny-random")
    attach_mtp(model, MTPShape(2, 1, 8), seed=1)
    return model


def test_attach_records_shape_and_names(policy) -> None:
    assert get_mtp(policy) is not None and policy.config.num_mtp_modules == 2
    main, mtp = split_state(policy.state_dict())
    assert mtp and not any(k.startswith("mtp.") for k in main)
    assert all(not k.startswith("mtp.") for k in mtp)


def test_window_mask_rule() -> None:
    valid = torch.tensor([[False, True, True, True, True, True]])
    allowed = window_mask(valid, 3, torch.float32)[0, 0] == 0
    for i in range(6):
        for j in range(6):
            expected = (i - 3 < j <= i and bool(valid[0, j])) or i == j
            assert bool(allowed[i, j]) == expected, (i, j)


def test_outputs_depend_only_on_the_window(policy) -> None:
    """Depth 1 at position i reads h0 and tokens at i-W+1..i+1 only: changing anything earlier
    leaves it unchanged (within float noise, 1e-5)."""
    heads = get_mtp(policy)
    ids = torch.randint(1, 2000, (1, 30), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        h0 = policy.model(input_ids=ids).last_hidden_state
        base = heads(h0, ids, policy.model.embed_tokens)[0]
        h0b, idsb = h0.clone(), ids.clone()
        h0b[:, :10] += 1.0
        idsb[:, :11] = 7
        other = heads(h0b, idsb, policy.model.embed_tokens)[0]
    assert torch.allclose(base[:, 10 + heads.window:], other[:, 10 + heads.window:], atol=1e-5)
    assert not torch.allclose(base[:, 10], other[:, 10], atol=1e-3)


def test_cross_entropy_matches_direct_computation(policy) -> None:
    heads = get_mtp(policy)
    ids = torch.randint(1, 2000, (2, 12), generator=torch.Generator().manual_seed(1))
    mask = torch.ones_like(ids)
    mask[0, 9:] = 0
    with torch.no_grad():
        h0 = policy.model(input_ids=ids).last_hidden_state
        outs = heads(h0, ids, policy.model.embed_tokens)
        loss, per_depth = mtp_cross_entropy(policy.lm_head, outs, ids, mask)
        for k, out in enumerate(outs, start=1):
            nll, count = 0.0, 0
            for b in range(2):
                for i in range(12 - k - 1):
                    if mask[b, i + k + 1]:
                        logp = torch.log_softmax(policy.lm_head(out[b, i]).double(), -1)
                        nll -= float(logp[ids[b, i + k + 1]])
                        count += 1
            assert per_depth[k - 1] == pytest.approx(nll / count, abs=1e-4)
    assert float(loss) == pytest.approx(sum(per_depth) / 2, abs=1e-5)


def test_topk_kl_matches_direct_computation() -> None:
    g = torch.Generator().manual_seed(2)
    p = torch.log_softmax(torch.randn(3, 10, generator=g), -1)
    q = torch.log_softmax(torch.randn(3, 10, generator=g), -1)
    got = topk_kl(p, q, 4)
    for row in range(3):
        top = sorted(range(10), key=lambda t: -float(p[row, t]))[:4]
        z = sum(float(p[row, t].exp()) for t in top)
        ref = sum(float(p[row, t].exp()) / z * (float(p[row, t]) - torch.log(torch.tensor(z)).item() - float(q[row, t]))
                  for t in top)
        assert float(got[row]) == pytest.approx(ref, abs=1e-5)
    assert float(topk_kl(p, p, 10).abs().max()) < 1e-6  # full support, same distribution: 0


def test_expand_copies_the_last_module(policy) -> None:
    model, _ = load_policy("tiny-random")
    attach_mtp(model, MTPShape(1, 1, 8))
    heads = expand_mtp(model, 3)
    assert len(heads.depths) == 3 and model.config.num_mtp_modules == 3
    for a, b in zip(heads.depths[0].parameters(), heads.depths[2].parameters()):
        assert torch.equal(a, b) and a.data_ptr() != b.data_ptr()
    lp = mtp_logprobs(model.lm_head, torch.zeros(2, 5, 128))
    assert lp.shape == (2, 5, model.config.vocab_size)


def test_dependency_reach_is_exact(policy) -> None:
    """The deepest head's prediction of token t reads positions t - reach .. t - 1 of the input
    (hidden states and tokens): anything earlier changes nothing, position t - reach changes it."""
    heads = get_mtp(policy)
    depths, reach = len(heads.depths), heads.reach
    assert reach == depths * heads.window + 1
    ids = torch.randint(1, 2000, (1, 40), generator=torch.Generator().manual_seed(3))
    t = 39
    with torch.no_grad():
        h0 = policy.model(input_ids=ids).last_hidden_state
        base = heads(h0, ids, policy.model.embed_tokens)[-1][:, t - depths - 1]
        before = h0.clone()
        before[:, : t - reach] += 1.0
        same = heads(before, ids, policy.model.embed_tokens)[-1][:, t - depths - 1]
        edge = h0.clone()
        edge[:, t - reach] += 1.0
        moved = heads(edge, ids, policy.model.embed_tokens)[-1][:, t - depths - 1]
    assert torch.allclose(base, same, atol=1e-5)
    assert not torch.allclose(base, moved, atol=1e-4)
