"""Perturbations are deterministic for a seed, keep the task solvable (the perturbed gold path still
scores 1.0 through the real agent loop, in every chat format), are recorded on the trajectory, and
a recorded episode replays to the same token ids."""

from __future__ import annotations

import asyncio
import json
import re

import pytest
from perturb_helpers import NO_HELD_OUT, everything, perturbed, play_gold
from pydantic import ValidationError

from forgerl.envs.base import make_env, run_gold, sample_task
from forgerl.envs.tool_reasoning import ITEMS
from forgerl.perturb import DIMENSIONS, PerturbSpec, apply_perturbations, draw, replay
from forgerl.perturb.spec import (
    CHAT_FORMATS,
    NAMING_STYLES,
    RESPONSE_STYLES,
    held_out_scaffolds,
)
from forgerl.types import Trajectory, TrajectoryStatus

FAMILIES = ("tool-reasoning", "arithmetic")


def snapshot(p) -> str:
    """Everything the agent would see, as one string."""
    messages = p.env.reset(p.task)
    return json.dumps({"messages": [m.model_dump() for m in messages], "tools": [t.model_dump() for t in p.env.tools()],
                       "format": p.chat_format, "gold": [[(c.name, c.arguments) for c in r] for r in p.env.gold_solution(p.task)],
                       "record": p.record}, sort_keys=True, default=str)


def test_defaults_are_off_and_change_nothing():
    spec = PerturbSpec()
    assert not spec.active
    task = sample_task("tool-reasoning", 3, difficulty=2)
    p = apply_perturbations(task, make_env("tool-reasoning", 3), spec, 3)
    env = make_env("tool-reasoning", 3)
    assert [m.model_dump() for m in p.env.reset(task)] == [m.model_dump() for m in env.reset(task)]
    assert p.env.tools() == env.tools()
    assert p.chat_format is None and p.record["applied"] == []


def test_spec_rejects_a_dimension_whose_values_are_all_held_out():
    with pytest.raises(ValidationError, match="can never fire"):
        PerturbSpec(chat_format={"probability": 0.5, "formats": ["json_tools"]})
    with pytest.raises(ValidationError, match="unknown"):
        PerturbSpec(held_out={"naming_styles": ["klingon"]})
    PerturbSpec(chat_format={"probability": 0.0, "formats": ["json_tools"]})  # off: nothing to draw, fine


@pytest.mark.parametrize("dimension", DIMENSIONS)
@pytest.mark.parametrize("family", FAMILIES)
def test_each_dimension_is_deterministic_for_a_seed(family, dimension):
    spec = PerturbSpec.model_validate({dimension: {"probability": 1.0, "strength": 1.0}, "held_out": NO_HELD_OUT})
    seen = set()
    for seed in range(6):
        first = snapshot(perturbed(family, seed, spec))
        assert snapshot(perturbed(family, seed, spec)) == first
        assert json.loads(first)["record"]["applied"][0]["kind"] == dimension
        seen.add(first)
    if dimension != "environment":  # noise shows in calls, not in what the agent is shown up front
        assert len(seen) > 1, f"{dimension} gave the same episode for every seed"


@pytest.mark.parametrize("dimension", [d for d in DIMENSIONS if d != "environment"])
@pytest.mark.parametrize("family", FAMILIES)
def test_gold_path_still_scores_one_under_each_dimension(family, dimension):
    spec = PerturbSpec.model_validate({dimension: {"probability": 1.0, "strength": 1.0}, "held_out": NO_HELD_OUT})
    for seed in range(12):
        p = perturbed(family, seed, spec)
        trajectory, result = asyncio.run(run_gold(p.env, p.task))
        assert result.score == 1.0, (seed, result.breakdown)
        assert trajectory.perturbations is p.record


@pytest.mark.parametrize("family", FAMILIES)
def test_gold_through_the_agent_loop_scores_one_with_everything_on(tokenizer, family):
    formats, kinds = set(), set()
    for seed in range(16):
        p = perturbed(family, seed, everything())
        traj, _ = play_gold(tokenizer, p)
        assert traj.status == TrajectoryStatus.COMPLETED and traj.reward == 1.0, (seed, traj.errors, traj.metadata)
        assert traj.chat_format == (p.chat_format or "minimax_m2")
        formats.add(traj.chat_format)
        record = traj.perturbations
        kinds |= {a["kind"] for a in record["applied"]}
        assert all({"kind", "seed", "params"} <= set(a) for a in record["applied"])
        json.dumps(traj.model_dump(mode="json"))  # the record is JSON (the store keeps it)
    assert formats == set(CHAT_FORMATS)
    assert kinds == set(DIMENSIONS)


def test_injected_failures_are_retried_and_excused(tokenizer):
    spec = everything(environment={"probability": 1.0, "strength": 1.0})
    failures = 0
    for seed in range(10):
        traj, _ = play_gold(tokenizer, perturbed("tool-reasoning", seed, spec))
        assert traj.reward == 1.0
        failures += sum(1 for e in traj.metadata.get("env_events", []) if e["kind"] == "failure")
    assert failures > 0, "strength 1 injected no failure in 10 episodes"


def test_replaying_a_recorded_episode_reproduces_its_token_ids(tokenizer):
    for seed in (1, 4, 7):
        task = sample_task("tool-reasoning", seed, difficulty=3)
        p = apply_perturbations(task, make_env("tool-reasoning", seed), everything(), seed)
        traj, _ = play_gold(tokenizer, p)
        stored = Trajectory.model_validate_json(traj.model_dump_json())  # as read back from the store
        again, _ = play_gold(tokenizer, replay(stored.perturbations, task, make_env("tool-reasoning", seed)))
        assert [c.prompt_ids for c in again.calls] == [c.prompt_ids for c in traj.calls]
        assert [c.completion_ids for c in again.calls] == [c.completion_ids for c in traj.calls]
        assert again.chat_format == traj.chat_format and again.reward == traj.reward


def test_replay_refuses_a_record_of_another_version():
    record = perturbed("arithmetic", 0, everything()).record
    with pytest.raises(ValueError, match="version"):
        replay({**record, "version": 99}, sample_task("arithmetic", 0), make_env("arithmetic", 0))


def test_training_draws_never_produce_held_out_settings():
    spec = PerturbSpec.uniform(1.0, 1.0)  # default held-out: json_tools, pascal, table
    drawn = {"format": set(), "style": set(), "responses": set()}
    for seed in range(300):
        d = draw(spec, seed)
        drawn["format"].add(d["chat_format"]["format"])
        drawn["style"].add(d["tool_info"]["style"])
        drawn["responses"].add(d["tool_responses"]["style"])
    assert drawn["format"] == set(CHAT_FORMATS) - {"json_tools"}
    assert drawn["style"] == set(NAMING_STYLES) - {"pascal"}
    assert drawn["responses"] == set(RESPONSE_STYLES) - {"table"}


def test_held_out_scaffolds_force_exactly_their_setting():
    scaffolds = held_out_scaffolds(PerturbSpec())
    assert [s.name for s in scaffolds] == ["format=json_tools", "naming=pascal", "responses=table"]
    fmt, naming, responses = scaffolds
    for seed in range(5):
        assert [a["kind"] for a in perturbed("arithmetic", seed, fmt.spec).record["applied"]] == ["chat_format"]
        assert perturbed("arithmetic", seed, fmt.spec).chat_format == "json_tools"
        p = perturbed("tool-reasoning", seed, naming.spec)
        p.env.reset(p.task)
        assert {t.name for t in p.env.tools()} == {"GetBasket", "Lookup", "Calculator", "Convert", "SubmitAnswer"}
        p = perturbed("tool-reasoning", seed, responses.spec)
        p.env.reset(p.task)
        out = asyncio.run(p.env.execute(p.env.gold_solution(p.task)[0][0]))
        assert out.startswith("| result |\n|---|\n| ")


def test_prompt_edits_keep_numbers_and_item_names():
    spec = PerturbSpec.model_validate({"user_prompt": {"probability": 1.0, "strength": 1.0},
                                       "system_prompt": {"probability": 1.0, "strength": 1.0}})
    for family in FAMILIES:
        for seed in range(40):
            task = sample_task(family, seed)
            original = make_env(family, seed).reset(task)[1].content
            shown = perturbed(family, seed, spec).env.reset(task)[1].content
            assert sorted(re.findall(r"\d+", shown)) == sorted(re.findall(r"\d+", original))

            def words(text):
                return sorted(w for w in re.findall(r"[a-z]+", text.lower()) if w in ITEMS)

            assert words(shown) == words(original)


def test_prompts_mention_the_renamed_tools():
    spec = PerturbSpec.model_validate({"tool_info": {"probability": 1.0, "strength": 0.0, "naming_styles": ["upper"]}})
    p = perturbed("arithmetic", 0, spec)
    system, user = (m.content for m in p.env.reset(p.task))
    assert "SUBMIT_ANSWER" in system and "SUBMIT_ANSWER" in user
    assert not re.search(r"(?<![\w-])submit_answer(?![\w-])", system + user)


@pytest.mark.parametrize("fmt", CHAT_FORMATS)
@pytest.mark.parametrize("style", NAMING_STYLES)
def test_every_naming_style_parses_in_every_chat_format(tokenizer, fmt, style):
    spec = PerturbSpec.model_validate({
        "tool_info": {"probability": 1.0, "strength": 1.0, "naming_styles": [style]},
        "tool_set": {"probability": 1.0, "strength": 1.0},
        "chat_format": {"probability": 1.0, "formats": [fmt]}, "held_out": NO_HELD_OUT})
    traj, _ = play_gold(tokenizer, perturbed("tool-reasoning", 11, spec))
    assert traj.chat_format == fmt and traj.reward == 1.0 and not traj.errors, traj.errors
