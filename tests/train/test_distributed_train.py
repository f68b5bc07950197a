"""`forgerl train --nproc-per-node 2` end to end on CPU (gloo, 1 thread per rank): the same
rollouts and, within 1e-5, the same final weights as the one-process run; a rank killed with
SIGKILL mid-run ends the run within the timeout, non-zero, with the rank named and the resume
command; the sharded run resumes from its sharded checkpoint (on 2 ranks, and on 1: DCP reshards),
and a one-process checkpoint refuses to resume sharded with a clear error."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from forgerl.store import TrajectoryStore

# A family whose reward is a deterministic coin per rollout (the parity of the sampled ids), so the
# tiny random policy's groups carry a learning signal and every step trains
PARITY_FAMILY = '''
from forgerl.envs import Environment, Family, Task, Verdict, register_env
from forgerl.envs.base import submit_nothing
from forgerl.types import Message, ToolSpec

SUBMIT = ToolSpec(name="submit_answer", description="Submit.", parameters={
    "type": "object", "properties": {"answer": {"type": "string"}}, "required": ["answer"]})


def sample_task(seed):
    return Task(id=f"parity-{seed}", family="test-parity", prompt=f"Say something ({seed}).", answer="")


class ParityEnv(Environment):
    family = "test-parity"

    def __init__(self, seed=0):
        self.task = None

    @property
    def done(self):
        return False

    def tools(self):
        return [SUBMIT]

    def reset(self, task):
        self.task = task
        return [Message(role="user", content=task.prompt)]

    async def execute(self, call):
        return "ok"

    def verify(self, trajectory):
        return Verdict(outcome=float(sum(sum(c.completion_ids) for c in trajectory.calls) % 2))

    def gold_solution(self, task):
        return []


register_env(Family(name="test-parity", make_env=ParityEnv, sample_task=sample_task, description="a coin",
                    noop=submit_nothing("submit_answer", answer="")))
'''

CONFIG = """
model = "tiny-random"
env = "test-parity"
plugins = ["parity.py"]
steps = 2
groups_per_step = 2
group_size = 3
max_turns = 2
max_tokens = 12
max_context = 1024
checkpoint_every = 1

[optim]
adam_eps = 1e-6  # see test_distributed_step.py: with 1e-15 Adam's first step is lr * sign(g)

[eval]
every = 10
tasks = 2

[distributed]
timeout_s = 30

[logging]
backends = []
"""
TOLERANCE = 1e-5


def forgerl(tmp_path: Path, *args: str, tag: str = "", wait: bool = True) -> subprocess.Popen | subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "FORGERL_TEST_TAG": tag}
    cmd = [sys.executable, "-m", "forgerl.cli.main", "train", *args]
    if not wait:
        return subprocess.Popen(cmd, cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    return subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=240)


def rollouts(run_dir: Path) -> list[tuple[int, list[list[int]], float | None]]:
    """Every stored trajectory's (step, completion ids of each call, reward), in a fixed order."""
    with TrajectoryStore(run_dir) as store:
        trajectories = [(row["step"], store.get_trajectory(row["id"])) for row in store.query_rows()]
    return sorted((step, [c.completion_ids for c in t.calls], t.reward) for step, t in trajectories)


def weights(run_dir: Path, step: int) -> dict[str, torch.Tensor]:
    return load_file(str(run_dir / "checkpoints" / f"step_{step:06d}" / "model.safetensors"))


def assert_close(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> None:
    assert a.keys() == b.keys()
    for name in a:
        assert torch.allclose(a[name], b[name], atol=TOLERANCE, rtol=0), (name, float((a[name] - b[name]).abs().max()))


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """The one-process run and the 2-rank run of the same config (made once, shared below)."""
    tmp = tmp_path_factory.mktemp("dist")
    (tmp / "run.toml").write_text(CONFIG)
    (tmp / "parity.py").write_text(PARITY_FAMILY)
    single = forgerl(tmp, "run.toml", "--run-dir", "single")
    assert single.returncode == 0, single.stdout[-2000:] + single.stderr[-3000:]
    sharded = forgerl(tmp, "run.toml", "--run-dir", "sharded", "--nproc-per-node", "2")
    assert sharded.returncode == 0, sharded.stdout[-2000:] + sharded.stderr[-3000:]
    return tmp


def test_a_two_rank_run_equals_the_one_process_run(runs):
    single, sharded = runs / "single", runs / "sharded"
    assert rollouts(sharded) == rollouts(single)  # same trajectories, token for token
    assert len(rollouts(single)) == 12
    with TrajectoryStore(single) as store:
        assert all(v > 0 for _, _, v in store.metrics(store.runs()[0].id, "train/samples"))  # every step trained
    assert_close(weights(sharded, 2), weights(single, 2))
    assert not torch.equal(weights(single, 2)["lm_head.weight"], weights(single, 1)["lm_head.weight"])
    assert (sharded / "checkpoints" / "step_000002" / "dcp" / ".metadata").is_file()
    assert not (single / "checkpoints" / "step_000002" / "dcp").exists()  # one process: today's format


def test_a_sharded_run_resumes_on_two_ranks_and_on_one(runs):
    """Extend both to 3 steps from the sharded checkpoint: on 2 ranks, and in one process (resharded)."""
    import shutil

    shutil.copytree(runs / "sharded", runs / "sharded_one")
    two = forgerl(runs, "--resume", "--run-dir", "sharded", "--steps", "3", "--nproc-per-node", "2")
    assert two.returncode == 0, two.stdout[-2000:] + two.stderr[-3000:]
    one = forgerl(runs, "--resume", "--run-dir", "sharded_one", "--steps", "3")
    assert one.returncode == 0, one.stdout[-2000:] + one.stderr[-3000:]
    assert rollouts(runs / "sharded") == rollouts(runs / "sharded_one")
    assert_close(weights(runs / "sharded", 3), weights(runs / "sharded_one", 3))


def test_a_one_process_checkpoint_does_not_resume_sharded(runs):
    import shutil

    shutil.copytree(runs / "single", runs / "single_copy")
    out = forgerl(runs, "--resume", "--run-dir", "single_copy", "--steps", "3", "--nproc-per-node", "2")
    assert out.returncode != 0
    assert "written by a one-process run" in out.stderr and "without --nproc-per-node" in out.stderr, out.stderr[-3000:]


def rank_pid(tag: str, rank: int) -> int | None:
    """The pid of the forgerl rank started with FORGERL_TEST_TAG=tag and RANK=rank."""
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            env = (entry / "environ").read_bytes().split(b"\0")
        except OSError:
            continue
        if f"FORGERL_TEST_TAG={tag}".encode() in env and f"RANK={rank}".encode() in env:
            return int(entry.name)
    return None


def test_a_killed_rank_ends_the_run_with_the_rank_named(tmp_path):
    (tmp_path / "run.toml").write_text(CONFIG.replace("steps = 2", "steps = 50"))
    (tmp_path / "parity.py").write_text(PARITY_FAMILY)
    tag = f"kill-{os.getpid()}-{time.time()}"
    proc = forgerl(tmp_path, "run.toml", "--run-dir", "run", "--nproc-per-node", "2", tag=tag, wait=False)
    deadline = time.time() + 180
    while not (tmp_path / "run" / "checkpoints" / "step_000001").is_dir():
        assert proc.poll() is None, proc.communicate()
        assert time.time() < deadline, "the sharded run did not reach step 1"
        time.sleep(0.2)
    pid = rank_pid(tag, 1)
    assert pid is not None
    os.kill(pid, signal.SIGKILL)
    killed = time.time()
    _, err = proc.communicate(timeout=120)
    assert time.time() - killed < 60  # the timeout is 30 s; the launcher stops rank 0 sooner
    assert proc.returncode != 0
    assert f"rank 1 (pid {pid}" in err and "SIGKILL" in err, err[-3000:]
    assert "the run is checkpointed at step" in err and "forgerl train --resume --run-dir run --nproc-per-node 2" in err


@pytest.mark.slow  # 14-21 s (two ranks started, one step): not on the list, run with -m slow
def test_ctrl_c_finishes_the_step_checkpoints_and_says_how_to_resume(tmp_path):
    """Ctrl-C reaches every process of the terminal's group; torchrun passes it to the ranks. Rank
    0 finishes the step and checkpoints (the followers ignore SIGINT: rank 0 still needs them)."""
    (tmp_path / "run.toml").write_text(CONFIG.replace("steps = 2", "steps = 50"))
    (tmp_path / "parity.py").write_text(PARITY_FAMILY)
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "forgerl.cli.main", "train", "run.toml", "--run-dir", "run",
                             "--nproc-per-node", "2"], cwd=tmp_path, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, start_new_session=True)
    deadline = time.time() + 180
    while not (tmp_path / "run" / "checkpoints" / "step_000001").is_dir():
        assert proc.poll() is None, proc.communicate()
        assert time.time() < deadline, "the sharded run did not reach step 1"
        time.sleep(0.2)
    os.killpg(proc.pid, signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err[-3000:]
    assert "resume with: forgerl train --resume --run-dir run --nproc-per-node 2" in err
    with TrajectoryStore(tmp_path / "run") as store:
        run = store.runs()[0]
        assert run.status == "interrupted"
        latest = store.latest_checkpoint(run.id)
    assert latest is not None and latest.step >= 1
