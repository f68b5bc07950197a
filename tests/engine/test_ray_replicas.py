"""`[engine] replicas = K` placed by Ray (`[distributed] launcher = "ray"`, engine/ray_replicas.py),
on a local Ray instance, CPU, one thread per replica: the router over them serves the run's weights
and restarts a killed replica through its actor; `forgerl train`'s loop runs on them from the
config. Skipped without the `ray` extra."""

from __future__ import annotations

import time

import pytest

ray = pytest.importorskip("ray", reason="Ray replicas need the `ray` extra (pip install 'forgerl[ray]')")


@pytest.fixture
def local_ray(monkeypatch):
    monkeypatch.setenv("RAY_ADDRESS", "local")  # a fresh local Ray instance, never someone's cluster
    yield
    ray.shutdown()


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_ray_replicas_behind_the_router_take_weights_and_restart(tmp_path, local_ray):
    import httpx
    import torch

    from forgerl.engine.pool import open_engine_pool
    from forgerl.engine.ray_replicas import RayReplicas
    from forgerl.engine.remote import health
    from forgerl.model.loading import load_policy

    torch.set_num_threads(1)
    policy, tokenizer = load_policy("tiny-random", device="cpu", dtype="float32", chat_format="minimax_m2")
    router = open_engine_pool(tokenizer, replicas=2, model="tiny-random", stop_token_ids=(), max_context=256,
                              initial_weights=policy.state_dict(), threads=1, timeout_s=60,
                              log_dir=tmp_path / "logs", launcher="ray")
    try:
        replicas = router.replicas
        assert isinstance(replicas, RayReplicas) and len(replicas.urls) == 2
        assert all(url.startswith("http://127.0.0.1:") for url in replicas.urls)  # the trainer's node: loopback
        auth = {"Authorization": f"Bearer {replicas.admin_token}"}
        versions = [httpx.get(f"{url}/admin/weights", headers=auth, timeout=5).json()["policy_version"]
                    for url in replicas.urls]
        assert versions == [0, 0]  # the run's weights reached both through the router
        replicas.kill(1)
        assert not health(replicas.urls[1], timeout_s=1.0)
        replicas.launch(1)  # what the router's probe does for a dead member
        deadline = time.monotonic() + 120
        while not health(replicas.urls[1], timeout_s=1.0):
            assert time.monotonic() < deadline, "the restarted replica did not answer /health"
            time.sleep(0.2)
        assert sorted(p.name for p in (tmp_path / "logs").glob("replica*.log")) == ["replica0.log", "replica1.log"]
    finally:
        router.close()
    assert not any(health(url, timeout_s=1.0) for url in replicas.urls)  # stopped with the router


@pytest.mark.slow  # two replicas and one RL step
@pytest.mark.timeout(300)
def test_the_trainer_runs_on_ray_replicas_from_the_config(tmp_path, local_ray):
    from forgerl.store import TrajectoryStore
    from forgerl.train.config import load_config
    from forgerl.training import run_training
    from forgerl.types import TrajectoryStatus

    cfg = load_config(model="tiny-random", env="arithmetic", difficulty=[1], steps=1, groups_per_step=2, group_size=2,
                      max_turns=2, max_tokens=12, max_context=512, eval={"every": 10, "tasks": 1}, seed=3,
                      run_dir=str(tmp_path / "run"), distributed={"launcher": "ray"},
                      engine={"kind": "remote", "replicas": 2, "threads_per_replica": 1})
    run_training(cfg)
    assert ray.is_initialized()  # the replicas were placed through Ray, not launched as local children
    with TrajectoryStore(tmp_path / "run") as store:
        trajectories = store.query(run_id=store.runs()[0].id)
    assert len(trajectories) == 4 and all(t.status != TrajectoryStatus.FAILED for t in trajectories)
    logs = sorted((tmp_path / "run" / "engines").glob("replica*.log"))
    assert len(logs) == 2 and all('"POST /admin/weights HTTP/1.1" 200' in p.read_text() for p in logs)
