"""Nothing acknowledged is lost: real child processes are killed with SIGKILL mid-write, and the
store still holds every trajectory whose `add_trajectory` had returned, intact and writable.
Plus concurrent threads and asyncio writers against one store."""

from __future__ import annotations

import asyncio
import os
import queue
import random
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path

from forgerl.store import AsyncTrajectoryStore, TrajectoryStore

TESTS_DIR = Path(__file__).parent

# The writer: stores trajectories in a loop (every fourth write a batch of three in one
# transaction) and prints each id only after the call that stored it returned, then flushes.
WRITER = """
import sys
sys.path.insert(0, sys.argv[1])
from conftest import writer_trajectory
from forgerl.store import TrajectoryStore

run_dir, run_id, start = sys.argv[2], sys.argv[3], int(sys.argv[4])
store = TrajectoryStore(run_dir)
i = start
while True:
    if i % 4 == 3:
        batch = [writer_trajectory(i + k) for k in range(3)]
        store.add_trajectories(batch, run_id)
        print("\\n".join(t.id for t in batch), flush=True)
        i += 3
    else:
        traj = writer_trajectory(i)
        store.add_trajectory(traj, run_id)
        print(traj.id, flush=True)
        i += 1
"""


class Writer:
    """A writer child process and the ids it acknowledged (read from its stdout by a thread)."""

    def __init__(self, run_dir: Path, run_id: str, start: int) -> None:
        self.proc = subprocess.Popen([sys.executable, "-c", WRITER, str(TESTS_DIR), str(run_dir), run_id, str(start)],
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        self.acks: queue.Queue[str] = queue.Queue()
        self.acked: list[str] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        for line in self.proc.stdout:
            self.acks.put(line.strip())

    def wait_for_acks(self, n: int, timeout_s: float = 60.0) -> None:
        deadline = time.monotonic() + timeout_s
        while len(self.acked) < n:
            try:
                self.acked.append(self.acks.get(timeout=max(0.0, deadline - time.monotonic())))
            except queue.Empty:
                self.proc.kill()
                raise AssertionError(
                    f"writer acknowledged {len(self.acked)}/{n}; stderr:\n{self.proc.stderr.read()}") from None

    def kill(self) -> list[str]:
        """SIGKILL now; then collect the acks it printed before dying (they count as acknowledged)."""
        os.kill(self.proc.pid, signal.SIGKILL)
        self.proc.wait(timeout=30)
        self._reader.join(timeout=30)
        while not self.acks.empty():
            self.acked.append(self.acks.get())
        self.proc.stderr.close()
        assert self.proc.returncode == -signal.SIGKILL
        return self.acked


def test_kill_9_mid_run_loses_nothing_acknowledged(tmp_path, writer_traj):
    run_dir = tmp_path / "run"
    with TrajectoryStore(run_dir) as store:
        run_id = store.add_run({"test": "kill-9"})
    rng = random.Random(0)
    acked: list[str] = []
    # Round 1: two writers share the file; the first is killed while the second keeps writing,
    # so the survivor must get past whatever lock or half-written WAL frame the dead one left.
    first, second = Writer(run_dir, run_id, 0), Writer(run_dir, run_id, 1_000_000)
    first.wait_for_acks(25)
    time.sleep(rng.uniform(0, 0.02))
    acked += first.kill()
    second.wait_for_acks(len(second.acked) + 25)
    time.sleep(rng.uniform(0, 0.02))
    acked += second.kill()
    # Round 2: a lone writer continues the run and is killed too.
    third = Writer(run_dir, run_id, 2_000_000)
    third.wait_for_acks(20)
    acked += third.kill()

    assert len(acked) >= 70 and len(set(acked)) == len(acked)
    with TrajectoryStore(run_dir) as store:
        conn = store._conn()
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        assert conn.execute("PRAGMA foreign_key_check").fetchall() == []
        stored = {r["id"] for r in store.query_rows(run_id=run_id)}
        missing = [i for i in acked if i not in stored]
        assert not missing, f"acknowledged but lost: {missing}"
        for traj_id in acked[::5] + acked[-3:]:  # payloads are intact, not just present
            assert store.get_trajectory(traj_id) == writer_traj(int(traj_id.split("_")[1]))
        # batches are atomic: a batch is either wholly stored or wholly absent
        starts = {int(i.split("_")[1]) for i in stored}
        for n in starts:
            if n % 4 == 3:
                assert {f"traj_{n + k:06d}" for k in range(3)} <= stored
        store.add_trajectory(writer_traj(3_000_000), run_id)  # the store accepts new writes
        assert "traj_3000000" in store


def test_two_writer_threads_and_a_reader(store, run_id, make_traj):
    errors: list[BaseException] = []
    seen_counts: list[int] = []
    done = threading.Event()

    def write(offset: int) -> None:
        try:
            for i in range(offset, offset + 40, 4):
                store.add_trajectory(make_traj(i), run_id)
                store.add_trajectories([make_traj(i + 1), make_traj(i + 2), make_traj(i + 3)], run_id)
        except BaseException as exc:  # surfaced in the main thread
            errors.append(exc)

    def read() -> None:
        try:
            while not done.is_set():
                numbers = [int(r["id"].split("_")[1]) for r in store.query_rows()]  # one snapshot
                seen_counts.append((sum(n < 1000 for n in numbers), sum(n >= 1000 for n in numbers)))
                if numbers:
                    assert store.get_trajectory(make_traj(max(numbers)).id) == make_traj(max(numbers))
        except BaseException as exc:
            errors.append(exc)

    writers = [threading.Thread(target=write, args=(o,)) for o in (0, 1000)]
    reader = threading.Thread(target=read)
    reader.start()
    for t in writers:
        t.start()
    for t in writers:
        t.join(timeout=60)
    done.set()
    reader.join(timeout=60)
    assert not errors, errors
    assert store.count() == 80
    assert len(seen_counts) > 1
    for per_thread in zip(*seen_counts, strict=True):
        assert list(per_thread) == sorted(per_thread)  # a reader never sees a write undone
        assert all(c % 4 in (0, 1) for c in per_thread)  # a batch of 3 is seen whole or not at all
    assert {t.id for t in store.query()} == {make_traj(i).id for o in (0, 1000) for i in range(o, o + 40)}


def test_async_wrapper_from_an_event_loop(store, run_id, make_traj):
    async def main() -> list[str]:
        astore = AsyncTrajectoryStore(store)
        await asyncio.gather(*(astore.add_trajectory(make_traj(i), run_id) for i in range(12)))
        await astore.add_trajectories([make_traj(100), make_traj(101)], run_id)
        await astore.mark_consumed(["traj_000100"], 3)
        await astore.log_metrics(run_id, 3, {"loss": 0.5})
        assert await astore.get_trajectory("traj_000007") == make_traj(7)
        assert [t.id for t in await astore.query(step=3)] == ["traj_000100"]
        return [r["id"] for r in await astore.query_rows(order="stored")]

    stored = asyncio.run(main())
    assert sorted(stored) == sorted([f"traj_{i:06d}" for i in range(12)] + ["traj_000100", "traj_000101"])
    assert store.metrics(run_id) == [(3, "loss", 0.5)]


def test_raw_sqlite_reader_sees_only_committed_data(store, run_id, make_traj):
    """Another process's view (a plain sqlite3 connection) matches what the store acknowledged."""
    store.add_trajectories([make_traj(i) for i in range(5)], run_id)
    other = sqlite3.connect(store.path)
    assert other.execute("SELECT COUNT(*) FROM trajectories").fetchone()[0] == 5
    other.close()
