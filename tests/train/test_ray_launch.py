"""`[distributed] launcher = "ray"` (train/ray_launch.py). Without Ray: a clear error naming the
extra, a cluster that cannot be joined, and the placement, environment and failure message checked
on plain values. With Ray (the `ray` extra; skipped otherwise), CPU, 2 ranks of 1 thread, on a fresh
local Ray instance: `forgerl train` equals the one-process run (the torchrun test's config and
comparison), a rank killed with SIGKILL (or its actor) ends the run with the rank and its node named
and the resume command; on an existing `ray start` cluster, 2 ranks and 2 engine replicas placed by Ray."""

from __future__ import annotations

import importlib.util
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import pytest

from forgerl.errors import ConfigError
from forgerl.ray_support import require_ray
from forgerl.store import TrajectoryStore
from forgerl.train.config import load_config
from forgerl.train.launch import failure_message
from forgerl.train.ray_launch import Placed, RankExit, RayWorld, rank_env, ray_world

# The torchrun end-to-end test's tiny config, family and comparisons (tests have no package to import from)
_spec = importlib.util.spec_from_file_location("_distributed_train", Path(__file__).with_name("test_distributed_train.py"))
assert _spec is not None and _spec.loader is not None
dist_case = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(dist_case)

RAY_CONFIG = dist_case.CONFIG.replace("timeout_s = 30", 'timeout_s = 30\nlauncher = "ray"')
assert 'launcher = "ray"' in RAY_CONFIG


# -- without Ray --------------------------------------------------------------------------------

def test_the_launcher_is_a_config_choice(tmp_path):
    assert load_config(None).distributed.launcher == "torchrun"
    assert load_config(None, set_values=("distributed.launcher=ray",)).distributed.launcher == "ray"
    with pytest.raises(ConfigError, match="launcher"):
        load_config(None, set_values=("distributed.launcher=mpi",))


def test_ray_missing_is_a_clear_error_naming_the_extra(monkeypatch, tmp_path):
    from forgerl.cli.train import World, launch_ranks

    monkeypatch.setitem(sys.modules, "ray", None)  # `import ray` raises ImportError, as without the extra
    with pytest.raises(ConfigError, match="needs Ray, which is not installed") as info:
        require_ray()
    assert "pip install 'forgerl[ray]'" in info.value.hint and 'launcher = "torchrun"' in info.value.hint
    config = load_config(None, run_dir=str(tmp_path / "run"), set_values=("distributed.launcher=ray",))
    with pytest.raises(ConfigError, match="needs Ray"):
        launch_ranks(config, World(nproc_per_node=2), ["train"])
    assert not (tmp_path / "run").exists()


def test_a_cluster_that_cannot_be_joined_is_a_clear_error(monkeypatch):
    from forgerl.ray_support import join_ray

    def refuse(**_: object) -> None:
        raise ConnectionError("Failed to connect to Ray cluster at 10.9.9.9:6379")

    fake = SimpleNamespace(is_initialized=lambda: False, init=refuse)
    monkeypatch.setitem(sys.modules, "ray", fake)
    monkeypatch.setenv("RAY_ADDRESS", "10.9.9.9:6379")
    with pytest.raises(ConfigError, match="could not join the Ray cluster at 10.9.9.9:6379") as info:
        join_ray()
    assert "ray status" in info.value.hint and "RAY_AUTH_MODE=token" in info.value.hint


def test_torchrun_flags_and_ranges_are_refused_with_ray():
    with pytest.raises(ConfigError, match="--node-rank and --rdzv-endpoint are torchrun's") as info:
        ray_world(2, "2", 1, None, "cpu", 0)
    assert "once, on any node" in info.value.hint
    with pytest.raises(ConfigError, match="--rdzv-endpoint"):
        ray_world(2, None, None, "10.0.0.1:29400", "cpu", 0)
    with pytest.raises(ConfigError, match="whole number of nodes"):
        ray_world(2, "1:2", None, None, "cpu", 0)


def test_one_bundle_per_node_holds_its_ranks():
    gpu = ray_world(4, "2", None, None, "auto", cluster_gpus=8)
    assert (gpu.size, gpu.gpus, gpu.threads) == (8, 1, 1)
    assert gpu.bundles() == [{"CPU": 4.0, "GPU": 4.0}, {"CPU": 4.0, "GPU": 4.0}]
    assert ray_world(2, None, None, None, "cuda:0", 0).gpus == 1
    cpu = ray_world(2, None, None, None, "auto", cluster_gpus=0)
    assert cpu.gpus == 0 and cpu.bundles() == [{"CPU": float(2 * cpu.threads)}]


def test_each_rank_gets_torchruns_environment(monkeypatch):
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    monkeypatch.setenv("FORGERL_PROBE", "x")
    world = RayWorld(nproc_per_node=2, nnodes=2, threads=1, gpus=1)
    placed = Placed(pg=None, actors=[None] * 4, nodes=["10.0.0.1", "10.0.0.1", "10.0.0.2", "10.0.0.2"],
                    gpu_ids=[["3"], ["1"], ["0"], ["5"]], world=world)
    envs = [rank_env(placed, rank, 29500) for rank in range(4)]
    assert [(e["RANK"], e["LOCAL_RANK"], e["GROUP_RANK"]) for e in envs] == [
        ("0", "0", "0"), ("1", "1", "0"), ("2", "0", "1"), ("3", "1", "1")]
    assert all(e["WORLD_SIZE"] == "4" and e["LOCAL_WORLD_SIZE"] == "2" for e in envs)
    assert all(e["MASTER_ADDR"] == "10.0.0.1" and e["MASTER_PORT"] == "29500" for e in envs)
    # each rank sees its node's GPUs in local-rank order, so cuda:LOCAL_RANK is the one Ray gave it
    assert [e["CUDA_VISIBLE_DEVICES"] for e in envs] == ["3,1", "3,1", "0,5", "0,5"]
    assert all(e["FORGERL_PROBE"] == "x" and e["OMP_NUM_THREADS"] == "1" for e in envs)


def test_the_failure_message_names_the_rank_and_its_node(tmp_path):
    failures = {0: RankExit(0, 11, -int(signal.SIGTERM), 2.0, "10.0.0.1"),
                1: RankExit(1, 12, -int(signal.SIGKILL), 1.0, "10.0.0.2")}
    what, hint = failure_message(SimpleNamespace(failures=failures), tmp_path, "forgerl train --resume --run-dir r")
    assert what.startswith("rank 1 (pid 12, local rank 1, node 10.0.0.2) died with signal SIGKILL (kill -9, or the "
                           "kernel's out-of-memory killer"), what
    assert "rank 0 (pid 11, local rank 0, node 10.0.0.1) died with signal SIGTERM (stopped by the launcher" in what
    assert "no checkpoint yet" in hint and "forgerl train --resume --run-dir r" in hint


# -- with Ray, on a local instance ----------------------------------------------------------------

@pytest.mark.slow
def test_ray_ranks_train_like_one_process(tmp_path, monkeypatch):
    pytest.importorskip("ray", reason="the Ray launcher needs the `ray` extra (pip install 'forgerl[ray]')")
    monkeypatch.setenv("RAY_ADDRESS", "local")  # a fresh local Ray instance, never someone's cluster
    (tmp_path / "run.toml").write_text(RAY_CONFIG)
    (tmp_path / "single.toml").write_text(dist_case.CONFIG)
    (tmp_path / "parity.py").write_text(dist_case.PARITY_FAMILY)
    sharded = dist_case.forgerl(tmp_path, "run.toml", "--run-dir", "ray", "--nproc-per-node", "2")
    assert sharded.returncode == 0, sharded.stdout[-2000:] + sharded.stderr[-3000:]
    single = dist_case.forgerl(tmp_path, "single.toml", "--run-dir", "single")
    assert single.returncode == 0, single.stdout[-2000:] + single.stderr[-3000:]
    assert dist_case.rollouts(tmp_path / "ray") == dist_case.rollouts(tmp_path / "single")
    assert len(dist_case.rollouts(tmp_path / "single")) == 12
    dist_case.assert_close(dist_case.weights(tmp_path / "ray", 2), dist_case.weights(tmp_path / "single", 2))
    assert (tmp_path / "ray" / "checkpoints" / "step_000002" / "dcp" / ".metadata").is_file()  # sharded format


def test_a_killed_ray_rank_ends_the_run_with_the_rank_and_node_named(tmp_path, monkeypatch):
    """The rank's process SIGKILLed (what the kernel's OOM killer does): its exit leads the message."""
    pid, err = kill_during_a_ray_run(tmp_path, monkeypatch, actor=False)
    assert f"rank 1 (pid {pid}, local rank 1, node " in err and "died with signal SIGKILL" in err, err[-3000:]


@pytest.mark.slow
def test_a_lost_rank_actor_ends_the_run_with_the_rank_and_node_named(tmp_path, monkeypatch):
    """The Ray actor holding rank 1 SIGKILLed (a lost worker or node): its rank dies with it and leads."""
    _, err = kill_during_a_ray_run(tmp_path, monkeypatch, actor=True)
    assert "rank 1 (on node " in err and "was lost with its Ray actor" in err, err[-3000:]


def kill_during_a_ray_run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, *, actor: bool) -> tuple[int, str]:
    """Start a 2-rank Ray run, SIGKILL rank 1 (or its actor) after the step-1 checkpoint; check the
    run ended at once, non-zero, with the resume command and no rank left. Returns (rank 1's pid, stderr)."""
    proc, tag = start_a_long_ray_run(tmp_path, monkeypatch)
    pid = dist_case.rank_pid(tag, 1)
    assert pid is not None
    parent = int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])  # the RankActor's worker
    os.kill(parent if actor else pid, signal.SIGKILL)
    killed = time.time()
    _, err = proc.communicate(timeout=120)
    assert time.time() - killed < 30  # the launcher stops rank 0 at once, well within timeout_s
    assert proc.returncode == 1
    assert "the run is checkpointed at step" in err and "forgerl train --resume --run-dir run --nproc-per-node 2" in err
    assert dist_case.rank_pid(tag, 0) is None and dist_case.rank_pid(tag, 1) is None  # no rank left behind
    return pid, err


@pytest.mark.slow
def test_ctrl_c_lets_rank_0_checkpoint_and_stops_every_rank(tmp_path, monkeypatch):
    """SIGINT to `forgerl train` (what Ctrl-C sends it): forwarded to the ranks as torchrun does, rank 0
    finishes its step and checkpoints, the run exits 130 with the resume command."""
    proc, tag = start_a_long_ray_run(tmp_path, monkeypatch)
    proc.send_signal(signal.SIGINT)
    # a bound on a hang, not a speed check: beside another busy process the step in progress and its
    # checkpoint took over 120 s once (passes in ~30 s on a quiet machine)
    _, err = proc.communicate(timeout=300)
    assert proc.returncode == 130, err[-3000:]
    assert "stopped by SIGINT; resume with: forgerl train --resume --run-dir run --nproc-per-node 2" in err
    assert "training interrupted: finished the step in progress" in err  # rank 0's own words, through Ray's log
    checkpoints = sorted(p.name for p in (tmp_path / "run" / "checkpoints").glob("step_*"))
    assert checkpoints and not any(name.endswith(".tmp") for name in checkpoints), checkpoints
    # the step in progress was checkpointed: the newest checkpoint is the last step the run recorded
    # (step 1 itself when the signal lands in step 1's tail, after its checkpoint appeared; seen under load)
    with TrajectoryStore(tmp_path / "run") as store:
        run = store.runs()[0]
        assert run.status == "interrupted"
        last_step = max(step for step, _, _ in store.metrics(run.id))
        latest = store.latest_checkpoint(run.id)
    assert latest is not None and latest.step == last_step and checkpoints[-1] == f"step_{last_step:06d}", checkpoints
    assert dist_case.rank_pid(tag, 0) is None and dist_case.rank_pid(tag, 1) is None


def start_a_long_ray_run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[subprocess.Popen, str]:
    """A 50-step 2-rank run on a fresh local Ray instance, returned once its step-1 checkpoint exists."""
    pytest.importorskip("ray", reason="the Ray launcher needs the `ray` extra (pip install 'forgerl[ray]')")
    monkeypatch.setenv("RAY_ADDRESS", "local")  # a fresh local Ray instance, never someone's cluster
    (tmp_path / "run.toml").write_text(RAY_CONFIG.replace("steps = 2", "steps = 50"))
    (tmp_path / "parity.py").write_text(dist_case.PARITY_FAMILY)
    tag = f"ray-run-{os.getpid()}-{time.time()}"
    proc = dist_case.forgerl(tmp_path, "run.toml", "--run-dir", "run", "--nproc-per-node", "2", tag=tag, wait=False)
    deadline = time.time() + 180
    while not (tmp_path / "run" / "checkpoints" / "step_000001").is_dir():
        assert proc.poll() is None, proc.communicate()
        assert time.time() < deadline, "the Ray run did not reach step 1"
        time.sleep(0.2)
    return proc, tag


@pytest.fixture
def ray_cluster(tmp_path_factory, monkeypatch):
    """An existing Ray cluster (`ray start --head --block`, 4 logical CPUs: 2 ranks + 2 one-thread
    replicas), as users have one; its address in RAY_ADDRESS. Stopped by ending the process we started."""
    import re
    import shutil
    import tempfile

    from forgerl.engine.pool import free_port

    pytest.importorskip("ray", reason="the Ray launcher needs the `ray` extra (pip install 'forgerl[ray]')")
    ray_bin = Path(sys.executable).with_name("ray")
    temp = tempfile.mkdtemp(prefix="rt")  # short: Ray's socket paths must fit 107 bytes
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"} | {"RAY_AUTH_MODE": "disabled"}
    head = subprocess.Popen([str(ray_bin), "start", "--head", "--num-cpus", "4", "--port", str(free_port()),
                             "--ray-client-server-port", str(free_port()), "--dashboard-port", str(free_port()),
                             "--include-dashboard", "false", "--disable-usage-stats", "--temp-dir", temp, "--block"],
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    address, deadline = None, time.time() + 90
    assert head.stdout is not None
    while address is None and time.time() < deadline and head.poll() is None:
        found = re.search(r"ray start --address='([^']+)'", head.stdout.readline())
        address = found.group(1) if found else None
    try:
        assert address is not None, "ray start did not report its address"
        monkeypatch.setenv("RAY_ADDRESS", address)
        monkeypatch.setenv("RAY_AUTH_MODE", "disabled")
        yield address
    finally:
        head.terminate()  # --block: ray start stops the processes it started
        head.wait(60)
        shutil.rmtree(temp, ignore_errors=True)


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_ray_ranks_and_ray_engine_replicas_on_an_existing_cluster(tmp_path, ray_cluster):
    """2 ranks placed by Ray; rank 0 joins the same cluster (RAY_ADDRESS from the launcher) and places
    the 2 engine replicas there too; the run trains and both replicas took every weight push."""
    engine = '\n[engine]\nkind = "remote"\nreplicas = 2\nthreads_per_replica = 1\n'
    (tmp_path / "run.toml").write_text(RAY_CONFIG + engine)
    (tmp_path / "parity.py").write_text(dist_case.PARITY_FAMILY)
    out = dist_case.forgerl(tmp_path, "run.toml", "--run-dir", "run", "--nproc-per-node", "2")
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-3000:]
    assert f"Connecting to existing Ray cluster at address: {ray_cluster}" in out.stderr
    logs = sorted((tmp_path / "run" / "engines").glob("replica*.log"))
    # the attach push and one per step, on both replicas
    assert len(logs) == 2 and all(p.read_text().count('"POST /admin/weights HTTP/1.1" 200') == 3 for p in logs)
    assert len(dist_case.rollouts(tmp_path / "run")) == 12
