"""Ctrl-C on a real `forgerl train` process (issue 27 item 5): the step in progress is finished
and checkpointed, the run is marked interrupted, the resume command is printed, exit status 130."""

from __future__ import annotations

import signal
import sqlite3
import subprocess
import sys
import time

import pytest

from forgerl.train.config import dump_config, load_config

CONFIG = dict(model="tiny-random", env="arithmetic", difficulty=[1], groups_per_step=2, group_size=2, max_turns=2,
              max_tokens=12, max_context=1024, eval={"every": 10, "tasks": 1}, checkpoint_every=10, steps=6)


def _steps_logged(store_path) -> int:
    try:
        with sqlite3.connect(f"file:{store_path}?mode=ro", uri=True, timeout=1) as conn:
            return int(conn.execute("SELECT COALESCE(MAX(step), 0) FROM metrics").fetchone()[0])
    except sqlite3.Error:
        return 0


@pytest.mark.security
@pytest.mark.slow  # ~30-60 s: a real training process on the tiny model
def test_sigint_finishes_the_step_checkpoints_and_prints_the_resume_command(tmp_path):
    run_dir = tmp_path / "run"
    config_path = tmp_path / "train.toml"
    config_path.write_text(dump_config(load_config(None, **CONFIG, run_dir=str(run_dir))))
    proc = subprocess.Popen([sys.executable, "-m", "forgerl.cli.main", "train", str(config_path)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 240
    while _steps_logged(run_dir / "store.sqlite") < 1 and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.2)
    assert proc.poll() is None, proc.communicate()[1][-2000:]
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=240)
    assert proc.returncode == 130, err[-2000:]
    assert "finishing step" in err
    assert f"forgerl train --resume --run-dir {run_dir}" in " ".join(err.split())
    checkpoints = sorted(p.name for p in (run_dir / "checkpoints").iterdir() if p.name.startswith("step_"))
    assert checkpoints and (run_dir / "checkpoints" / checkpoints[-1] / "config.json").is_file()
    with sqlite3.connect(run_dir / "store.sqlite") as conn:
        assert conn.execute("SELECT status FROM runs").fetchone()[0] == "interrupted"
