"""Fixtures for the store tests: a fresh store in a temporary run directory, with one run, and a
factory of realistic trajectories (calls with token ids and logprobs, messages, metadata)."""

from __future__ import annotations

import random

import pytest

from forgerl.store import TrajectoryStore
from forgerl.types import Failure, LLMCall, Message, ToolCall, ToolSpec, Trajectory, TrajectoryStatus


def build_trajectory(i: int, *, n_calls: int = 2, tokens_per_call: int = 16, family: str | None = "arithmetic",
                     difficulty: float | None = None, reward: float | None = 1.0,
                     status: TrajectoryStatus = TrajectoryStatus.COMPLETED, policy_versions: list[int] | None = None,
                     created_at: float | None = None) -> Trajectory:
    rng = random.Random(i)
    versions = policy_versions or [3 + k for k in range(n_calls)]
    calls = []
    prompt = [rng.randrange(4096) for _ in range(8)]
    for k in range(n_calls):
        completion = [rng.randrange(4096) for _ in range(tokens_per_call)]
        calls.append(LLMCall(prompt_ids=list(prompt), completion_ids=completion,
                             completion_logprobs=[-rng.random() * 5 for _ in completion],
                             loss_mask=[1] * len(completion), policy_version=versions[k], finish_reason="stop"))
        prompt = prompt + completion + [rng.randrange(4096) for _ in range(4)]
    metadata: dict = {"seed": i, "new_roots": [0]}
    traj = Trajectory(
        id=f"traj_{i:06d}", task_id=f"task_{i % 7}", group_id=f"group_{i // 4}", chat_format="minimax_m2",
        calls=calls,
        messages=[Message(role="user", content=f"What is {i}+1?"),
                  Message(role="assistant", reasoning="add one", tool_calls=[ToolCall(id="c1", name="calc",
                                                                                      arguments={"expr": f"{i}+1"})]),
                  Message(role="tool", content=str(i + 1), tool_call_id="c1", name="calc")],
        tools=[ToolSpec(name="calc", description="evaluate", parameters={"type": "object", "properties": {
            "expr": {"type": "string"}}})],
        reward=reward, reward_breakdown={} if reward is None else {"correct": reward},
        status=status, metadata=metadata, family=family, difficulty=difficulty,
        failure=Failure(boundary="engine", message="boom") if status == TrajectoryStatus.FAILED else None,
    )
    traj.created_at = created_at if created_at is not None else 1_700_000_000.0 + i  # deterministic
    return traj


@pytest.fixture()
def make_traj():
    return build_trajectory


@pytest.fixture()
def store(tmp_path):
    with TrajectoryStore(tmp_path / "run") as s:
        yield s


@pytest.fixture()
def run_id(store):
    return store.add_run({"lr": 1e-5, "loss": "cispo"}, run_id="run_a")


def writer_trajectory(i: int) -> Trajectory:
    """What the writer child processes of the durability test store as trajectory number i: every
    third one large enough to be compressed, so both payload encodings are killed mid-write."""
    return build_trajectory(i, tokens_per_call=1500 if i % 3 == 0 else 12, difficulty=float(i % 5))


@pytest.fixture()
def writer_traj():
    return writer_trajectory
