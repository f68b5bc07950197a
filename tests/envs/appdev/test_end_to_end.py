"""AppDev end to end in real Chromium: episodes of the real environment through the agent loop
(a scripted engine writes the reference app, or a broken variant, then submits), stored, and
chosen for rejection-sampled SFT with prompt distillation — the path issue 21 describes, without a
model that can write apps. Browser tier (`make test-browser`, CI)."""

from __future__ import annotations

import asyncio
import importlib.util
import os
import shutil
from pathlib import Path

import pytest

from forgerl.agent.loop import run_episode
from forgerl.chat import get_format
from forgerl.engine.base import SamplingParams
from forgerl.engine.scripted import ScriptedEngine
from forgerl.envs.appdev import AppDevEnv, broken_variants, generate_task
from forgerl.model.tokenizer import load_default_tokenizer, prepare_tokenizer
from forgerl.store import TrajectoryStore
from forgerl.train.sft_store import StoreSelection, passing_trajectories, store_examples
from forgerl.types import Message, ToolCall, TrajectoryStatus

CHROMIUM = os.environ.get("FORGERL_CHROMIUM") or shutil.which("chromium") or shutil.which("chromium-browser")
pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(CHROMIUM is None or importlib.util.find_spec("playwright") is None,
                       reason="needs Debian's chromium and the playwright package (make setup installs both)"),
]


def _episode(task, rounds, evidence_root):
    fmt = get_format("minimax_m2")
    tokenizer = prepare_tokenizer(load_default_tokenizer(), fmt)
    replies = [fmt.render_assistant_body(Message(role="assistant", reasoning=f"step {i}", tool_calls=calls))
               for i, calls in enumerate(rounds)]
    env = AppDevEnv(evidence_root=evidence_root)

    async def play():
        try:
            return await run_episode(ScriptedEngine(tokenizer, replies), fmt, env, task,
                                     sampling=SamplingParams(max_tokens=4096), max_turns=4, max_total_tokens=16000)
        finally:
            await env.close()

    return asyncio.run(play()), tokenizer


def test_gold_and_broken_apps_through_the_loop_then_sft_keeps_only_the_passing_one(tmp_path):
    task = generate_task(0, 1)
    gold = AppDevEnv().gold_solution(task)
    name, files = sorted(broken_variants(task).items())[0]
    broken = [[ToolCall(name="write_file", arguments={"path": p, "content": c}) for p, c in files.items()],
              [ToolCall(name="submit", arguments={})]]

    passed, tokenizer = _episode(task, gold, tmp_path / "evidence")
    failed, _ = _episode(task, broken, tmp_path / "evidence")

    assert passed.status == TrajectoryStatus.COMPLETED and passed.reward == 1.0
    assert failed.status == TrajectoryStatus.COMPLETED and 0.0 < failed.reward < 1.0, (name, failed.reward)
    evidence = passed.metadata["reward_evidence"]["verifier"]
    shots = [s for item in [evidence["gate"], *evidence["items"]] for s in item["screenshots"]]
    kept = Path(evidence["evidence_dir"])
    assert kept.parent == tmp_path / "evidence"  # kept past close(): the review app shows them
    assert len(shots) == 1 + len(evidence["items"]) and all((kept / s).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" for s in shots)

    run = tmp_path / "run"
    with TrajectoryStore(run) as store:
        store.add_run(run_id="appdev-e2e")
        store.add_trajectories([passed, failed], "appdev-e2e")
    chosen, total = passing_trajectories(run, StoreSelection(min_reward=1.0))
    assert total == 2 and [t.id for _, t in chosen] == [passed.id]
    [example] = store_examples(chosen, tokenizer, drop_p=1.0)
    assert example.source["rerenders_exactly"] and example.source["dropped"] == ["Stack", "Contract", "Quality", "Checking"]
    trained = [i for i, m in zip(example.ids, example.mask, strict=True) if m]
    sampled = [i for call in passed.calls for i, m in zip(call.completion_ids, call.loss_mask, strict=True) if m]
    assert trained == sampled  # distillation changed the prompt only: every trained token was sampled
