"""SFT data where the scripted solver manages its own context (train/sft_context.py, issue 24)."""

from __future__ import annotations

import asyncio
import json

import pytest

from forgerl.agent.replay import check_replay
from forgerl.chat import get_format
from forgerl.envs.long_context import FAMILY, generate_task
from forgerl.errors import ConfigError
from forgerl.train.sft import run_sft
from forgerl.train.sft_context import managed_examples, managed_gold_trajectory, managed_replies, played_cleanly
from forgerl.types import chain_samples

FMT = get_format("minimax_m2")


def test_the_solver_calls_the_context_tool_between_its_first_and_last_turn(tokenizer):
    from forgerl.envs.base import make_env

    task = generate_task(1, 3)
    gold = make_env(FAMILY).gold_messages(task)
    replies = managed_replies(FMT, gold, "keep_last_turns")
    assert len(replies) == sum(m.role == "assistant" for m in gold) >= 3
    assert "context_keep_last_turns" not in replies[0] and "context_keep_last_turns" not in replies[-1]
    assert all("context_keep_last_turns" in r for r in replies[1:-1])
    with pytest.raises(ConfigError, match="cannot call context action 'summarize'"):
        managed_replies(FMT, gold, "summarize")


@pytest.mark.parametrize("action", ["keep_last_turns", "drop_old_rounds"])
def test_managed_trajectory_passes_replays_and_splits_into_one_example_per_root(action, tokenizer):
    task = generate_task(2, 3)
    traj = asyncio.run(managed_gold_trajectory(FAMILY, task, tokenizer, FMT, action, max_context=2048, seed=2))
    assert played_cleanly(traj)
    rewrites = traj.metadata["context_rewrites"]
    assert rewrites and {r["by"] for r in rewrites} == {"policy"} and {r["function"] for r in rewrites} == {action}
    assert check_replay(traj, tokenizer, FMT) == []
    examples, rejected = asyncio.run(managed_examples(FAMILY, [(2, task)], tokenizer, FMT, action, max_context=2048))
    assert rejected == 0 and len(examples) == len(rewrites) + 1 == len(chain_samples(traj, [0.0] * len(traj.calls)))
    # every completion is trained on exactly once, in the example of its root; prompts never are
    trained = [t for e in examples for t, m in zip(e.ids, e.mask, strict=True) if m]
    assert trained == [t for c in traj.calls for t in c.completion_ids]
    assert all(e.source["source"] == "scripted-context" and e.source["rewrites"] == len(rewrites) for e in examples)
    assert any("context_" + action in tokenizer.decode([t for t, m in zip(e.ids, e.mask) if m]) for e in examples)


def test_a_window_too_small_for_the_solver_is_rejected_not_trained(tokenizer):
    task = generate_task(2, 3)
    examples, rejected = asyncio.run(managed_examples(FAMILY, [(2, task)], tokenizer, FMT, "keep_last_turns",
                                                      max_context=1400))
    assert examples == [] and rejected == 1


def test_run_sft_mixes_whole_conversations_and_managed_segments(tmp_path):
    out = run_sft(str(tmp_path / "p"), family=FAMILY, examples=2, steps=1, batch_size=2, difficulty=[2],
                  context_action="keep_last_turns", context_examples=2, max_length=4096, mtp_weight=0.0)
    sources = [json.loads(line) for line in (out / "sft_examples.jsonl").read_text().splitlines()]
    assert sum(s["source"] == "scripted" for s in sources) == 2
    managed = [s for s in sources if s["source"] == "scripted-context"]
    assert len({s["task"] for s in managed}) == 2 and len(managed) > 2  # two episodes, several roots each
    record = json.loads((out / "forgerl.json").read_text())
    assert record["context_action"] == "keep_last_turns" and record["data"]["scripted_context_segments"] == len(managed)
    with pytest.raises(ValueError, match="go together"):
        run_sft(str(tmp_path / "q"), family=FAMILY, examples=1, steps=1, context_examples=1)
    with pytest.raises(ValueError, match="go together"):  # an action with no episodes to play it in
        run_sft(str(tmp_path / "q"), family=FAMILY, examples=1, steps=1, context_action="keep_last_turns")
