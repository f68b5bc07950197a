"""A real third-party agent program — mini-swe-agent from PyPI — pointed at the gateway, fixing a
swe-bugfix task. Its shell commands run in the task's sandbox through the session's tool endpoint
(a 30-line mini-swe-agent Environment below); the model behind the gateway is scripted so the
test is about the plumbing, not about a tiny model's skill.

Needs `pip install mini-swe-agent==2.4.6` (skipped otherwise)."""

from __future__ import annotations

import platform
import re
from pathlib import Path
from typing import Any

import httpx
import pytest

from forgerl.envs.swe import load_swe_tasks
from forgerl.envs.swe.workspace import check_task, mutation_of
from forgerl.train.config import TrainConfig
from forgerl.train.step import build_samples
from forgerl.types import Message, chain_samples

from .conftest import MODEL

pytestmark = pytest.mark.slow


class GatewayShell:
    """A mini-swe-agent Environment whose commands run in the gateway session's sandbox."""

    def __init__(self, base_url: str, api_key: str) -> None:
        self.http = httpx.Client(base_url=base_url.rstrip("/") + "/", timeout=120,
                                 headers={"Authorization": f"Bearer {api_key}"})

    def execute(self, action: dict, cwd: str = "", *, timeout: int | None = None) -> dict[str, Any]:
        from minisweagent.exceptions import Submitted

        out = self.http.post("tools/call", json={"name": "run_shell", "arguments": {"command": action["command"]}})
        text = out.raise_for_status().json()["content"]
        code = re.search(r"exit code: (\d+)", text)
        returncode = int(code.group(1)) if code else -1
        if returncode == 0 and "COMPLETE_TASK_AND_SUBMIT_FINAL_OUTPUT" in text:
            raise Submitted({"role": "exit", "content": "", "extra": {"exit_status": "Submitted", "submission": ""}})
        return {"output": text, "returncode": returncode, "exception_info": ""}

    def get_template_vars(self, **kwargs: Any) -> dict[str, Any]:
        return {**platform.uname()._asdict(), "cwd": ".", **kwargs}

    def serialize(self) -> dict[str, Any]:
        return {"info": {"config": {"environment_type": "GatewayShell"}}}


def _run_mini_swe_agent(base_url: str, api_key: str, prompt: str) -> None:
    import yaml
    from minisweagent import config as mswea_config
    from minisweagent.agents.default import DefaultAgent
    from minisweagent.models.litellm_textbased_model import LitellmTextbasedModel

    cfg = yaml.safe_load((Path(mswea_config.__file__).parent / "mini_textbased.yaml").read_text())
    model = LitellmTextbasedModel(model_name=f"openai/{MODEL}", cost_tracking="ignore_errors",
                                  model_kwargs={"api_base": base_url, "api_key": api_key, "temperature": 1.0},
                                  **{k: v for k, v in cfg.get("model", {}).items() if k not in ("model_name", "model_kwargs")})
    agent = DefaultAgent(model, GatewayShell(base_url, api_key), **{**cfg["agent"], "step_limit": 6})
    agent.run(task=prompt)


def _reply(fmt, thought: str, command: str) -> str:
    content = f"THOUGHT: {thought}\n\n```mswea_bash_command\n{command}\n```"
    return fmt.render_assistant_body(Message(role="assistant", content=content, reasoning=thought))


def test_mini_swe_agent_fixes_a_bug_through_the_gateway(live_gateway, m2_format, monkeypatch, tmp_path):
    pytest.importorskip("minisweagent")
    monkeypatch.setenv("LITELLM_LOCAL_MODEL_COST_MAP", "True")
    monkeypatch.setenv("MSWEA_MODEL_RETRY_STOP_AFTER_ATTEMPT", "1")
    task = next(t for t in load_swe_tasks("bugfix"))
    data, mutation = check_task(task), mutation_of(task)
    fix = (f"python - <<'FORGERL_EOF'\nimport pathlib\np = pathlib.Path({data['module']!r})\n"
           f"p.write_text(p.read_text().replace({mutation.buggy!r}, {mutation.original!r}, 1))\nFORGERL_EOF")
    done = "echo COMPLETE_TASK_AND_SUBMIT_FINAL_OUTPUT"
    replies = [_reply(m2_format, "Apply the fix.", fix), _reply(m2_format, "Done.", done),  # session 1: fixes
               _reply(m2_format, "Done.", done)]  # session 2: submits without fixing
    live = live_gateway(replies=replies)
    group = []
    for expected in (1.0, 0.0):
        s = live.open(task=task.model_dump(mode="json"), group_id="swe")
        _run_mini_swe_agent(s["base_url"], s["api_key"], task.prompt)
        sub = live.http.post(f"{s['base_url']}/tools/call", json={"name": "submit"},
                             headers={"Authorization": f"Bearer {s['api_key']}"}).json()
        assert not sub["is_error"], sub
        ended = live.end(s)
        traj = live.gateway.finished[s["session_id"]]
        assert traj.reward_breakdown.get("outcome", traj.reward) == expected, (ended, traj.metadata.get("reward_evidence"))
        group.append(traj)
    assert [len(t.calls) for t in group] == [2, 1]
    # mini-swe-agent sends command outputs back as *user* messages. M2 keeps reasoning only after
    # the last user message, so the correct render of call 2 drops call 1's reasoning: it is not an
    # extension of the sampled context, and the gateway honestly starts a new root (DESIGN contract 2)
    assert [m.role for m in group[0].messages] == ["system", "user", "assistant", "user", "assistant"]
    assert group[0].metadata["new_roots"] == [0, 1]
    assert all(chain_samples(t, [1.0] * len(t.calls)) for t in group)
    samples = build_samples([group], TrainConfig())
    assert samples and sum(s.num_tokens for s in samples) == sum(t.num_completion_tokens for t in group)
    _train_on(samples, tmp_path)


def _train_on(samples, tmp_path: Path) -> None:
    """The trainer takes two optimizer steps on the agent's recorded samples (tiny-random shares the
    project tokenizer the gateway recorded with; the scripted engine's logprobs are a constant, so
    this checks the plumbing, not the importance ratio)."""
    import math

    import torch

    from forgerl.train.run import close_run, open_run
    from forgerl.train.step import optimize

    run = open_run(TrainConfig(model="tiny-random", run_dir=str(tmp_path / "run"), steps=2))
    try:
        before = [p.detach().clone() for p in run.policy.parameters()]
        for _ in range(2):
            metrics = optimize(run, samples)
            assert math.isfinite(metrics["train/loss"]) and math.isfinite(metrics["train/grad_norm"])
            assert metrics["train/tokens"] == sum(s.num_tokens for s in samples)
        assert any(not torch.equal(a, b) for a, b in zip(before, run.policy.parameters(), strict=True))
    finally:
        close_run(run)
