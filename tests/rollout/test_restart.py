"""Lossless restarts: finished trajectories survive a crash and are not regenerated; in-flight
rollouts are re-queued; every task is trained on exactly once (in-process and with kill -9)."""

from __future__ import annotations

import asyncio
import collections
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from forgerl.errors import ConfigError
from forgerl.rollout.ledger import TICKET_KEY, StoreLedger
from forgerl.rollout.scheduler import RolloutScheduler, SchedulerConfig
from forgerl.store import TrajectoryStore
from forgerl.types import LLMCall, Trajectory

WORKER = Path(__file__).with_name("kill_worker.py")


def _traj(i: int, version: int = 0) -> Trajectory:
    call = LLMCall(prompt_ids=[1], completion_ids=[2], completion_logprobs=[-0.1], loss_mask=[1],
                   policy_version=version, finish_reason="stop")
    return Trajectory(task_id=f"task-{i}", calls=[call], reward=1.0)


def _consumed_per_task(store: TrajectoryStore) -> collections.Counter:
    return collections.Counter(t.task_id for t in store.query(consumed=True))


def test_restart_offers_finished_rollouts_again_and_regenerates_in_flight_ones(tmp_path):
    store = TrajectoryStore(tmp_path)
    run_id = store.add_run({})
    produced: list[int] = []
    slow = {5, 6}  # hang in the first life only

    async def produce(spec):
        produced.append(spec["i"])
        await asyncio.sleep(10 if spec["i"] in slow else 0.001)
        return _traj(spec["i"])

    config = SchedulerConfig(mode="windowed", batch_size=2, capacity=8, window=4)
    specs = [{"i": i} for i in range(10)]

    async def first_life():
        sched = RolloutScheduler(produce, specs, config, current_version=lambda: 0,
                                 ledger=StoreLedger(store, run_id, tmp_path))
        it = sched.batches()
        acked = await anext(it)
        acked.ack(1)
        b = await anext(it)  # taken but never acknowledged: the "trainer" dies during this step
        await asyncio.sleep(0.05)  # the fast ones finish (and are stored); 5 and 6 hang
        await it.aclose()
        return acked.tickets, b.tickets

    acked, unacked = asyncio.run(first_life())
    assert not {5, 6} & set(acked + unacked)
    finished_before = {t.metadata[TICKET_KEY] for t in store.query(run_id=run_id)}
    assert finished_before == set(range(10)) - {5, 6}  # everything submitted but the two hanging
    produced.clear()
    slow.clear()

    ledger = StoreLedger(store, run_id, tmp_path)
    sched = RolloutScheduler(produce, specs, config, current_version=lambda: 1, ledger=ledger)
    assert sorted(t.index for t in sched.restored) == sorted(set(range(10)) - set(acked))

    async def second_life():
        out = []
        async for b in sched.batches():
            b.ack(len(out) + 2)
            out += b.tickets
        return out

    taken = asyncio.run(second_life())
    assert sorted(taken) == sorted(set(range(10)) - set(acked))
    assert sorted(produced) == [5, 6], "finished rollouts must not be generated again"
    assert _consumed_per_task(store) == {f"task-{i}": 1 for i in range(10)}


def test_ledger_ignores_a_torn_last_line_and_rejects_unserialisable_specs(tmp_path):
    store = TrajectoryStore(tmp_path)
    run_id = store.add_run({})
    ledger = StoreLedger(store, run_id, tmp_path)
    ledger.record_submitted(0, {"i": 0})
    with open(ledger.path, "a") as f:
        f.write('{"op":"submit","i":1,"sp')  # the process died mid-write
    state = ledger.load()
    assert state.open == {0: {"i": 0}} and state.next_index == 1
    with pytest.raises(ConfigError, match="JSON-serialisable"):
        ledger.record_submitted(2, {"i": object()})


def test_kill_minus_nine_loses_nothing_and_trains_each_task_once(tmp_path):
    tasks = 48
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    cmd = [sys.executable, str(WORKER), str(tmp_path), str(tasks)]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True, env=env)
    steps = 0
    deadline = time.monotonic() + 60
    while steps < 4 and time.monotonic() < deadline:  # let it train a few steps, then kill -9
        line = proc.stdout.readline()
        steps += line.startswith("step")
    proc.send_signal(signal.SIGKILL)
    proc.wait(10)
    assert steps >= 4
    with TrajectoryStore(tmp_path) as store:
        stored_before = {t.id for t in store.query()}
        finished_unconsumed = {t.id for t in store.query(consumed=False)}
    out = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    assert "done" in out.stdout
    with TrajectoryStore(tmp_path) as store:
        consumed = store.query(consumed=True)
        per_task = collections.Counter(t.task_id for t in consumed)
        assert per_task == {f"task-{i}": 1 for i in range(tasks)}, "every task trained on exactly once"
        consumed_ids = {t.id for t in consumed}
        # nothing finished before the kill was lost or regenerated: it was trained on as stored
        assert finished_unconsumed <= consumed_ids
        assert stored_before <= {t.id for t in store.query()}


def test_a_crash_between_the_ledger_and_the_store_mark_is_repaired(tmp_path):
    store = TrajectoryStore(tmp_path)
    run_id = store.add_run({})
    ledger = StoreLedger(store, run_id, tmp_path)
    ledger.record_submitted(0, {"i": 0})
    traj = _traj(0)
    ledger.record_finished(0, traj)
    ledger._append({"op": "consumed", "i": [0], "step": 7})  # ...and the process died before mark_consumed
    state = StoreLedger(store, run_id, tmp_path).load()
    assert state.open == {} and state.finished == {}
    assert store.query_rows(consumed=True)[0]["step"] == 7


def test_resume_from_a_checkpoint_reopens_lost_steps_and_regenerates_rollouts_of_lost_weights(tmp_path):
    """The trainer trained steps 1 and 2, checkpointed only step 1 (version 1), then died with two
    finished rollouts waiting: one sampled at version 1, one at version 2 (weights now lost)."""
    store = TrajectoryStore(tmp_path)
    run_id = store.add_run({})
    ledger = StoreLedger(store, run_id, tmp_path)
    for i in range(6):
        ledger.record_submitted(i, {"i": i})
    versions = {0: 0, 1: 0, 2: 1, 3: 1, 4: 1, 5: 2}
    results = {i: _traj(i, version=versions[i]) for i in range(6)}
    for i, traj in results.items():
        ledger.record_finished(i, traj)
    ledger.record_consumed([0, 1], [results[0], results[1]], 1)
    ledger.record_consumed([2, 3], [results[2], results[3]], 2)  # lost: the checkpoint is step 1's

    store.supersede_from(run_id, 2, unconsumed=False)  # what open_run does on resume (async loop)
    resumed = StoreLedger(store, run_id, tmp_path, resumed_at=(1, 1))
    state = resumed.load()
    assert sorted(state.open) == [2, 3, 4, 5]  # step 2's tickets are open again
    assert sorted(state.finished) == [4]  # 2 and 3 were superseded with step 2; 5 came from lost weights
    assert state.finished[4].id == results[4].id  # reused as stored
    assert store.count(run_id=run_id, superseded=True) == 3

    produced = []

    async def produce(spec):
        produced.append(spec["i"])
        return _traj(spec["i"], version=1)

    config = SchedulerConfig(mode="windowed", batch_size=2, capacity=8, window=4)
    sched = RolloutScheduler(produce, [{"i": i} for i in range(6)], config, current_version=lambda: 1,
                             ledger=StoreLedger(store, run_id, tmp_path, resumed_at=(1, 1)))

    async def second_life():
        step = 1
        async for b in sched.batches():
            step += 1
            b.ack(step)

    asyncio.run(second_life())
    assert sorted(produced) == [2, 3, 5]
    assert _consumed_per_task(store) == {f"task-{i}": 1 for i in range(6)}, "each task trained on once"
    assert collections.Counter(r["step"] for r in store.query_rows(consumed=True)) == {1: 2, 2: 2, 3: 2}
    # a later restart replays the resume line: nothing is open, nothing is trained twice
    assert StoreLedger(store, run_id, tmp_path).load().open == {}
