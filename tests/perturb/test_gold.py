"""Perturbed SFT data (perturb/gold.py): the scripted solver played through a perturbed environment
writes correct, recorded, deterministic conversations in the drawn scaffold, never in a held-out
one, and SFT encodes each in its own chat format."""

from __future__ import annotations

import asyncio

import pytest
from perturb_helpers import everything

from forgerl.chat import get_format
from forgerl.envs.base import make_env, sample_task
from forgerl.perturb import PerturbSpec, apply_perturbations, replay
from forgerl.perturb.gold import perturbed_gold_conversation
from forgerl.train.sft import Conversation, encode_conversation, verified_conversations
from forgerl.types import Trajectory

FAMILY = "tool-reasoning"


def play(seed: int, spec: PerturbSpec, varied: bool = True):
    return asyncio.run(perturbed_gold_conversation(FAMILY, sample_task(FAMILY, seed), spec, seed, varied=varied))


async def _replay_score(record, seed, messages) -> float:
    """The conversation's calls, round by round, on a fresh environment rebuilt from the record."""
    task = sample_task(FAMILY, seed)
    p = replay(record, task, make_env(FAMILY, seed))
    p.env.reset(p.task)
    for message in messages:
        if message.role == "assistant" and message.tool_calls:
            await asyncio.gather(*(_quiet(p.env.execute(c)) for c in message.tool_calls))
    return p.env.reward(Trajectory(task_id=task.id, messages=messages, tools=p.env.tools())).score


async def _quiet(call):
    from forgerl.errors import ToolError

    try:
        return await call
    except ToolError:
        return None


def test_every_dimension_at_full_strength_mostly_solves_and_replays_to_the_same_score():
    spec = everything(probability=1.0, strength=1.0)
    played = [play(seed, spec) for seed in range(16)]
    solved = [c for c in played if c.score == 1.0]
    assert len(solved) >= 12, [c.score for c in played]  # a solver may give up under a tight rate limit
    for seed, conv in enumerate(played):
        if conv.score != 1.0:
            continue
        shown = {t.name for t in conv.tools}
        calls = [c for m in conv.messages if m.role == "assistant" for c in m.tool_calls]
        assert calls and all(c.name in shown for c in calls)
        assert conv.record["applied"] and conv.record["seed"] == seed
        assert asyncio.run(_replay_score(conv.record, seed, conv.messages)) == 1.0


def test_the_solver_reads_true_values_through_noisy_renderings_and_retries_failures():
    spec = PerturbSpec.model_validate({
        "tool_responses": {"probability": 1.0, "strength": 1.0},
        "environment": {"probability": 1.0, "strength": 1.0},
        "held_out": {"chat_formats": [], "naming_styles": [], "response_styles": []}})
    played = [play(seed, spec) for seed in range(12)]
    assert sum(c.score == 1.0 for c in played) >= 9
    texts = [m.content for c in played for m in c.messages if m.role == "tool"]
    assert any(t.startswith("Error: ") for t in texts), "no failure was injected: the retry path went untested"
    retries = [m.reasoning for c in played if c.score == 1.0 for m in c.messages
               if m.role == "assistant" and "make only" in (m.reasoning or "")]
    assert retries, "no solved conversation retried a failed call"


def test_conversations_are_deterministic_for_a_seed_and_differ_across_seeds(tokenizer):
    """Same seed, same training tokens (call ids are fresh per call, and no format renders them)."""
    spec = everything(probability=0.5, strength=0.5)
    a, b, c = play(5, spec), play(5, spec), play(6, spec)
    fmt = get_format("minimax_m2")

    def encode(conv):
        return encode_conversation(tokenizer, fmt, Conversation(conv.messages, conv.tools, conv.task_id, conv.chat_format))

    assert encode(a) == encode(b)
    assert encode(a) != encode(c)
    assert a.record == b.record and a.chat_format == b.chat_format
    assert a.record != c.record


def test_the_record_is_the_one_apply_perturbations_draws():
    spec = everything(probability=0.5, strength=0.5)
    conv = play(9, spec)
    again = apply_perturbations(sample_task(FAMILY, 9), make_env(FAMILY, 9), spec, 9)
    assert [(e["kind"], e["seed"]) for e in conv.record["applied"]] == [(e["kind"], e["seed"]) for e in again.record["applied"]]


def test_sft_data_never_uses_a_held_out_setting_and_encodes_in_its_own_format(tokenizer):
    spec = PerturbSpec.uniform(0.7, 0.5)  # default held-out: json_tools, PascalCase, table responses
    convs, rejected = asyncio.run(verified_conversations(FAMILY, range(40), varied=True, perturb=spec))
    assert len(convs) >= 30, rejected
    assert {c.chat_format for c in convs} <= {None, "minimax_m2", "hermes"}
    assert "hermes" in {c.chat_format for c in convs}
    played = [play(seed, spec) for seed in range(40)]
    for conv in played:
        for entry in conv.record["applied"]:
            assert entry["params"].get("style") not in ("pascal", "table"), entry
    hermes = next(c for c in convs if c.chat_format == "hermes")
    ids, mask = encode_conversation(tokenizer, get_format("minimax_m2"), hermes)
    text = tokenizer.decode(ids, skip_special_tokens=False)
    trained = tokenizer.decode([i for i, m in zip(ids, mask) if m], skip_special_tokens=False)
    assert "<tool_call>" in trained and "<minimax:tool_call>" not in text
    assert len(trained) < len(text) / 2  # prompts and tool results stay masked


def test_a_conversation_without_its_own_format_renders_in_the_runs(tokenizer):
    conv = play(3, PerturbSpec.uniform(0.0))  # nothing fires: the run's own everything
    assert conv.chat_format is None and conv.score == 1.0 and not conv.record["applied"]
    plain = Conversation(conv.messages, conv.tools, conv.task_id)
    fmt = get_format("minimax_m2")
    assert encode_conversation(tokenizer, fmt, plain) == encode_conversation(
        tokenizer, fmt, Conversation(conv.messages, conv.tools, conv.task_id, "minimax_m2"))


def test_a_family_without_a_scripted_solver_is_refused_with_what_to_do():
    with pytest.raises(ValueError, match="no scripted solver.*tool-reasoning"):
        asyncio.run(perturbed_gold_conversation("arithmetic", sample_task("arithmetic", 0), everything(), 0))


def test_forgerl_sft_builds_a_policy_from_perturbed_data_and_records_how(tmp_path, capsys):
    import json

    from typer.testing import CliRunner

    from forgerl.cli.main import app
    from forgerl.model.loading import load_policy

    out = tmp_path / "policy"
    args = ["sft", "--out", str(out), "--examples", "6", "--steps", "2", "--batch-size", "2", "--difficulty", "1",
            "--perturb-probability", "0.5", "--perturb-strength", "0.5"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    assert "under perturbed scaffolds" in " ".join(result.output.split())  # rich wraps lines
    made = json.loads((out / "forgerl.json").read_text())
    assert made["perturb"]["chat_format"]["probability"] == 0.5 and made["steps"] == 2
    model, _ = load_policy(str(out), device="cpu")
    assert sum(p.numel() for p in model.parameters()) > 0

    from forgerl.cli.main import run_cli  # the CLI's error path (CliRunner bypasses it)

    assert run_cli([*args[:2], str(tmp_path / "never"), *args[3:], "--max-length", "64"]) == 2
    err = capsys.readouterr().err
    assert "longer than max_length=64" in " ".join(err.split()) and "Traceback" not in err
    assert not (tmp_path / "never").exists()
