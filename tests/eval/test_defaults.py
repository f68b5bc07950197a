"""`forgerl eval`'s defaults are training's held-out evaluation (issue 27 item 6): the same tasks,
turn and token budgets, temperature and context, so the same model gets the same number from
`forgerl eval` as from a run's report; overrides are printed as differing."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace

import pytest
from rich.console import Console

from forgerl.chat import get_format
from forgerl.engine.scripted import ScriptedEngine
from forgerl.envs.base import sample_task
from forgerl.envs.tool_reasoning import gold_messages
from forgerl.eval.run import run_eval
from forgerl.eval.settings import held_out_settings, resolve_settings, settings_line
from forgerl.train.config import TrainConfig
from forgerl.train.rollouts import HELD_OUT_SEED_BASE, evaluate


class RecordingEngine(ScriptedEngine):
    """A scripted engine that also keeps every call's sampling settings."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.settings: list[tuple[int, float, float]] = []

    def stream(self, prompt_ids, params, session_id=None):
        self.settings.append((params.max_tokens, params.temperature, params.top_p))
        return super().stream(prompt_ids, params, session_id)


def gold_policy(fmt, difficulty: int, tasks: int = 64):
    """A deterministic 'policy': the gold conversation of whichever held-out task the prompt holds,
    one round per call. Long rounds are cut at the call's max_tokens (as a model's would be), so the
    reward depends on the token budget."""
    known = []
    for i in range(tasks):
        task = sample_task("tool-reasoning", HELD_OUT_SEED_BASE + i, difficulty)
        known.append((task.prompt, [fmt.render_assistant_body(m) for m in gold_messages(task) if m.role == "assistant"]))

    def reply(prompt: str) -> str:
        rounds = next(r for question, r in known if question in prompt)
        return rounds[min(prompt.count("]~b]tool"), len(rounds) - 1)]

    return reply


def _training_held_out(engine, config: TrainConfig) -> float:
    run = SimpleNamespace(config=config, engine=engine, fmt=get_format(config.chat_format), step=0)
    return asyncio.run(evaluate(run))


def test_eval_defaults_reproduce_trainings_held_out_reward(tokenizer):
    config = TrainConfig()
    fmt = get_format(config.chat_format)
    policy = gold_policy(fmt, config.difficulty[0])
    trainer_engine = RecordingEngine(tokenizer, [policy], cycle=True, model_name="default")
    eval_engine = RecordingEngine(tokenizer, [policy], cycle=True, model_name="default")

    held_out = _training_held_out(trainer_engine, config)
    console = Console(width=300, record=True)
    report = run_eval(engine=eval_engine, console=console)  # every setting left to its default

    assert 0.0 < held_out < 1.0  # the token budget cuts some gold rounds: a number that can disagree
    assert report.overall.episodes == config.eval.tasks and report.overall.failed_infra == 0
    assert report.overall.reward_mean == pytest.approx(held_out, abs=1e-12)
    assert sorted(eval_engine.prompts) == sorted(trainer_engine.prompts)  # the same tasks, turn for turn
    assert set(eval_engine.settings) == set(trainer_engine.settings) == {(config.max_tokens, config.eval.temperature, 1.0)}
    assert "the same as training's held-out evaluation" in console.export_text()


def test_overrides_are_named_as_differing(tokenizer):
    used, training = resolve_settings(max_tokens=192, temperature=1.0, difficulty="all")
    line = settings_line(used, training)
    assert training == held_out_settings() and used.max_tokens == 192 and used.difficulty is None
    assert "Differs from training's held-out evaluation in:" in line
    assert f"max_tokens 192 (training: {TrainConfig().max_tokens})" in line
    assert "temperature 1.0 (training: 0 (greedy))" in line and "difficulty all (training: 3)" in line
    assert "max_turns" not in line.split("Differs")[1]


def test_defaults_follow_the_training_config_per_family():
    config = TrainConfig(env="arithmetic")
    settings = held_out_settings("arithmetic")
    assert (settings.n, settings.max_turns, settings.max_tokens, settings.temperature, settings.max_context) == (
        config.eval.tasks, config.max_turns, config.max_tokens, config.eval.temperature, config.max_context)
    assert settings.difficulty == config.difficulty[0]
    assert held_out_settings().env == TrainConfig().env


def test_a_bad_difficulty_is_a_usage_error(capsys):
    from forgerl.cli.main import run_cli

    assert run_cli(["eval", "--difficulty", "hard", "-n", "1"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "level number or 'all'" in err and "Traceback" not in err


@pytest.mark.slow
def test_eval_defaults_on_the_default_policy_equal_trainings_held_out_reward():
    """The real shipped policy, greedy, through both code paths on one engine (minutes on a CPU)."""
    from forgerl.engine import load_engine

    config = TrainConfig()
    engine = load_engine(config.model, chat_format=config.chat_format, max_context=config.max_context, device="cpu")

    async def keep_open() -> None:  # run_eval closes the engine at its end; training's evaluate does not
        return None

    closer, engine.aclose = engine.aclose, keep_open
    held_out = _training_held_out(engine, config)
    report = run_eval(engine=engine, console=Console(width=300))
    engine.aclose = closer
    assert report.overall.reward_mean == pytest.approx(held_out, abs=1e-9)
