"""Sampling filters against a plain-Python reference (exact kept sets), and the sampled token's
logprob is always the raw model log-softmax (abs tolerance 1e-6)."""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from forgerl.engine.base import SamplingParams
from forgerl.engine.sampling import filter_logits, sample_rows


def reference_kept(logits: list[float], p: SamplingParams) -> set[int]:
    scaled = [x / p.temperature for x in logits]
    order = sorted(range(len(scaled)), key=lambda i: -scaled[i])
    if 0 < p.top_k < len(scaled):
        order = order[: p.top_k]
    if p.top_p >= 1.0:
        return set(order)
    m = max(scaled[i] for i in order)
    z = sum(math.exp(scaled[i] - m) for i in order)
    kept, mass = [], 0.0
    for i in order:
        if mass >= p.top_p:
            break
        kept.append(i)
        mass += math.exp(scaled[i] - m) / z
    return set(kept)


@settings(max_examples=60, deadline=None)
@given(
    rows=st.lists(
        st.tuples(
            st.lists(st.integers(-50, 50).map(lambda x: x / 10), min_size=2, max_size=12, unique=True),
            st.floats(0.2, 2.0), st.integers(0, 15), st.sampled_from([1.0, 0.95, 0.7, 0.3, 0.01]),
        ),
        min_size=1, max_size=4,
    )
)
def test_filter_keeps_exactly_the_reference_set(rows):
    width = max(len(r[0]) for r in rows)
    logits = torch.full((len(rows), width), -1e4)
    params = []
    for i, (vals, temp, k, p) in enumerate(rows):
        logits[i, : len(vals)] = torch.tensor(vals)
        params.append(SamplingParams(temperature=temp, top_k=k, top_p=p))
    out = filter_logits(logits.float(), params)
    for i, (vals, temp, k, p) in enumerate(rows):
        kept = {j for j in range(len(vals)) if out[i, j] > float("-inf")}
        assert kept == reference_kept(vals, SamplingParams(temperature=temp, top_k=k, top_p=p))


def test_sampled_frequencies_follow_softmax_and_logprobs_are_raw():
    logits = torch.tensor([[2.0, 1.0, 0.0, -1.0]])
    gen = torch.Generator().manual_seed(0)
    counts = [0, 0, 0, 0]
    p = SamplingParams(temperature=1.0)
    raw = torch.log_softmax(logits, dim=-1)[0]
    for _ in range(4000):
        (tok,), (lp,) = sample_rows(logits, [p], [gen])
        counts[tok] += 1
        assert abs(lp - float(raw[tok])) < 1e-6
    expected = torch.softmax(logits, dim=-1)[0].tolist()
    for c, e in zip(counts, expected):
        assert abs(c / 4000 - e) < 0.03  # ~4 standard errors at n=4000
    # temperature changes what is sampled, not the logprob reported for it
    (tok,), (lp,) = sample_rows(logits, [SamplingParams(temperature=0.3)], [gen])
    assert abs(lp - float(raw[tok])) < 1e-6


def test_greedy_and_top_k_one_pick_the_argmax():
    logits = torch.randn(3, 50)
    gens = [torch.Generator().manual_seed(i) for i in range(3)]
    params = [SamplingParams(temperature=0), SamplingParams(top_k=1), SamplingParams(top_p=1e-6)]
    tokens, _ = sample_rows(logits, params, gens)
    assert tokens == torch.argmax(logits, dim=-1).tolist()


@pytest.mark.parametrize("temperature", [float("nan"), float("inf"), -1.0, 1e-320])
def test_sampling_params_refuse_non_finite_negative_and_overflowing_temperatures(temperature):
    from forgerl.errors import ConfigError

    with pytest.raises(ConfigError, match="temperature"):
        SamplingParams(temperature=temperature).validate()


def test_sampling_params_refuse_nan_top_p():
    from forgerl.errors import ConfigError

    with pytest.raises(ConfigError, match="top_p"):
        SamplingParams(top_p=float("nan")).validate()
