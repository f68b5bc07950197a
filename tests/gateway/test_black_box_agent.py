"""examples/openai_agent.py — an agent that only knows the `openai` client — driven through the
gateway: it solves tool-reasoning tasks, and its trajectories are what the trainer accepts."""

from __future__ import annotations

import ast
import functools
import importlib.util
from pathlib import Path

import pytest

from forgerl.envs.base import sample_task
from forgerl.envs.tool_reasoning import gold_messages
from forgerl.train.config import TrainConfig
from forgerl.train.step import build_samples
from forgerl.types import Message, chain_samples

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "openai_agent.py"


def _load_example():
    spec = importlib.util.spec_from_file_location("openai_agent_example", EXAMPLE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _replies(fmt, seed: int, *, wrong: bool = False) -> list[str]:
    assistant = [m for m in gold_messages(sample_task("tool-reasoning", seed, 2)) if m.role == "assistant"]
    if wrong:  # the same path, but it submits a wrong number
        last = assistant[-1]
        call = last.tool_calls[-1].model_copy(update={"arguments": {"answer": last.tool_calls[-1].arguments["answer"] + 1}})
        assistant[-1] = Message(role="assistant", content=last.content, reasoning=last.reasoning,
                                tool_calls=[*last.tool_calls[:-1], call])
    return [fmt.render_assistant_body(m) for m in assistant]


def test_the_example_imports_nothing_of_forgerl():
    tree = ast.parse(EXAMPLE.read_text())
    modules = {a.name.split(".")[0] for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
    modules |= {n.module.split(".")[0] for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.module}
    assert "forgerl" not in modules and "openai" in modules


@pytest.mark.parametrize("inline_think", [False, True])
def test_example_agent_through_the_gateway_gives_trainable_trajectories(live_gateway, m2_format, tmp_path, inline_think):
    from forgerl.store import TrajectoryStore

    agent = _load_example()
    seed = 11
    right, wrong = _replies(m2_format, seed), _replies(m2_format, seed, wrong=True)
    store = TrajectoryStore(tmp_path)
    live = live_gateway(replies=right + wrong, store=store)
    group = []
    for expected in (1.0, 0.0):  # sequential: the scripted engine plays the two scripts in order
        s = live.open(family="tool-reasoning", seed=seed, difficulty=2, group_id="g")
        outcome = agent.run_agent(s["base_url"], s["api_key"], inline_think=inline_think)
        assert outcome["done"]
        ended = live.end(s)
        assert ended["reward"] == pytest.approx(expected, abs=0.2) and ended["branches"] == 1
        group.append(store.get_trajectory(ended["trajectory_id"]))
    assert group[0].reward > group[1].reward
    for traj in group:  # every call extends the previous one: one chain, one training sample
        assert traj.metadata["new_roots"] == [0] and len(traj.calls) == len(right)
        assert len(chain_samples(traj, [1.0] * len(traj.calls))) == 1
    samples = build_samples([group], TrainConfig(loss={"name": "cispo"}))
    assert samples and sum(s.num_tokens for s in samples) == sum(t.num_completion_tokens for t in group)
    assert {s.trajectory_id for s in samples} == {t.id for t in group}


@pytest.mark.slow
def test_train_through_gateway_runs_steps_with_the_default_policy(tmp_path):
    """A couple of CISPO steps where the rollouts are the example agent's gateway sessions."""
    from forgerl.gateway.train import train_through_gateway

    agent = _load_example()
    config = TrainConfig(model="default", steps=2, groups_per_step=2, group_size=4, eval={"tasks": 1}, max_turns=4,
                         run_dir=str(tmp_path / "run"), seed=1)
    out = train_through_gateway(config, functools.partial(agent.run_agent, max_turns=config.max_turns,
                                                          max_tokens=config.max_tokens))
    assert out["steps"] == 2 and len(out["rewards"]) == 2
    from forgerl.store import TrajectoryStore

    store = TrajectoryStore(tmp_path / "run")
    trajs = store.query()
    assert len(trajs) == 2 * 2 * 4 and all(t.metadata["source"] == "gateway" for t in trajs)
    assert store.metrics(store.runs()[-1].id, "train/samples")
