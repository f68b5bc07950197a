"""The gateway records and scores exactly as the white-box agent loop does (agent/recording.py):
the same scripted episode, played once by `run_episode` and once by a black-box agent through the
gateway, gives equal calls (ids, logprobs, mask, version, finish reason), reward and breakdown."""

from __future__ import annotations

import asyncio
import importlib.util
from pathlib import Path

from forgerl.agent.loop import run_episode
from forgerl.engine.base import SamplingParams
from forgerl.engine.scripted import ScriptedEngine
from forgerl.envs.base import make_env, sample_task
from forgerl.envs.tool_reasoning import gold_messages
from forgerl.types import TrajectoryStatus

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "openai_agent.py"
SEED, DIFFICULTY = 11, 2
# what the recorders decide; timings and prefix-cache hits depend on the run, not on the recorder
RECORDED = {"prompt_ids", "completion_ids", "completion_logprobs", "loss_mask", "policy_version", "finish_reason",
            "parse_error"}


def _example_agent():
    spec = importlib.util.spec_from_file_location("openai_agent_example_same", EXAMPLE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_agent_loop_and_the_gateway_record_and_score_one_episode_alike(live_gateway, m2_format, m2_tokenizer):
    task = sample_task("tool-reasoning", SEED, DIFFICULTY)
    replies = [m2_format.render_assistant_body(m) for m in gold_messages(task) if m.role == "assistant"]

    white = asyncio.run(run_episode(
        ScriptedEngine(m2_tokenizer, replies), m2_format, make_env("tool-reasoning", SEED), task,
        sampling=SamplingParams(max_tokens=2000), max_turns=len(replies) + 1, max_total_tokens=30_000))

    live = live_gateway(replies=replies)
    session = live.open(family="tool-reasoning", seed=SEED, difficulty=DIFFICULTY)
    assert _example_agent().run_agent(session["base_url"], session["api_key"])["done"]
    live.end(session)
    black = live.gateway.finished[session["session_id"]]

    assert white.status == black.status == TrajectoryStatus.COMPLETED, (white.failure, black.failure)
    assert white.reward == black.reward == 1.0
    assert white.reward_breakdown == black.reward_breakdown
    assert white.metadata.get("reward_evidence") == black.metadata.get("reward_evidence")
    assert len(white.calls) == len(black.calls) == len(replies)
    for w, b in zip(white.calls, black.calls, strict=True):
        assert w.model_dump(include=RECORDED) == b.model_dump(include=RECORDED)
