"""Two `forgerl serve` replicas behind the router with the `dir` weight transport, one SIGKILLed in
the middle of a batch of agent rollouts (issue 19, "Done when"): the rollouts go on on the other
replica, the ones that were running on the killed one are recorded as infrastructure failures (no
reward, never a zero), every acknowledged (stored) trajectory is there, and the killed replica is
restarted and re-admitted only once it serves the current weights.

Kept short: tiny-random, one thread per process, three-turn episodes of 24 tokens.
"""

from __future__ import annotations

import asyncio
import time

import httpx
import pytest
import torch

from forgerl.agent.loop import run_episode
from forgerl.chat import get_format
from forgerl.engine.base import SamplingParams
from forgerl.engine.pool import open_engine_pool
from forgerl.model.loading import load_policy
from forgerl.rollout.tasks import make_task
from forgerl.store import TrajectoryStore
from forgerl.types import Boundary, Trajectory, TrajectoryStatus


@pytest.mark.timeout(420)
def test_a_replica_killed_mid_run_costs_only_its_in_flight_rollouts(tmp_path):
    torch.set_num_threads(1)
    policy, tokenizer = load_policy("tiny-random", device="cpu", dtype="float32", chat_format="minimax_m2")
    fmt = get_format("minimax_m2")
    stop = (tokenizer.convert_tokens_to_ids(fmt.end_of_message),)
    shared = tmp_path / "shared-storage"
    router = open_engine_pool(tokenizer, replicas=2, model="tiny-random", transport="dir", weights_dir=shared,
                              stop_token_ids=stop, max_context=512, initial_weights=policy.state_dict(), threads=1,
                              timeout_s=60, log_dir=tmp_path / "logs")
    router.recheck_s = 0.5
    store = TrajectoryStore(tmp_path / "run")
    run_id = store.add_run({"test": "router"})
    acknowledged: list[str] = []

    async def episode(g: int, i: int) -> Trajectory:
        env, task = make_task("arithmetic", g, 1)
        traj = await run_episode(router, fmt, env, task, sampling=SamplingParams(max_tokens=24, seed=10 * g + i),
                                 max_turns=3, max_total_tokens=512, trajectory=Trajectory(group_id=f"task{g}"))
        store.add_trajectory(traj, run_id)
        acknowledged.append(traj.id)
        return traj

    async def kill_replica_0_while_it_samples() -> None:
        """SIGKILL once the server itself counts a request it is working on (its admission gate). One, not
        two: on a loaded machine the replica may never hold two at a poll, and every episode then
        finished unkilled (seen twice beside a pre-training run)."""
        url, auth = router.members[0].name, {"Authorization": f"Bearer {router.replicas.admin_token}"}
        async with httpx.AsyncClient(headers=auth, timeout=5) as http:
            while (await http.get(f"{url}/admin/weights")).json()["in_flight"] < 1:
                await asyncio.sleep(0.005)
        router.replicas.kill(0)

    async def rollouts() -> list[Trajectory]:
        killer = asyncio.create_task(kill_replica_0_while_it_samples())
        trajectories = await asyncio.gather(*(episode(g, i) for g in range(6) for i in range(2)))
        await asyncio.wait_for(killer, 5)
        return trajectories

    async def until_readmitted(deadline_s: float) -> list:
        deadline = time.monotonic() + deadline_s
        while not router.members[0].up:
            assert time.monotonic() < deadline, f"replica 0 was not re-admitted: {router.report()}"
            await router.generate([1, 2, 3], SamplingParams(max_tokens=2))  # routing probes the down engine
            await asyncio.sleep(0.5)
        return [await router.generate([5 + k] * 30, SamplingParams(max_tokens=4), session_id=f"after/{k}")
                for k in range(4)]

    try:
        trajectories = asyncio.run(rollouts())
        failed = [t for t in trajectories if t.status == TrajectoryStatus.FAILED]
        assert failed, "the killed replica had a rollout in flight; it must be recorded as failed"
        assert all(t.failure.boundary == Boundary.ENGINE and t.reward is None for t in failed)
        done = [t for t in trajectories if t.status != TrajectoryStatus.FAILED]
        assert len(done) >= len(trajectories) // 2 and all(t.reward is not None for t in done)
        assert {t.id for t in store.query(run_id=run_id)} == set(acknowledged) == {t.id for t in trajectories}
        assert {c.policy_version for t in trajectories for c in t.calls} == {0}

        trained = {k: v + 0.01 if v.is_floating_point() else v for k, v in policy.state_dict().items()}
        router.update_weights(trained, 1)  # replica 0 is dead or restarting: it cannot load version 1 yet
        assert [m.name for m in router.available()] == [router.members[1].name]
        after = asyncio.run(until_readmitted(240))
        member = router.members[0]
        info = httpx.get(f"{member.name}/admin/weights",
                         headers={"Authorization": f"Bearer {router.replicas.admin_token}"}).json()
        assert info["policy_version"] == 1 and member.stats["readmissions"] == 1
        assert {r.policy_version for r in after} == {1} and member.stats["calls"] > 0
        assert len(list(shared.glob("*.safetensors"))) <= 2  # old versions cleaned
    finally:
        store.close()
        router.close()
    assert all(p.poll() is not None for p in router.replicas.procs)


@pytest.mark.slow  # two replicas and two RL steps: ~40 s on 2 busy cores
@pytest.mark.timeout(600)
def test_the_trainer_runs_on_replicas_launched_from_the_config(tmp_path):
    from forgerl.train.config import load_config
    from forgerl.training import run_training

    cfg = load_config(model="tiny-random", env="arithmetic", difficulty=[1], steps=2, groups_per_step=2, group_size=2,
                      max_turns=2, max_tokens=12, max_context=512, eval={"every": 10, "tasks": 1}, checkpoint_every=1,
                      seed=3, run_dir=str(tmp_path / "run"),
                      engine={"kind": "remote", "replicas": 2, "threads_per_replica": 1, "transport": "dir",
                              "weights_dir": str(tmp_path / "shared")})
    result = run_training(cfg)
    assert [s for s, _ in result.eval_rewards] == [0, 2]
    with TrajectoryStore(tmp_path / "run") as store:
        trajectories = store.query(run_id=store.runs()[0].id)
    assert len(trajectories) == 8 and all(t.status != TrajectoryStatus.FAILED for t in trajectories)
    assert {c.policy_version for t in trajectories for c in t.calls} == {0, 1}
    logs = sorted((tmp_path / "run" / "engines").glob("replica*.log"))
    # both loaded the run's weights: the attach push and one push per step
    assert len(logs) == 2 and all(p.read_text().count('"POST /admin/weights HTTP/1.1" 200') == 3 for p in logs)
    assert list((tmp_path / "shared").glob("*.safetensors")) == []  # the run's weight files are removed at the end
