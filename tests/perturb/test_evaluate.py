"""Scaffold evaluation (Wilson intervals against scipy's reference), the run_episode wrapper that
perturbs training rollouts only, and the `forgerl perturb` commands."""

from __future__ import annotations

import asyncio

import pytest
import typer
from perturb_helpers import everything
from typer.testing import CliRunner

from forgerl.agent.loop import run_episode
from forgerl.chat import get_format
from forgerl.cli.perturb import perturb_app
from forgerl.engine.base import SamplingParams
from forgerl.engine.scripted import ScriptedEngine
from forgerl.envs.base import make_env, sample_task
from forgerl.perturb import PerturbSpec, perturbing, scaffold_set
from forgerl.perturb.evaluate import (
    ScaffoldResult,
    evaluate_scaffolds,
    generalization_gap,
    wilson_interval,
)
from forgerl.types import Trajectory


@pytest.mark.parametrize(("k", "n"), [(0, 10), (1, 10), (5, 10), (10, 10), (3, 64), (0, 1), (17, 32)])
def test_wilson_interval_matches_scipy(k, n):
    stats = pytest.importorskip("scipy.stats")
    reference = stats.binomtest(k, n).proportion_ci(confidence_level=0.95, method="wilson")
    low, high = wilson_interval(k, n)
    assert low == pytest.approx(reference.low, abs=1e-9) and high == pytest.approx(reference.high, abs=1e-9)


def test_wilson_interval_rejects_nonsense():
    with pytest.raises(ValueError, match="passed <= n"):
        wilson_interval(5, 3)
    assert wilson_interval(0, 0) == (0.0, 1.0)


def test_evaluate_scaffolds_runs_every_scaffold_through_the_agent_loop(tokenizer):
    engine = ScriptedEngine(tokenizer, ["I cannot tell."], cycle=True, max_context=4096)
    scaffolds = scaffold_set("heldout")
    results = evaluate_scaffolds(engine, "tool-reasoning", scaffolds, 3, max_tokens=64, max_context=4096)
    assert [r.scaffold for r in results] == ["default", "format=json_tools", "naming=pascal", "responses=table"]
    assert [r.held_out for r in results] == [False, True, True, True]
    for r in results:
        assert (r.n, r.successes, r.failed) == (3, 0, 0) and r.ci_low == 0.0 and 0.4 < r.ci_high < 0.6
    decoded = [tokenizer.decode(p, skip_special_tokens=False) for p in engine.prompts]
    firsts = [d for d in decoded if d.count("<|assistant|>") == 1 and "<|tool|>" not in d]
    assert len(firsts) == 3  # the json_tools scaffold's 3 episodes, rendered in its own format
    assert any("SubmitAnswer" in d for d in decoded)


def test_generalization_gap():
    def r(name, rate, held):
        return ScaffoldResult(name, held, 10, int(rate * 10), rate, 0, 1, rate, 0)

    assert generalization_gap([r("default", 0.5, False), r("a", 0.1, True), r("b", 0.3, True)]) == pytest.approx(0.3)
    with pytest.raises(ValueError, match="default"):
        generalization_gap([r("a", 0.1, True)])


def test_perturbing_wrapper_perturbs_training_rollouts_only(tokenizer):
    spec = everything(chat_format={"probability": 1.0, "formats": ["hermes"]})
    wrapped = perturbing(run_episode, spec, run_seed=0)
    task = sample_task("arithmetic", 2)

    def episode(group_id):
        engine = ScriptedEngine(tokenizer, ["Done."], cycle=True, max_context=8192)
        traj = Trajectory(group_id=group_id)
        return asyncio.run(wrapped(engine, get_format("minimax_m2"), make_env("arithmetic", 2), task,
                                   sampling=SamplingParams(max_tokens=16), max_turns=2, max_total_tokens=8192,
                                   trajectory=traj))

    trained, held_out = episode("step0-g0"), episode(None)
    assert trained.chat_format == "hermes" and trained.perturbations["applied"]
    assert held_out.chat_format == "minimax_m2" and "perturbations" not in held_out.metadata
    again = episode("step0-g0")  # same task -> the same scaffold for every rollout of a group
    assert again.calls[0].prompt_ids == trained.calls[0].prompt_ids


def _app() -> typer.Typer:
    app = typer.Typer()
    app.add_typer(perturb_app, name="perturb")
    return app


def test_show_prints_both_sides_and_the_record():
    result = CliRunner().invoke(_app(), ["perturb", "show", "--env", "arithmetic", "--seed", "3"],
                                env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    for text in ("original", "perturbed", "calculator", "applied perturbations", "tool_info", "chat_format"):
        assert text in result.output


def test_show_explains_a_bad_spec_file(tmp_path):
    path = tmp_path / "spec.toml"
    path.write_text("[perturb]\nchat_format = {probability = 2.0}\n")
    result = CliRunner().invoke(_app(), ["perturb", "show", "--spec", str(path)], env={"COLUMNS": "200"})
    assert result.exit_code != 0 and "invalid perturbation spec" in result.output
    result = CliRunner().invoke(_app(), ["perturb", "show", "--env", "nope"], env={"COLUMNS": "200"})
    assert result.exit_code != 0 and "unknown task family" in result.output


def test_experiment_summary_pools_seeds_and_computes_the_gap(tmp_path):
    from forgerl.experiments.perturb import markdown_table, plot, summarize

    def row(arm, seed, scaffold, k, held):
        return {"arm": arm, "seed": seed, "scaffold": scaffold, "held_out": held, "n": 10, "successes": k,
                "mean_reward": k / 10}

    rows = [row(arm, seed, name, k, held) for arm, ks in (("baseline", (6, 1, 2)), ("perturbed", (5, 4, 5)))
            for seed in (0, 1) for name, k, held in zip(("default", "format=x", "naming=y"), ks, (False, True, True))]
    summary = summarize(rows)
    base, pert = summary["arms"]["baseline"], summary["arms"]["perturbed"]
    assert base["scaffolds"]["default"]["n"] == 20 and base["in_distribution"] == pytest.approx(0.6)
    assert base["gap"] == pytest.approx(0.6 - 0.15) and pert["gap"] == pytest.approx(0.5 - 0.45)
    verdict = summary["verdict"]
    assert verdict["gap_ratio"] == pytest.approx(0.05 / 0.45) and verdict["in_distribution_loss"] == pytest.approx(0.1)
    assert verdict["goal_met"] is False  # the gap shrank enough, but in distribution lost more than 0.05
    table = markdown_table(summary)
    assert "| format=x (held out) |" in table and "goal (ratio <= 1/3, loss <= 0.05) met: False" in table
    plot(summary, tmp_path / "p.png")
    assert (tmp_path / "p.png").read_bytes()[:4] == b"\x89PNG"


def test_experiment_can_compare_the_sft_stages_alone(tmp_path):
    from forgerl.experiments.perturb import ExperimentConfig, run_experiment

    with pytest.raises(ValueError, match="nothing to train"):
        run_experiment(ExperimentConfig(steps=0, sft_steps=0, out=str(tmp_path / "none")))
    exp = ExperimentConfig(model="tiny-random", steps=0, sft_steps=1, sft_examples=4, sft_batch_size=2, seeds=(0,),
                           eval_n=1, out=str(tmp_path / "x"), overrides={"max_turns": 1, "max_tokens": 8})
    report = run_experiment(exp, log=lambda *_: None)
    assert set(report["summary"]["arms"]) == {"start", "baseline-sft", "perturbed-sft"}  # no RL arms
    assert report["summary"]["verdict_sft"] is not None and report["summary"]["verdict"] is None
    assert not (tmp_path / "x" / "baseline-seed0").exists() and (tmp_path / "x" / "perturbed-seed0-sft").is_dir()


def test_package_exports_resolve():
    from forgerl import perturb

    for name in perturb.__all__:
        assert getattr(perturb, name) is not None


def test_show_escapes_untrusted_text():
    from rich.console import Console

    from forgerl.perturb.show import EpisodeView, print_comparison
    from forgerl.types import Message, ToolCall, ToolSpec

    nasty = "[/] [bold red]not markup[/bold red]"
    side = EpisodeView("minimax_m2", [Message(role="user", content=nasty)],
                       [ToolSpec(name="t", description=nasty)], [[ToolCall(name="t", arguments={"x": nasty})]],
                       nasty, [(ToolCall(name="t"), nasty)])
    console = Console(record=True, width=200)
    print_comparison(console, side, side, {"applied": [{"kind": "tool_info", "seed": 1, "params": {"x": nasty}}]}, nasty)
    assert console.export_text().count("[bold red]not markup[/bold red]") >= 10


def test_training_rollouts_are_perturbed_through_the_real_rollout_code(tokenizer):
    """`collect_groups` (train/rollouts.py) with `[perturb]` in the run config: every training
    trajectory carries its record, a group shares one scaffold, and held-out `evaluate` stays
    unperturbed; without it, nothing is perturbed."""
    from types import SimpleNamespace

    from forgerl.train.config import TrainConfig
    from forgerl.train.rollouts import collect_groups, evaluate

    cfg = TrainConfig(env="arithmetic", difficulty=[1], groups_per_step=2, group_size=2, max_turns=2, max_tokens=16, eval={"tasks": 2},
                      max_context=4096, perturb=everything())
    engine = ScriptedEngine(tokenizer, ["Done."], cycle=True, max_context=4096)
    run = SimpleNamespace(config=cfg, engine=engine, fmt=get_format("minimax_m2"), step=0)
    groups = asyncio.run(collect_groups(run))
    asyncio.run(evaluate(run))
    evaluated = engine.prompts[len(engine.prompts) - 2:]
    for group in groups:
        records = [t.perturbations for t in group]
        assert records[0]["applied"] and all(r == records[0] for r in records)
        assert group[0].calls[0].prompt_ids == group[1].calls[0].prompt_ids
    run.config = cfg.model_copy(update={"perturb": PerturbSpec()})
    plain = asyncio.run(collect_groups(run))
    assert all("perturbations" not in t.metadata for g in plain for t in g)
    assert all("]~!b[" in tokenizer.decode(p[:3], skip_special_tokens=False) for p in evaluated)
