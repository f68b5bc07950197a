"""`forgerl bench sandbox`: what isolation costs per tool call, measured side by side in one run.

Rows: `echo` and `python3 -c "print(1)"` through a bare subprocess (no isolation, no limits) and
through the sandbox (the best available backend), each `calls` times at up to `concurrent` calls
in flight; the ratio column is sandbox time / bare time. Last row: `concurrent` sandboxes at
once, each created, running a short rollout of `calls_per_rollout` commands and closed:
rollouts per second, the number that bounds how many agent episodes a node can feed the trainer.
"""

from __future__ import annotations

import asyncio
import os
import time

from forgerl.envs.sandbox import Limits, available_backend, create_sandbox
from forgerl.envs.sandbox.base import sandbox_env

COMMANDS = {"echo": "echo hello", "python3": "python3 -c 'print(1)'"}


async def _bounded(n: int, concurrent: int, one) -> float:
    """Run `one()` n times with at most `concurrent` in flight; returns wall seconds."""
    gate = asyncio.Semaphore(concurrent)

    async def guarded() -> None:
        async with gate:
            await one()

    start = time.perf_counter()
    await asyncio.gather(*(guarded() for _ in range(n)))
    return time.perf_counter() - start


async def _bare(cmd: str) -> None:
    # Same PATH as inside the sandbox, so both sides start the same `python3` (not a pyenv shim).
    env = {**os.environ, "PATH": sandbox_env("/tmp", "bench")["PATH"]}
    proc = await asyncio.create_subprocess_shell(cmd, env=env, stdout=asyncio.subprocess.PIPE,
                                                 stderr=asyncio.subprocess.PIPE)
    await proc.communicate()
    if proc.returncode != 0:
        raise RuntimeError(f"bare command {cmd!r} failed with exit code {proc.returncode}")


async def _bench(calls: int, concurrent: int, calls_per_rollout: int, backend: str) -> dict:
    limits = Limits(wall_s=30)
    rows: dict[str, dict[str, float]] = {}
    async with create_sandbox(limits=limits, backend=backend) as sb:
        for name, cmd in COMMANDS.items():
            async def in_sandbox(cmd: str = cmd) -> None:
                result = await sb.run(cmd)
                if not result.ok():
                    raise RuntimeError(f"sandboxed {cmd!r} failed:\n{result.observation()}")

            bare_s = await _bounded(calls, concurrent, lambda cmd=cmd: _bare(cmd))
            sandbox_s = await _bounded(calls, concurrent, in_sandbox)
            rows[name] = {"bare_calls_per_s": calls / bare_s, "sandbox_calls_per_s": calls / sandbox_s,
                          "overhead_ratio": sandbox_s / bare_s}

    async def rollout() -> None:
        async with create_sandbox({"task.py": "print(sum(range(10)))"}, limits=limits, backend=backend) as sb:
            for i in range(calls_per_rollout):
                result = await sb.run("python3 task.py" if i % 2 == 0 else "ls")
                if not result.ok():
                    raise RuntimeError(f"rollout command failed:\n{result.observation()}")

    rollout_s = await _bounded(concurrent, concurrent, rollout)
    return {"backend": backend, "calls": calls, "concurrent": concurrent, "commands": rows,
            "rollouts": concurrent, "calls_per_rollout": calls_per_rollout,
            "rollouts_per_s": concurrent / rollout_s, "rollout_wall_s": rollout_s}


def run_sandbox_bench(calls: int = 200, concurrent: int = 32, calls_per_rollout: int = 5,
                      backend: str = "auto", print_table: bool = True) -> dict:
    """Measure and (by default) print the table; returns the numbers as a dict."""
    if calls < 1 or concurrent < 1 or calls_per_rollout < 1:
        raise ValueError("calls, concurrent and calls_per_rollout must all be >= 1")
    name = available_backend() if backend == "auto" else backend
    report = asyncio.run(_bench(calls, concurrent, calls_per_rollout, name))
    if print_table:
        _print(report)
    return report


def _print(report: dict) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"sandbox ({report['backend']}) vs bare subprocess: {report['calls']} calls, "
                        f"{report['concurrent']} in flight")
    for col in ("command", "bare calls/s", "sandbox calls/s", "overhead (sandbox/bare time)"):
        table.add_column(col, justify="right")
    for name, row in report["commands"].items():
        table.add_row(name, f"{row['bare_calls_per_s']:.1f}", f"{row['sandbox_calls_per_s']:.1f}",
                      f"{row['overhead_ratio']:.2f}x")
    console = Console()
    console.print(table)
    console.print(f"{report['rollouts']} concurrent sandboxes x {report['calls_per_rollout']} calls: "
                  f"[bold]{report['rollouts_per_s']:.2f} rollouts/s[/bold] ({report['rollout_wall_s']:.2f} s)")
