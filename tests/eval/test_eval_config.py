"""`forgerl eval --config`: an evaluation as a run's own held-out evaluation — its settings, its
`[eval.context]`/`[context]` manager — and every family's episodes run as training runs them (a
multi-agent family through its own episode runner). Scripted engines, no model."""

from __future__ import annotations

from pathlib import Path

import pytest
from rich.console import Console

from forgerl.chat import get_format
from forgerl.engine.base import SamplingParams
from forgerl.engine.scripted import ScriptedEngine
from forgerl.errors import ConfigError
from forgerl.eval.run import held_out_tasks, run_eval, run_tasks
from forgerl.eval.settings import held_out_settings, resolve_settings
from forgerl.train.config import load_config
from forgerl.types import Message, ToolCall


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "run.toml"
    path.write_text(text)
    return path


def test_settings_come_from_the_config_and_options_override_them(tmp_path: Path) -> None:
    config = load_config(write(tmp_path, 'env = "arithmetic"\nmax_turns = 5\nmax_tokens = 96\nseed = 3\n'
                                         '[eval]\ntasks = 7\ntemperature = 0.5\n'))
    base = held_out_settings(config=config)
    assert (base.env, base.n, base.max_turns, base.max_tokens, base.seed, base.temperature) == (
        "arithmetic", 7, 5, 96, 3, 0.5)
    used, training = resolve_settings(n=2, max_turns=9, config=config)
    assert (used.n, used.max_turns, used.max_tokens) == (2, 9, 96) and training == base
    assert held_out_settings().n != 7  # without a config: TrainConfig's defaults


def test_a_curriculum_config_needs_the_family_named(tmp_path: Path) -> None:
    config = load_config(Path(__file__).parents[2] / "examples" / "configs" / "curriculum.toml")
    with pytest.raises(ConfigError, match="--env"):
        held_out_settings(config=config)
    chosen = held_out_settings("cowork", config)
    assert chosen.env == "cowork" and chosen.max_turns == config.max_turns and chosen.n == config.eval.tasks


def _recording_engine(tokenizer, seen: list[bool]) -> ScriptedEngine:  # noqa: ANN001
    """Submits a wrong answer at once, noting whether the context tool was offered in the prompt."""
    fmt = get_format("minimax_m2")

    def answer(prompt: str) -> str:
        seen.append("context_drop_tool_outputs" in prompt)
        call = ToolCall(name="submit_answer", arguments={"answer": "-1"})
        return fmt.render_assistant_body(Message(role="assistant", reasoning="done", tool_calls=[call]))

    return ScriptedEngine(tokenizer, [answer], cycle=True)


@pytest.mark.parametrize(("table", "offered"), [("", False), ('[context]\nmanager = "actions"\n', True),
                                                 ('[context]\nmanager = "actions"\n[eval.context]\nmanager = "none"\n', False)])
def test_the_configs_held_out_context_manager_reaches_every_episode(tokenizer, tmp_path: Path, table: str,
                                                                    offered: bool) -> None:
    config = load_config(write(tmp_path, f'env = "arithmetic"\n{table}'))
    seen: list[bool] = []
    report = run_eval(n=3, engine=_recording_engine(tokenizer, seen), config=config, out_dir=tmp_path / "out",
                      console=Console(width=200, record=True))
    assert report.overall.episodes == 3 and len(seen) == 3
    assert set(seen) == {offered}


def test_a_multi_agent_family_runs_through_its_own_episode_runner(tokenizer) -> None:
    """The coordinator's trajectory comes back, tied to its episode (`agents` is set by the family's
    runner, never by the plain agent loop)."""
    import asyncio

    fmt = get_format("minimax_m2")
    tasks = held_out_tasks("parallel-lookup", 1, difficulty=1)
    seen: list[bool] = []

    async def main():  # noqa: ANN202
        return await run_tasks(_recording_engine(tokenizer, seen), fmt, "parallel-lookup", tasks,
                               sampling=SamplingParams(max_tokens=64, temperature=0.0), max_turns=4,
                               max_total_tokens=2048)

    (traj,) = asyncio.run(main())
    assert traj.metadata["agents"] == 1 and traj.metadata["eval_index"] == 0
