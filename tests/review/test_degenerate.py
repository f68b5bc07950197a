"""Synthetic degenerate episodes (forgerl.experiments.reward_model.degenerate_variants): the negatives the
reward model needs so that it cannot be won by breaking the tool format (issue 8), built from real
rollouts of the default policy, and their place in the scripted expert's preference."""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from forgerl.experiments.reward_model import (
    DEGENERATE_KINDS,
    SYNTHETIC,
    add_degenerate,
    degenerate_variants,
    load_rollouts,
)
from forgerl.review.features import submitted, unseen_numbers, well_formed
from forgerl.review.rm import load_label_data
from forgerl.review.tool_expert import (
    grounded,
    label_with_tool_expert,
    preference,
    worked,
)
from forgerl.store import TrajectoryStore
from forgerl.types import Boundary, TrajectoryStatus

FIXTURE = Path(__file__).parent / "data" / "tool_reasoning_rollouts.jsonl.gz"


@pytest.fixture(scope="module")
def rollouts():
    return load_rollouts(FIXTURE)


def test_variants_have_the_shape_of_each_failure_mode(rollouts):
    source = next(t for t in rollouts if worked(t) and t.reward == 1.0)
    variants = {t.metadata["synthetic"]: t for t in degenerate_variants(source, random.Random(0))}
    assert set(variants) == set(DEGENERATE_KINDS)
    collapse, derail, guess = variants["collapse"], variants["derail"], variants["guess"]
    for v in variants.values():
        assert v.id.startswith(source.id + SYNTHETIC) and v.task_id == source.task_id and v.reward == 0.0
        assert v.messages[: 2] == source.messages[: 2]  # same system prompt and question
        assert "reward_model" not in v.metadata and v.calls == []
    # collapse: not a single parsed call, a parse failure per turn, cut off by the turn budget
    assert not any(m.tool_calls for m in collapse.messages) and unseen_numbers(collapse) == ([], 0)
    assert collapse.status == TrajectoryStatus.TRUNCATED and len(collapse.errors) >= 3
    assert all(e.boundary == Boundary.PARSE for e in collapse.errors)
    assert all(m.content.startswith("Error: ") for m in collapse.messages if m.role == "tool")
    # derail: a real start (its calls and results verbatim), then broken turns, no answer
    n_real = next(i for i, m in enumerate(derail.messages) if m.role == "assistant" and not m.tool_calls)
    assert derail.messages[:n_real] == source.messages[:n_real] and any(m.tool_calls for m in derail.messages)
    assert derail.status == TrajectoryStatus.TRUNCATED and derail.errors and not submitted(derail)
    # guess: well formed and submitted, but without any lookup; a different answer than the source's
    assert well_formed(guess) and submitted(guess) and not worked(guess)

    def answer(t):
        return [c.arguments["answer"] for m in t.messages for c in m.tool_calls if c.name == "submit_answer"]

    assert answer(guess) != answer(source)
    for v in variants.values():
        assert not grounded(v) and preference(v, source) == source.id
    # the same seed gives the same episodes
    again = degenerate_variants(source, random.Random(0))
    assert [t.model_dump() for t in again] == [variants[k].model_dump() for k in DEGENERATE_KINDS]


def test_degenerate_episodes_are_labelled_below_every_real_rollout_that_worked(rollouts, tmp_path):
    real = rollouts[:48]  # 12 tasks x 4
    with TrajectoryStore(tmp_path / "run") as store:
        store.add_run({}, run_id="r")
        store.add_trajectories(real, "r")
        made = add_degenerate(store, real, seed=1)
        assert len(made) >= 2 * 12 and {t.task_id for t in made} == {t.task_id for t in real}
        label_with_tool_expert(store, store.query())
        data = load_label_data(store)
    worked_ids = {t.id for t in real if worked(t)}
    synthetic = {t.id for t in made}
    for winner, loser in data.preferences:
        assert winner not in synthetic  # a degenerate episode never wins
        if loser in synthetic:
            assert winner in worked_ids or not worked(next(t for t in real if t.id == winner))
    pairs = {frozenset(p) for p in data.preferences}
    assert all(frozenset((w, s.id)) in pairs for s in made for w in worked_ids
               if next(t for t in real if t.id == w).task_id == s.task_id)
