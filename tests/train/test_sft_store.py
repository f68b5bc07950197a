"""Rejection-sampled SFT from a run's store, and prompt distillation (issue 21 item 4).

The store is filled by real episodes: the agent loop with a scripted engine replaying the
arithmetic gold path (passing) or a wrong answer (failing), under an expert system prompt with
`## ` sections, so the recorded ids are the ones the loop really made."""

from __future__ import annotations

import asyncio
import json
import random

import pytest

from forgerl.agent.loop import run_episode
from forgerl.chat import get_format
from forgerl.chat.base import encode_segments
from forgerl.engine.base import SamplingParams
from forgerl.engine.scripted import ScriptedEngine
from forgerl.envs.arithmetic import ArithmeticEnv
from forgerl.envs.base import sample_task
from forgerl.errors import ConfigError
from forgerl.store import TrajectoryStore
from forgerl.train.sft import Conversation, scripted_examples
from forgerl.train.sft_store import (
    StoreSelection,
    drop_sections,
    passing_trajectories,
    prompt_sections,
    store_examples,
    trajectory_examples,
)
from forgerl.types import Message, ToolCall, Trajectory, TrajectoryStatus, chain_samples

EXPERT = ("You are an expert arithmetic agent.\n\n"
          "## Planning\nWork out the independent sub-expressions first and compute them in one round.\n\n"
          "## Tools\nUse the calculator for every operation; never compute in your head.\n\n"
          "## Checking\nRecompute the final expression before you submit the answer.")
M2 = get_format("minimax_m2")


class ExpertArithmetic(ArithmeticEnv):
    """Arithmetic under an expert system prompt with three sections."""

    def reset(self, task):
        return [Message(role="system", content=EXPERT), *super().reset(task)[1:]]


def _replies(task, wrong: bool) -> list[str]:
    rounds = ArithmeticEnv(0).gold_solution(task)
    if wrong:
        rounds[-1] = [ToolCall(name="submit_answer", arguments={"answer": str(task.answer + 1)})]
    return [M2.render_assistant_body(Message(role="assistant", reasoning=f"round {i}: let me compute this.",
                                             tool_calls=calls)) for i, calls in enumerate(rounds)]


def _episode(tokenizer, seed: int, wrong: bool = False) -> Trajectory:
    task = sample_task("arithmetic", seed)
    engine = ScriptedEngine(tokenizer, _replies(task, wrong))
    return asyncio.run(run_episode(engine, M2, ExpertArithmetic(seed), task, sampling=SamplingParams(max_tokens=256),
                                   max_turns=6, max_total_tokens=4096))


@pytest.fixture(scope="module")
def episodes(tokenizer):
    """Seeds 0-2 pass, seed 3 submits a wrong answer, seed 4 runs out of turns (truncated)."""
    out = [_episode(tokenizer, s) for s in range(3)] + [_episode(tokenizer, 3, wrong=True)]
    task = sample_task("arithmetic", 4)
    cut = asyncio.run(run_episode(ScriptedEngine(tokenizer, _replies(task, False)), M2, ExpertArithmetic(4), task,
                                  sampling=SamplingParams(max_tokens=256), max_turns=1, max_total_tokens=4096))
    assert [t.reward for t in out] == [1.0, 1.0, 1.0, 0.0] and cut.status == TrajectoryStatus.TRUNCATED
    return [*out, cut]


@pytest.fixture()
def run_dir(tmp_path, episodes):
    with TrajectoryStore(tmp_path / "run") as store:
        store.add_run(run_id="run-a")
        store.add_trajectories(episodes, "run-a")
    return tmp_path / "run"


def _trained(ids, mask):
    return [t for t, m in zip(ids, mask) if m]


def test_sections_cut_at_headings_and_join_back_exactly():
    sections = prompt_sections(EXPERT)
    assert [s.name for s in sections] == ["", "Planning", "Tools", "Checking"]
    assert "".join(s.text for s in sections) == EXPERT
    assert drop_sections(EXPERT, 0.0, random.Random(0)) == (EXPERT, ["Planning", "Tools", "Checking"], [])
    text, _, dropped = drop_sections(EXPERT, 1.0, random.Random(0))
    assert dropped == ["Planning", "Tools", "Checking"] and text == "You are an expert arithmetic agent."
    drawn = [drop_sections(EXPERT, 0.5, random.Random(s))[2] for s in range(40)]
    assert drawn == [drop_sections(EXPERT, 0.5, random.Random(s))[2] for s in range(40)]  # seeded
    assert 0.3 < sum(map(len, drawn)) / (3 * len(drawn)) < 0.7 and {len(d) for d in drawn} >= {0, 1, 2}
    text, _, dropped = drop_sections(EXPERT, 0.5, random.Random(next(s for s in range(40) if drawn[s] == ["Tools"])))
    assert text == EXPERT.replace("## Tools\nUse the calculator for every operation; never compute in your head.\n\n", "")
    assert prompt_sections("no headings") == [prompt_sections("no headings")[0]] and prompt_sections("") == []
    with pytest.raises(ConfigError, match="between 0 and 1"):
        drop_sections(EXPERT, 1.5, random.Random(0))


def test_only_completed_trajectories_at_the_reward_threshold_are_taken(run_dir, episodes):
    chosen, held = passing_trajectories(run_dir, StoreSelection())
    assert held == 5 and [t.id for _, t in chosen] == [t.id for t in episodes[:3]] and {r for r, _ in chosen} == {"run-a"}
    lower, _ = passing_trajectories(run_dir, StoreSelection(min_reward=0.0))
    assert len(lower) == 4  # the wrong answer (0.0) too, never the truncated one
    assert len(passing_trajectories(run_dir, StoreSelection(max_examples=2), seed=1)[0]) == 2
    assert passing_trajectories(run_dir, StoreSelection(families=("arithmetic",)))[0] == chosen


def test_the_threshold_is_on_the_verifier_outcome_not_the_shaped_reward(tmp_path, episodes):
    shaped = episodes[0].model_copy(update={"id": "shaped", "reward": 0.9})  # a turn penalty took 0.1
    bare = episodes[1].model_copy(update={"id": "bare", "reward": 1.0, "reward_breakdown": {}})
    unscored = episodes[2].model_copy(update={"id": "bare-low", "reward": 0.5, "reward_breakdown": {}})
    with TrajectoryStore(tmp_path / "shaped") as store:
        store.add_run(run_id="s")
        store.add_trajectories([shaped, bare, unscored], "s")
    chosen, _ = passing_trajectories(tmp_path / "shaped", StoreSelection())
    assert [t.id for _, t in chosen] == ["shaped", "bare"]


def test_store_examples_are_the_recorded_ids_and_masks(run_dir, episodes, tokenizer):
    examples = store_examples(passing_trajectories(run_dir, StoreSelection())[0], tokenizer)
    assert len(examples) == 3
    for example, traj in zip(examples, episodes):
        (sample,) = chain_samples(traj, [0.0] * len(traj.calls))
        assert example.ids == sample.input_ids and example.mask == sample.loss_mask
        assert _trained(example.ids, example.mask) == [t for c in traj.calls for t in c.completion_ids]
        assert example.source | {"calls": None} == example.source | {
            "source": "store", "run": "run-a", "trajectory": traj.id, "outcome": 1.0, "reward": 1.0, "family": "arithmetic",
            "dropped": [], "distill": "off", "rerenders_exactly": True, "root": 0, "calls": None}


def test_dropping_sections_swaps_the_prompt_and_keeps_every_sampled_token(run_dir, episodes, tokenizer):
    traj = episodes[0]
    (before,) = trajectory_examples("run-a", traj, tokenizer)
    (after,) = trajectory_examples("run-a", traj, tokenizer, drop_p=1.0)
    assert after.source["dropped"] == ["Planning", "Tools", "Checking"] and after.source["distill"] == "ok"
    # the assistant tokens trained are exactly the ones sampled, in order, and nothing else is trainable
    assert _trained(after.ids, after.mask) == _trained(before.ids, before.mask)
    assert sum(after.mask) == sum(before.mask) == sum(len(c.completion_ids) for c in traj.calls)
    # ... and the whole sequence is what rendering the distilled conversation from scratch gives
    distilled = [Message(role="system", content="You are an expert arithmetic agent."), *traj.messages[1:]]
    full = encode_segments(tokenizer, M2.render(distilled, traj.tools, add_generation_prompt=False))
    assert after.ids == full.ids[:len(after.ids)] and after.mask == full.mask[:len(after.mask)]
    shorter = len(before.ids) - len(after.ids)
    assert shorter > 20 and before.ids[-100:] == after.ids[-100:]
    text = tokenizer.decode(after.ids)
    assert "Recompute the final expression" not in text and "expert arithmetic agent" in text
    seeded = [trajectory_examples("run-a", traj, tokenizer, drop_p=0.5, seed=s)[0].source["dropped"] for s in range(8)]
    assert seeded == [trajectory_examples("run-a", traj, tokenizer, drop_p=0.5, seed=s)[0].source["dropped"]
                      for s in range(8)] and len({tuple(d) for d in seeded}) > 1


def test_completions_that_could_not_be_acted_on_are_context_only(episodes, tokenizer):
    traj = episodes[0]
    broken = traj.model_copy(update={"calls": [traj.calls[0].model_copy(update={"parse_error": "bad"}), *traj.calls[1:]]})
    (example,) = trajectory_examples("run-a", broken, tokenizer)
    assert _trained(example.ids, example.mask) == [t for c in traj.calls[1:] for t in c.completion_ids]
    assert example.ids == chain_samples(traj, [0.0] * len(traj.calls))[0].input_ids


def test_scripted_conversations_drop_sections_too(episodes, tokenizer):
    traj = episodes[0]
    conv = Conversation(list(traj.messages), list(traj.tools), traj.task_id)
    (plain,) = scripted_examples(tokenizer, M2, [conv], family="arithmetic")
    (dropped,) = scripted_examples(tokenizer, M2, [conv], family="arithmetic", drop_p=1.0)
    assert plain.source["distill"] == "off" and dropped.source["dropped"] == ["Planning", "Tools", "Checking"]
    assert _trained(plain.ids, plain.mask) == _trained(dropped.ids, dropped.mask) and len(dropped.ids) < len(plain.ids)


def test_a_missing_or_empty_store_or_nothing_passing_is_a_clear_error(tmp_path, run_dir, tokenizer):
    with pytest.raises(ConfigError, match="no trajectory store there"):
        passing_trajectories(tmp_path / "nowhere", StoreSelection())
    assert not (tmp_path / "nowhere").exists()
    with TrajectoryStore(tmp_path / "empty"):
        pass
    with pytest.raises(ConfigError, match="holds no trajectories"):
        passing_trajectories(tmp_path / "empty", StoreSelection())
    with pytest.raises(ConfigError) as info:
        passing_trajectories(run_dir, StoreSelection(min_reward=1.5))
    said = str(info.value)
    assert "none of its 5 trajectories (4 completed, 1 truncated)" in said and "outcomes 0.000 to 1.000" in said
    with pytest.raises(ConfigError, match="families in the store: arithmetic"):
        passing_trajectories(run_dir, StoreSelection(families=("cowork",)))


def test_ids_from_another_tokenizer_are_refused(tmp_path, episodes, tokenizer):
    shifted = [t.model_copy(update={"calls": [c.model_copy(update={"prompt_ids": [i + 1 for i in c.prompt_ids]})
                                              for c in t.calls]}) for t in episodes[:2]]
    with TrajectoryStore(tmp_path / "other") as store:
        store.add_run(run_id="other")
        store.add_trajectories(shifted, "other")
    with pytest.raises(ConfigError, match="not made by this model's tokenizer"):
        store_examples(passing_trajectories(tmp_path / "other", StoreSelection())[0], tokenizer)
    cut = [t.model_copy(update={"calls": [c.model_copy(update={"finish_reason": "length"}) for c in t.calls]})
           for t in episodes[:2]]
    with pytest.raises(ConfigError, match="none of the 2 passing trajectories has a completion to train on"):
        store_examples([("run-a", t) for t in cut], tokenizer)


def test_forgerl_sft_from_a_store_records_every_example(tmp_path, run_dir, episodes, capsys):
    from typer.testing import CliRunner

    from forgerl.cli.main import app, run_cli

    out = tmp_path / "policy"
    args = ["sft", "--out", str(out), "--from-store", str(run_dir), "--steps", "2", "--batch-size", "2",
            "--drop-prompt-sections", "0.5", "--seed", "3", "--examples", "2", "--difficulty", "1"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    assert "3 passing trajectories (of 5) from the store" in " ".join(result.output.split())
    lines = [json.loads(line) for line in (out / "sft_examples.jsonl").read_text().splitlines()]
    assert [x["source"] for x in lines] == ["scripted"] * 2 + ["store"] * 3  # --examples 2 mixes scripted data in
    assert [x["trajectory"] for x in lines[2:]] == [t.id for t in episodes[:3]]
    assert all(x["outcome"] == 1.0 and x["run"] == "run-a" for x in lines[2:])
    assert all(x["family"] == "tool-reasoning" and x["distill"] != "off" for x in lines[:2])
    made = json.loads((out / "forgerl.json").read_text())["data"]
    assert made["scripted"] == 2 and made["store"]["trajectories"] == 3 and made["store"]["held"] == 5
    assert made["drop_prompt_sections"] == 0.5
    assert made["with_sections_dropped"] == sum(bool(x["dropped"]) for x in lines)

    assert run_cli(["sft", "--out", str(tmp_path / "never"), "--from-store", str(run_dir), "--min-reward", "2"]) == 2
    err = " ".join(capsys.readouterr().err.split())
    assert "passes the filter" in err and "lower --min-reward" in err and "Traceback" not in err
    assert not (tmp_path / "never").exists()
    assert run_cli(["sft", "--families", "arithmetic"]) == 2
    assert "add --from-store" in " ".join(capsys.readouterr().err.split())
