"""The accept/resample rule of speculative sampling (engine/speculative.py) against an enumeration:
over every draft token of a tiny vocabulary, keep-or-replace must give back the target exactly."""

from __future__ import annotations

import pytest
import torch

from forgerl.engine.base import SamplingParams
from forgerl.engine.speculative import (
    DEPTH_COST,
    PROBE_EVERY,
    DraftDepth,
    acceptance_probability,
    filtered_probs,
    output_distribution,
    propose,
    residual,
    verify_row,
)


def enumerate_output(p: list[float], q: list[float]) -> list[float]:
    """P(emitted = x) by enumeration in plain floats: draft d with prob q(d), kept with prob
    min(1, p(d)/q(d)), otherwise replaced by a draw from normalise(max(0, p - q))."""
    vocab = range(len(p))
    rest = [max(0.0, p[x] - q[x]) for x in vocab]
    out = [0.0] * len(p)
    for d in vocab:
        if q[d] == 0:
            continue
        keep = min(1.0, p[d] / q[d])
        out[d] += q[d] * keep
        for x in vocab:
            out[x] += q[d] * (1 - keep) * rest[x] / sum(rest)
    return out


CASES = [
    ([0.5, 0.3, 0.2, 0.0], [0.1, 0.1, 0.1, 0.7]),  # the draft loves a token the target forbids (top-k)
    ([0.25, 0.25, 0.25, 0.25], [1.0, 0.0, 0.0, 0.0]),  # a one-hot draft
    ([0.0, 0.0, 1.0, 0.0], [0.4, 0.3, 0.2, 0.1]),  # a one-hot target
    ([0.1, 0.2, 0.3, 0.4], [0.4, 0.3, 0.2, 0.1]),
]


@pytest.mark.parametrize("p,q", CASES)
def test_accept_or_resample_gives_the_target_exactly(p, q):
    expected = enumerate_output(p, q)
    assert expected == pytest.approx(p, abs=1e-12)  # the enumeration itself is the theorem
    got = output_distribution(torch.tensor(p, dtype=torch.float64), torch.tensor(q, dtype=torch.float64))
    assert got.tolist() == pytest.approx(p, abs=1e-12)


def test_acceptance_and_residual_rules():
    p, q = torch.tensor([0.5, 0.3, 0.2, 0.0]), torch.tensor([0.25, 0.5, 0.0, 0.25])
    assert acceptance_probability(p, q).tolist() == pytest.approx([1.0, 0.6, 0.0, 0.0])
    assert residual(p, q).tolist() == pytest.approx([0.25 / 0.45, 0.0, 0.2 / 0.45, 0.0])
    assert residual(p, p).tolist() == pytest.approx(p.tolist())  # nothing to correct: falls back to p


def test_verify_row_samples_the_target_with_a_bad_draft():
    """The real sampler (generator draws, two drafts) against the exact target: first and second
    emitted tokens' frequencies over 4000 runs within 0.04 (5 sigma), the second one's (about 1200
    runs) within 0.06 (4 sigma)."""
    torch.set_num_threads(1)
    params = SamplingParams(temperature=1.0)
    target = torch.log(torch.tensor([[0.4, 0.2, 0.1, 0.3], [0.1, 0.1, 0.2, 0.6], [0.7, 0.1, 0.1, 0.1]]))
    draft = torch.log(torch.tensor([0.05, 0.15, 0.3, 0.5]))
    q = filtered_probs(draft.unsqueeze(0), params)[0]
    gen = torch.Generator().manual_seed(1)
    first = torch.zeros(4)
    second_given_kept_draft = torch.zeros(4)
    runs, kept = 4000, 0
    for _ in range(runs):
        (d1,), _ = propose(draft.unsqueeze(0), [params], [gen], [True])
        emitted, accepted = verify_row(target[:2], [d1], [q], params, gen)
        first[emitted[0]] += 1
        if accepted == 1 and d1 == 3:  # the second row of `target` is the distribution after token 3
            kept += 1
            second_given_kept_draft[emitted[1]] += 1
    assert (first / runs).tolist() == pytest.approx([0.4, 0.2, 0.1, 0.3], abs=0.04)
    assert kept > 900
    assert (second_given_kept_draft / kept).tolist() == pytest.approx([0.1, 0.1, 0.2, 0.6], abs=0.06)


def test_greedy_keeps_drafts_while_they_equal_the_argmax():
    params = SamplingParams(temperature=0)
    logits = torch.tensor([[0.0, 3.0, 1.0], [2.0, 0.0, 1.0], [0.0, 0.0, 5.0]])
    gen = torch.Generator()
    assert verify_row(logits, [1, 0], [None, None], params, gen) == ([1, 0, 2], 2)  # all kept + bonus
    assert verify_row(logits, [1, 2], [None, None], params, gen) == ([1, 0], 1)  # second refused, corrected
    assert verify_row(logits, [0, 0], [None, None], params, gen) == ([1], 0)
    assert verify_row(logits[:1], [], [], params, gen) == ([1], 0)  # no drafts: plain decoding


def test_inactive_rows_draw_nothing_from_their_generator():
    params = SamplingParams(temperature=1.0)
    a, b = torch.Generator().manual_seed(5), torch.Generator().manual_seed(5)
    logits = torch.randn(2, 6)
    toks, qs = propose(logits, [params, params], [a, b], [True, False])
    assert toks[1] == -1 and qs[1] is None
    assert torch.rand((), generator=b) != torch.rand((), generator=a)  # a drew once, b did not


def test_draft_depth_follows_acceptance_and_probes():
    """Two refused rounds switch depths off; a probe round drafts one depth more; once drafts are
    accepted again the probes switch the depths back on one by one; good heads (a few refusals)
    keep the full depth; heads that go stale mid-request stop drafting within a dozen rounds."""
    depth = DraftDepth(3)
    limits = []
    for _ in range(2 * PROBE_EVERY):
        limits.append(depth.limit())
        depth.record(limits[-1], 0)
    assert limits[:3] == [3, 3, 0]  # two refused rounds are enough
    assert {i: n for i, n in enumerate(limits) if n and i >= 2} == {PROBE_EVERY - 1: 1, 2 * PROBE_EVERY - 1: 1}
    assert all(r <= DEPTH_COST for r in depth.rates)
    for _ in range(4 * PROBE_EVERY):  # the heads got good: probes see acceptance and switch depths back on
        n = depth.limit()
        depth.record(n, n)
    assert depth.limit() == 3
    good = DraftDepth(3)
    for i in range(10 * PROBE_EVERY):
        assert good.limit() == 3
        good.record(3, 0 if i % 20 in (13, 14) else 2 if i % 5 == 2 else 3)  # 70% kept at depth 3, runs of refusals
    stale = 0
    while good.limit() == 3:
        good.record(3, 0)
        stale += 1
    assert stale <= 12
    partial = DraftDepth(3)
    for _ in range(8):
        n = partial.limit()
        partial.record(n, min(n, 1))  # only depth 1 ever kept
    assert partial.limit() == 1
