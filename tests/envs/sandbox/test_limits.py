"""Pure unit tests of limits, output capping and the agent-facing explanation (no processes)."""

from __future__ import annotations

import resource

import pytest

from forgerl.envs.sandbox import ExecResult, Limits
from forgerl.envs.sandbox.limits import CappedBuffer, explain_limits
from forgerl.errors import SandboxError


def test_limits_reject_nonsense_with_a_message_naming_the_field():
    with pytest.raises(SandboxError, match="max_procs"):
        Limits(max_procs=1)
    with pytest.raises(SandboxError, match="wall_s"):
        Limits(wall_s=0)


def test_rlimits_and_prlimit_args_agree():
    lim = Limits(cpu_s=2.2, memory_mb=100, max_procs=7, max_file_mb=3)
    rl = lim.rlimits()
    assert rl[resource.RLIMIT_CPU] == (3, 4)
    assert rl[resource.RLIMIT_AS] == (100 * 2**20, 100 * 2**20)
    assert rl[resource.RLIMIT_NPROC] == (7, 7)
    args = lim.prlimit_args()
    assert f"--fsize={3 * 2**20}:{3 * 2**20}" in args and "--nproc=7:7" in args and "--core=0:0" in args


def test_capped_buffer_keeps_head_and_tail_and_counts_the_rest():
    buf = CappedBuffer(100)
    for i in range(1000):
        buf.add(f"{i:04d}\n".encode())
    text = buf.text()
    assert buf.truncated and buf.total == 5000
    assert text.startswith("0000\n") and text.rstrip().endswith("0999")
    assert "bytes omitted" in text and len(text) < 200


def test_capped_buffer_short_output_is_exact():
    buf = CappedBuffer(100)
    buf.add(b"hello ")
    buf.add(b"world")
    assert not buf.truncated and buf.text() == "hello world"


@pytest.mark.parametrize(
    ("code", "stderr", "timed_out", "expected"),
    [
        (None, "", True, "wall-clock timeout 2s"),
        (128 + 24, "", False, "cpu time limit"),
        (128 + 25, "", False, "file size limit"),
        (1, "OSError: [Errno 27] File too large", False, "file size limit"),
        (1, "MemoryError", False, "memory limit 64 MB"),
        (2, "sh: 1: Cannot fork", False, "too many processes (limit 8"),
    ],
)
def test_explain_limits_names_the_limit(code, stderr, timed_out, expected):
    lim = Limits(wall_s=2, memory_mb=64, max_procs=8)
    reason = explain_limits(lim, code, stderr, timed_out=timed_out, output_flood=False)
    assert reason is not None and expected in reason


def test_explain_limits_is_silent_for_ordinary_failures():
    assert explain_limits(Limits(), 1, "NameError: x", timed_out=False, output_flood=False) is None


def test_observation_reports_exit_code_reason_and_streams():
    res = ExecResult(exit_code=None, stdout="partial", stderr="", duration_s=2.0, timed_out=True,
                     killed_reason="wall-clock timeout 2s")
    obs = res.observation()
    assert "exit code: none (killed)" in obs and "stopped: wall-clock timeout 2s" in obs and "partial" in obs
    assert not res.ok()
    ok = ExecResult(exit_code=0, stdout="", stderr="", duration_s=0.1)
    assert ok.ok() and "stdout: (empty)" in ok.observation()
    unisolated = ExecResult(exit_code=0, stdout="x", stderr="", duration_s=0.1, isolated=False)
    assert "NOT isolated" in unisolated.observation()
