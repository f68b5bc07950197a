"""Advantages against loop references. Tolerance: float64, rtol 1e-12 / atol 1e-12."""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from forgerl.rl import LossInputError, group_normalized, reward_to_go, speed_reward, step_advantages, step_rewards

TOL = {"rtol": 1e-12, "atol": 1e-12}


def loop_group_normalized(rewards, group_ids, eps):
    out = []
    for r, g in zip(rewards, group_ids, strict=True):
        group = [x for x, h in zip(rewards, group_ids, strict=True) if h == g]
        mean = sum(group) / len(group)
        std = math.sqrt(sum((x - mean) ** 2 for x in group) / len(group))
        out.append(0.0 if max(group) == min(group) else (r - mean) / (std + eps))
    return torch.tensor(out, dtype=torch.float64)


def test_group_normalized_matches_a_loop_over_ragged_groups_in_any_order():
    rewards = [1.0, 0.0, 0.5, 1.0, 0.2, 0.2, 3.0, -1.0]
    groups = ["a", "b", "a", "c", "b", "b", "a", "d"]
    got = group_normalized(rewards, groups, eps=1e-6)
    torch.testing.assert_close(got, loop_group_normalized(rewards, groups, 1e-6), **TOL)
    assert got[3] == 0.0 and got[7] == 0.0  # groups of one carry no signal


def test_group_normalized_without_ids_is_one_group_and_accepts_tensors():
    r = torch.tensor([0.0, 1.0, 1.0, 0.0, 1.0])
    got = group_normalized(r)
    torch.testing.assert_close(got, loop_group_normalized(r.tolist(), [0] * 5, 1e-6), **TOL)
    assert abs(float(got.mean())) < 1e-12
    by_tensor_ids = group_normalized(r, torch.tensor([1, 1, 2, 2, 2]))
    torch.testing.assert_close(by_tensor_ids, group_normalized(r, [1, 1, 2, 2, 2]), **TOL)


@pytest.mark.parametrize("value", [0.0, 1.0, 0.1, -7.3, 1e-9])
def test_all_equal_rewards_give_exact_zeros_never_nan(value):
    got = group_normalized([value] * 6, eps=1e-12)
    assert got.tolist() == [0.0] * 6


def test_centring_only_when_std_scaling_is_off():
    got = group_normalized([1.0, 0.0, 0.0, 0.0], scale_by_std=False)
    torch.testing.assert_close(got, torch.tensor([0.75, -0.25, -0.25, -0.25], dtype=torch.float64), **TOL)


@settings(max_examples=50, deadline=None)
@given(st.lists(st.floats(-10, 10), min_size=2, max_size=16))
def test_group_normalized_properties(rewards):
    got = group_normalized(rewards, eps=1e-6)
    assert torch.isfinite(got).all()
    if max(rewards) - min(rewards) > 1e-3:
        assert abs(float(got.mean())) < 1e-9
        assert float(got.std(unbiased=False)) == pytest.approx(1.0, rel=1e-3)
        # order-preserving: a higher reward never gets a lower advantage
        order = sorted(range(len(rewards)), key=rewards.__getitem__)
        assert all(got[i] <= got[j] for i, j in zip(order, order[1:], strict=False))


@pytest.mark.parametrize(
    ("rewards", "ids", "message"),
    [
        ([1.0, float("nan")], None, "non-finite value\\(s\\) at index \\[1\\]"),
        ([1.0, float("inf"), 0.0], None, "at index \\[1\\]"),
        ([1.0, 0.0], ["a"], "group_ids has 1 entries but rewards has 2"),
        ([[1.0, 0.0]], None, "one-dimensional"),
    ],
)
def test_group_normalized_refuses_bad_rewards(rewards, ids, message):
    with pytest.raises(LossInputError, match=message):
        group_normalized(rewards, ids)


@pytest.mark.parametrize("gamma", [1.0, 0.9, 0.0])
def test_reward_to_go_matches_the_definition(gamma):
    r = [0.5, -0.1, 0.0, 2.0]
    want = [sum(gamma ** (k - t) * r[k] for k in range(t, len(r))) for t in range(len(r))]
    torch.testing.assert_close(reward_to_go(r, gamma), torch.tensor(want, dtype=torch.float64), **TOL)
    assert reward_to_go([], gamma).shape == (0,)


def test_reward_to_go_refuses_gamma_outside_the_unit_interval():
    with pytest.raises(LossInputError, match="gamma must be in \\[0, 1\\]"):
        reward_to_go([1.0], gamma=1.5)


def test_step_rewards_put_the_outcome_and_a_scalar_speed_on_the_last_call():
    got = step_rewards(1.0, [0.0, -0.2, 0.0], speed=0.5, alpha=2.0, beta=0.1)
    assert got == pytest.approx([0.0, -0.4, 0.05 + 1.0])


def test_step_rewards_with_per_call_speed():
    got = step_rewards(0.0, [-0.1, 0.0], speed=[0.3, -0.2], alpha=1.0, beta=0.5)
    assert got == pytest.approx([-0.1 + 0.15, -0.1])
    assert step_rewards(1.0, []) == []


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"outcome": 1.0, "process": [0.0, 0.0], "speed": [1.0]}, "speed has 1 values but process has 2"),
        ({"outcome": float("nan"), "process": [0.0]}, "must be finite"),
        ({"outcome": 1.0, "process": [float("-inf")]}, "must be finite"),
    ],
)
def test_step_rewards_refuse_bad_input(kwargs, message):
    with pytest.raises(LossInputError, match=message):
        step_rewards(**kwargs)


GROUP = [[0.0, -0.1, 1.0], [0.0, 0.0], [-0.2, 0.0, 0.0, 0.0], []]


def loop_returns(rewards, gamma):
    return [sum(gamma ** (k - t) * rewards[k] for k in range(t, len(rewards))) for t in range(len(rewards))]


@pytest.mark.parametrize("gamma", [1.0, 0.8])
@pytest.mark.parametrize("baseline", ["group_mean", "leave_one_out", "trajectory_mean"])
def test_step_advantages_match_a_loop(baseline, gamma):
    returns = [loop_returns(r, gamma) for r in GROUP]
    totals = [g[0] if g else 0.0 for g in returns]
    got = step_advantages(GROUP, gamma=gamma, baseline=baseline)
    assert [len(a) for a in got] == [len(r) for r in GROUP]
    for i, g in enumerate(returns):
        if baseline == "group_mean":
            b = sum(totals) / len(totals)
        elif baseline == "leave_one_out":
            b = sum(t for j, t in enumerate(totals) if j != i) / (len(totals) - 1)
        else:
            b = sum(g) / len(g) if g else 0.0
        torch.testing.assert_close(got[i], torch.tensor([x - b for x in g], dtype=torch.float64), **TOL)


def test_a_process_penalty_only_lowers_the_calls_up_to_it():
    clean = step_advantages([[0, 0, 0, 1.0], [0, 0, 0, 0.0]])
    penalised = step_advantages([[0, -0.5, 0, 1.0], [0, 0, 0, 0.0]], baseline="leave_one_out")
    clean_loo = step_advantages([[0, 0, 0, 1.0], [0, 0, 0, 0.0]], baseline="leave_one_out")
    diff = (penalised[0] - clean_loo[0]).tolist()
    assert diff == pytest.approx([-0.5, -0.5, 0.0, 0.0])
    assert clean[0].tolist() == pytest.approx([0.5] * 4) and clean[1].tolist() == pytest.approx([-0.5] * 4)


def test_equal_returns_in_a_group_give_zero_advantages():
    for baseline in ("group_mean", "leave_one_out"):
        got = step_advantages([[0.0, 1.0], [0.0, 0.0, 1.0]], baseline=baseline)
        assert all(a.tolist() == [0.0] * len(a) for a in got)


def test_trajectory_mean_baseline_cancels_an_outcome_only_reward():
    # The documented caveat: with γ = 1 every step shares the outcome, so it drops out.
    got = step_advantages([[0.0, 0.0, 1.0], [0.0, 0.0]], baseline="trajectory_mean")
    assert all(a.abs().max() == 0.0 for a in got)


def test_step_advantages_refuse_bad_baselines():
    with pytest.raises(LossInputError, match="at least 2 trajectories"):
        step_advantages([[1.0]], baseline="leave_one_out")
    with pytest.raises(LossInputError, match="unknown baseline 'value'"):
        step_advantages([[1.0]], baseline="value")  # type: ignore[arg-type]


def test_speed_reward_decreases_with_time_and_is_zero_at_the_baseline():
    times = [0.0, 5.0, 10.0, 15.0, 20.0, 60.0]
    values = [speed_reward(t, 10.0) for t in times]
    assert values == pytest.approx([1.0, 0.5, 0.0, -0.5, -1.0, -1.0])
    with pytest.raises(LossInputError, match="baseline_s must be a positive"):
        speed_reward(1.0, 0.0)
    with pytest.raises(LossInputError, match="elapsed_s must be a non-negative"):
        speed_reward(float("nan"), 1.0)
