"""The browser sandbox's memory watch, on real processes (no Chromium needed): above the limit it
kills the largest renderer, and only a renderer; it remembers the peak."""

from __future__ import annotations

import subprocess
import sys
import time

import pytest

from forgerl.envs.appdev.isolation import BrowserLimits, MemoryWatch, pss_mb, tree
from forgerl.errors import VerifierError

HOG = "import time; x = b'x' * (200 * 2**20); print('ready', flush=True); time.sleep(60)"


def _family(tmp_path, renderer: bool):
    """sh (the 'browser' root) -> python holding 200 MB, named like a renderer or not."""
    flag = "--type=renderer" if renderer else "--type=utility"
    parent = subprocess.Popen(["/bin/sh", "-c", f'"{sys.executable}" -c "$0" {flag}', HOG],
                              stdout=subprocess.PIPE, text=True)
    assert parent.stdout.readline().strip() == "ready"
    pid_file = tmp_path / "browser.pid"
    pid_file.write_text(str(parent.pid))
    return parent, pid_file


def test_the_largest_renderer_is_killed_above_the_limit(tmp_path):
    parent, pid_file = _family(tmp_path, renderer=True)
    try:
        child = [p for p in tree(parent.pid) if p != parent.pid][0]
        assert pss_mb(child) > 150
        watch = MemoryWatch(pid_file, limit_mb=128)
        total = watch.sample()
        assert total > 150 and watch.peak_mb == total
        assert len(watch.kills) == 1 and "limit 128 MB" in watch.kills[0]
        parent.wait(10)  # the shell ends once its child is killed
        assert watch.sample() == 0.0  # nothing left to measure
    finally:
        parent.kill()


def test_other_processes_are_left_alone_and_under_the_limit_nothing_happens(tmp_path):
    parent, pid_file = _family(tmp_path, renderer=False)
    try:
        MemoryWatch(pid_file, limit_mb=128).sample()
        generous = MemoryWatch(pid_file, limit_mb=100_000)
        generous.sample()
        time.sleep(0.2)
        assert parent.poll() is None and not generous.kills
    finally:
        parent.kill()


def test_limits_are_checked():
    with pytest.raises(VerifierError, match="memory_mb >= 128"):
        BrowserLimits(memory_mb=10)
