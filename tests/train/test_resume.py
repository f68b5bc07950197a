"""`forgerl train --resume` after a real `kill -9`: the run continues from its last checkpoint,
no acknowledged trajectory is lost, and every step's metrics and training data end up in the
store once (the redone step's first try is superseded)."""

from __future__ import annotations

import collections
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

from forgerl.store import TrajectoryStore

CONFIG = """
model = "tiny-random"
env = "arithmetic"
difficulty = [1]
steps = 4
groups_per_step = 2
group_size = 2
max_turns = 2
max_tokens = 12
max_context = 1024
checkpoint_every = 2

[eval]
every = 10
tasks = 2
"""


def start(tmp_path: Path, *extra: str) -> subprocess.Popen:
    cmd = [sys.executable, "-m", "forgerl.cli.main", "train", *extra]
    return subprocess.Popen(cmd, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def logged_steps(run_dir: Path) -> set[int]:
    if not (run_dir / "store.sqlite").exists():
        return set()
    with TrajectoryStore(run_dir) as store:
        runs = store.runs()
        return {s for s, _, _ in store.metrics(runs[0].id)} if runs else set()


def test_kill_9_then_resume(tmp_path):
    (tmp_path / "run.toml").write_text(CONFIG)
    run_dir = tmp_path / "run"
    proc = start(tmp_path, "run.toml", "--run-dir", str(run_dir))
    deadline = time.time() + 240
    while 3 not in logged_steps(run_dir):
        assert proc.poll() is None, proc.stdout.read()
        assert time.time() < deadline, "training did not reach step 3"
        time.sleep(0.2)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    with TrajectoryStore(run_dir) as store:
        run_id = store.runs()[0].id
        acknowledged = {row["id"] for row in store.query_rows(run_id=run_id)}
        checkpoint = store.latest_checkpoint(run_id)
    assert checkpoint is not None and checkpoint.step == 2 and acknowledged

    resumed = start(tmp_path, "--resume", "--run-dir", str(run_dir))
    out, _ = resumed.communicate(timeout=300)
    assert resumed.returncode == 0, out
    with TrajectoryStore(run_dir) as store:
        assert len(store.runs()) == 1
        rows = {row["id"]: row for row in store.query_rows(run_id=run_id)}
        kept = {row["id"] for row in store.query_rows(run_id=run_id, superseded=None)}
        assert acknowledged <= kept  # nothing acknowledged was lost (the redone step's first try is kept, superseded)
        assert store.latest_checkpoint(run_id).step == 4
        steps = {s for s, _, _ in store.metrics(run_id)}
        assert steps == {0, 1, 2, 3, 4}  # 0: the evaluation before training
        # exact: each step once (step 3 was redone: its first try is superseded, not counted twice)
        assert [s for s, _, _ in store.metrics(run_id, "rollout/reward")] == [1, 2, 3, 4]
        per_step = collections.Counter(r["step"] for r in rows.values())
        assert per_step == {s: 4 for s in (1, 2, 3, 4)}, per_step  # groups_per_step x group_size
        assert store.count(run_id=run_id, superseded=True) >= 4
    assert (run_dir / "report.md").is_file()
    assert re.findall(r"^\| (\d+) \|", (run_dir / "report.md").read_text(), flags=re.M) == ["0", "1", "2", "3", "4"]
