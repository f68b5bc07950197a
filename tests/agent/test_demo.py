"""`forgerl rollout` end to end with a scripted engine injected: transcript, reward, saved JSON, and
model output printed literally (never interpreted as rich markup)."""

from __future__ import annotations

import io

from rich.console import Console

from forgerl.chat import get_format
from forgerl.cli.transcript import run_demo
from forgerl.engine.scripted import ScriptedEngine
from forgerl.envs.base import make_env, sample_task
from forgerl.types import Message, ToolCall, Trajectory, TrajectoryStatus


def capture() -> tuple[Console, io.StringIO]:
    out = io.StringIO()
    return Console(file=out, width=140, color_system=None), out


def test_demo_prints_a_gold_episode_and_saves_it(tokenizer, tmp_path):
    fmt, task = get_format("minimax_m2"), sample_task("arithmetic", 5)
    rounds = make_env("arithmetic", 5).gold_solution(task)
    replies = [fmt.render_assistant_body(Message(role="assistant", reasoning="Step by step.", tool_calls=r))
               for r in rounds]
    console, out = capture()
    path = tmp_path / "trajectory.json"
    traj = run_demo(env="arithmetic", seed=5, chat_format="minimax_m2", max_turns=6, max_tokens=200,
                    engine=ScriptedEngine(tokenizer, replies), console=console, save_path=path)
    text = out.getvalue()
    assert traj.reward == 1.0 and traj.status == TrajectoryStatus.COMPLETED
    assert task.prompt[:40] in text and "Step by step." in text
    assert f'-> submit_answer({{"answer": {task.answer}}})' in text
    assert "completed" in text and "correct" in text and "tokens/s" in text
    assert f"{traj.num_completion_tokens} sampled" in text
    assert Trajectory.model_validate_json(path.read_text()) == traj


def test_demo_prints_model_output_literally(tokenizer):
    fmt = get_format("minimax_m2")
    hostile = "[bold red]pwned[/] [/link] [link=http://evil]x"
    replies = [
        fmt.render_assistant_body(Message(role="assistant", reasoning="[/]",
                                          tool_calls=[ToolCall(name="calculator", arguments={"expression": "[/i]"})])),
        fmt.render_assistant_body(Message(role="assistant", content=hostile)),
    ]
    console, out = capture()
    traj = run_demo(seed=1, max_turns=4, max_tokens=200, engine=ScriptedEngine(tokenizer, replies), console=console)
    text = out.getvalue()
    assert traj.status == TrajectoryStatus.COMPLETED and traj.reward == 0.0
    assert hostile in text and '"expression": "[/i]"' in text
    assert "Error: could not parse expression '[/i]'" in text  # the tool's error, printed as is


def test_demo_reports_an_engine_failure(tokenizer):
    console, out = capture()
    traj = run_demo(seed=2, engine=ScriptedEngine(tokenizer, []), console=console)
    text = out.getvalue()
    assert traj.status == TrajectoryStatus.FAILED
    assert "failed" in text and "[engine] EngineError: scripted engine ran out of replies" in text
    assert "kept out of the loss" in text
