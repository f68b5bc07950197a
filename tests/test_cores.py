"""The core plan (forgerl/cores.py): the partition itself on made-up hosts, the per-thread behaviour
of torch.set_num_threads it relies on, and that the trainer and the engine each run with their own
share in a real (one-step, tiny) training run."""

from __future__ import annotations

import subprocess
import sys
import threading

import pytest
import torch

from forgerl.cores import CoresConfig, Share, applied, make_plan
from forgerl.errors import ConfigError
from forgerl.train.config import load_config


def plan(cpus: int, *, overlapped: bool, ranks: int = 1, rank: int = 0, engine_processes: int = 0,
         in_process: bool = True, **config):
    return make_plan(CoresConfig(**config), overlapped=overlapped, engine_in_process=in_process,
                     engine_processes=engine_processes, local_rank=rank, local_world_size=ranks, cpus=range(cpus))


def test_auto_splits_when_rollouts_overlap_training_and_shares_when_they_take_turns():
    split = plan(2, overlapped=True)
    assert split.kind == "split"
    assert (split.trainer.threads, split.engine.threads) == (1, 1)
    assert set(split.trainer.cpus).isdisjoint(split.engine.cpus) and set(split.trainer.cpus) | set(split.engine.cpus) == {0, 1}
    shared = plan(2, overlapped=False)  # one trainer: PyTorch's default (every core) for each phase, nothing set
    assert shared.kind == "shared" and shared.trainer is None and shared.engine is None
    pinned = plan(2, overlapped=False, pin=True)
    assert pinned.trainer.threads == pinned.engine.threads == 2 and pinned.engine.cpus == (0, 1)
    assert plan(2, overlapped=True, in_process=False).kind == "shared"  # no engine on this host: nothing to split
    assert plan(2, overlapped=True, plan="off").trainer is None  # off: nothing is set


def test_split_gives_ranks_disjoint_slices_and_the_engine_only_to_rank_zero():
    shares = [plan(16, overlapped=True, ranks=4, rank=r) for r in range(4)]
    engine = shares[0].engine
    assert engine.threads == 8 and engine.cpus == tuple(range(8, 16))
    assert all(s.engine is None for s in shares[1:])  # rank 0 alone runs the engine
    trainer = [s.trainer.cpus for s in shares]
    assert [len(c) for c in trainer] == [2, 2, 2, 2]
    assert sorted(c for cpus in trainer for c in cpus) == list(range(8))  # every trainer core once
    three = plan(16, overlapped=True, ranks=3, engine_cores=4)
    assert three.engine.cpus == tuple(range(12, 16)) and three.trainer.cpus == (0, 1, 2, 3)  # 12 cores: 4 each


def test_engine_processes_divide_the_engine_side():
    p = plan(8, overlapped=True, in_process=False, engine_processes=2)
    assert p.engine is None and [s.cpus for s in p.engine_processes] == [(4, 5), (6, 7)]
    assert p.trainer.cpus == (0, 1, 2, 3)
    env = p.engine_processes[0].subprocess_env()
    assert env["OMP_NUM_THREADS"] == "2" and env["OMP_WAIT_POLICY"] == "PASSIVE"


def test_shared_divides_the_cores_between_ranks_only():
    p = plan(8, overlapped=False, ranks=2, rank=1)
    assert p.kind == "shared" and p.trainer.cpus == (4, 5, 6, 7) and p.engine is None
    assert plan(8, overlapped=False, ranks=2).engine.threads == 8


def test_too_few_cores():
    auto = plan(2, overlapped=True, ranks=2)  # 2 ranks + an engine on 2 cores: auto shares, and says why
    assert auto.kind == "shared" and "too few cores" in auto.note and auto.trainer.threads == 1
    assert "too few cores" in auto.describe()
    with pytest.raises(ConfigError, match="cannot give the engine 1 core") as err:
        plan(2, overlapped=True, ranks=2, plan="split")
    assert "plan = 'shared'" in (err.value.hint or "")
    with pytest.raises(ConfigError, match="LOCAL_RANK 2 is outside LOCAL_WORLD_SIZE 2"):
        plan(4, overlapped=True, ranks=2, rank=2)


def test_no_op_keys_are_refused_when_the_config_loads():
    with pytest.raises(ConfigError, match="engine_cores only applies to a split plan"):
        load_config(None, cores={"plan": "shared", "engine_cores": 1})
    with pytest.raises(ConfigError, match="cores.pin needs a plan"):
        load_config(None, cores={"plan": "off", "pin": True})
    assert load_config(None, rollout={"mode": "windowed"}).core_plan().kind in ("split", "shared")


def test_torchrun_environment_sets_the_ranks(monkeypatch):
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "2")
    monkeypatch.setenv("LOCAL_RANK", "1")
    p = CoresConfig(plan="shared").plan_for(overlapped=False, engine_in_process=True, cpus=range(4))
    assert p.trainer.cpus == (2, 3) and p.engine is None
    monkeypatch.setenv("LOCAL_RANK", "x")
    with pytest.raises(ConfigError, match=r"\$LOCAL_RANK is 'x'"):
        CoresConfig().plan_for(overlapped=False, engine_in_process=True)


def test_set_num_threads_is_per_thread_so_each_role_sets_its_own():
    """The premise of the plan: while the trainer's worker thread runs with its share, the engine's
    thread (here: the main thread) keeps its own count; `in_trainer` restores the worker's after."""
    main_before = torch.get_num_threads()
    p = plan(4, overlapped=True, engine_cores=1)
    inside, release = threading.Event(), threading.Event()
    seen: dict[str, int] = {}

    def step() -> None:
        seen["inside"] = torch.get_num_threads()
        inside.set()
        release.wait(30)

    def worker() -> None:
        seen["worker_before"] = torch.get_num_threads()
        p.in_trainer(step)()
        seen["worker_after"] = torch.get_num_threads()

    with applied(Share(1, (0,))):
        t = threading.Thread(target=worker)
        t.start()
        assert inside.wait(30)
        seen["main_while_trainer_runs"] = torch.get_num_threads()
        release.set()
        t.join()
    assert seen["inside"] == 3  # the trainer's share: 4 cores less the engine's one
    assert seen["main_while_trainer_runs"] == 1  # the engine's thread kept its own count
    assert seen["worker_after"] == seen["worker_before"]
    assert torch.get_num_threads() == main_before  # `applied` restored the main thread


def test_a_subprocess_launched_with_a_share_gets_its_thread_count():
    share = Share(1, (0,))
    out = subprocess.run([sys.executable, "-c", "import torch; print(torch.get_num_threads())"],
                         env={**__import__("os").environ, **share.subprocess_env()}, capture_output=True, text=True,
                         timeout=60, check=True)
    assert out.stdout.strip() == "1"


def test_the_engine_takes_every_core_between_trainer_steps_and_its_share_during_them():
    p = plan(4, overlapped=True, engine_cores=1)
    assert p.engine.alone == 4 and "4 between trainer steps" in p.describe()
    assert plan(4, overlapped=True, pin=True).engine.alone == 0  # pinned: never beyond its own cores
    seen: dict[str, int] = {}

    def step() -> None:
        p.engine.follow()  # an engine step while the trainer's step runs (any thread may ask)
        seen["during"] = torch.get_num_threads()

    before = torch.get_num_threads()
    try:
        p.engine.follow()
        seen["between"] = torch.get_num_threads()
        t = threading.Thread(target=p.in_trainer(step))
        t.start()
        t.join()
    finally:
        torch.set_num_threads(before)
    assert seen == {"between": 4, "during": 1}


def test_a_windowed_run_gives_the_trainer_and_the_engine_their_own_threads(tmp_path, monkeypatch):
    """One real step of the tiny model, windowed, on a made-up 4-core host with one engine core:
    the optimizer runs with 3 threads in its worker thread; the engine's steps (on the event-loop
    thread) run with 1 while the optimizer runs and with all 4 otherwise."""
    import time

    import forgerl.cores as cores
    import forgerl.train.loop as loop
    import forgerl.training as training

    monkeypatch.setattr(cores, "HOST_CPUS", (0, 1, 2, 3))
    engine_steps: list[tuple[bool, int]] = []  # (trainer step running, the engine thread's team size)
    real_follow = cores.Share.follow

    def follow(self):  # called by the engine before each step
        running = cores.trainer_running()
        real_follow(self)
        if running == cores.trainer_running():  # no step began or ended meanwhile
            engine_steps.append((running, torch.get_num_threads()))

    monkeypatch.setattr(cores.Share, "follow", follow)
    seen: dict[str, int] = {}

    def optimize(run, samples):
        seen["trainer"] = torch.get_num_threads()
        deadline = time.monotonic() + 60
        while not any(running for running, _ in engine_steps) and time.monotonic() < deadline:
            time.sleep(0.01)  # until the windowed rollouts have stepped the engine during this step
        return {}

    monkeypatch.setattr(loop, "optimize", optimize)
    config = load_config(None, model="tiny-random", env="arithmetic", difficulty=[1], groups_per_step=2, group_size=2,
                         max_turns=1, max_tokens=8, max_context=512, eval={"every": 1, "tasks": 1}, steps=1,
                         rollout={"mode": "windowed"}, cores={"engine_cores": 1}, run_dir=str(tmp_path / "run"))
    before = torch.get_num_threads()
    try:
        training.run_training(config)
    finally:
        torch.set_num_threads(before)  # the engine set the main thread's count; leave the test process as it was
    assert seen == {"trainer": 3}
    assert {threads for running, threads in engine_steps if running} == {1}
    assert {threads for running, threads in engine_steps if not running} == {4}
