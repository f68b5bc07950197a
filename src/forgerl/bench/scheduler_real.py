"""`forgerl bench scheduler --real`: the actual main job, synchronous and then windowed, side by side.

Why besides the simulated benchmark (bench/scheduler.py): the simulation has an engine with
unlimited batch and a trainer step that is a sleep, so rollouts and training overlap for free; on a
real host they share the CPU cores, the interpreter and the memory bandwidth. The simulation said
4.7x; the real main job on 2 cores took 370 s windowed vs 297 s synchronous (issue 19). This runs
the real thing: `forgerl train` on the embedded default config, once per rollout mode, each in a
fresh process and a fresh temporary run directory, same steps and seed, one after the other, and
prints each arm's wall time, the windowed/sync ratio, and held-out reward at step 0 and at the end
(read back from each run's store).
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from forgerl.errors import ConfigError
from forgerl.store import TrajectoryStore
from forgerl.train.config import load_config

MODES = ("sync", "fifo", "windowed", "greedy")


@dataclass
class ArmResult:
    """One `forgerl train` run: wall time of the whole process and what its store recorded."""

    mode: str
    wall_s: float
    eval_rewards: list[tuple[int, float]] = field(default_factory=list)  # (step, held-out mean reward)
    train_s: float = 0.0  # sum of the optimizer steps (time/train_s)
    rollout_reward: float = 0.0  # mean training-rollout reward over the steps
    status: str = ""
    plan: str = ""

    @property
    def eval_first(self) -> float:
        return self.eval_rewards[0][1] if self.eval_rewards else float("nan")

    @property
    def eval_last(self) -> float:
        return self.eval_rewards[-1][1] if self.eval_rewards else float("nan")


def train_command(mode: str, *, steps: int, seed: int, run_dir: Path, set_values: Sequence[str] = ()) -> list[str]:
    """The `forgerl train` command line of one arm (run with this interpreter)."""
    cmd = [sys.executable, "-m", "forgerl.cli.main", "train", "--steps", str(steps), "--seed", str(seed),
           "--run-dir", str(run_dir), "--set", f"rollout.mode={mode}"]
    for item in set_values:
        cmd += ["--set", item]
    return cmd


def run_arm(mode: str, *, steps: int, seed: int, work: Path, set_values: Sequence[str] = (),
            timeout_s: float | None = None) -> ArmResult:
    """Train one arm in its own process; its output goes to `work/<mode>.log`."""
    run_dir, log = work / mode, work / f"{mode}.log"
    cmd = train_command(mode, steps=steps, seed=seed, run_dir=run_dir, set_values=set_values)
    start = time.perf_counter()
    with log.open("w") as out:
        try:
            proc = subprocess.run(cmd, stdout=out, stderr=subprocess.STDOUT, timeout=timeout_s, check=False)
        except subprocess.TimeoutExpired:
            raise RuntimeError(f"the {mode} arm ran past {timeout_s:.0f} s (log: {log})") from None
    wall = time.perf_counter() - start
    if proc.returncode != 0:
        tail = "\n".join(log.read_text(errors="replace").splitlines()[-15:])
        raise RuntimeError(f"the {mode} arm failed (exit {proc.returncode}): {' '.join(cmd)}\n{tail}")
    with TrajectoryStore(run_dir) as store:
        run = store.runs()[-1]
        metrics = store.metrics(run.id)
    by_name: dict[str, list[tuple[int, float]]] = {}
    for step, name, value in metrics:
        by_name.setdefault(name, []).append((step, value))
    rewards = [v for _, v in by_name.get("rollout/reward", [])]
    return ArmResult(mode=mode, wall_s=wall, eval_rewards=by_name.get("eval/reward", []),
                     train_s=sum(v for _, v in by_name.get("time/train_s", [])),
                     rollout_reward=sum(rewards) / len(rewards) if rewards else float("nan"), status=run.status,
                     plan=_plan_line(mode, set_values))


def _plan_line(mode: str, set_values: Sequence[str]) -> str:
    """The core plan the arm's config resolves to (the same function the trainer calls)."""
    return load_config(None, set_values=[f"rollout.mode={mode}", *set_values]).core_plan().describe()


def run_real_scheduler_bench(steps: int = 15, seed: int = 0, modes: Sequence[str] = ("sync", "windowed"),
                             set_values: Sequence[str] = (), keep: Path | None = None,
                             timeout_s: float | None = None) -> dict[str, ArmResult]:
    """Run each mode's arm one after the other; print the table, the ratio and the goals."""
    from rich.console import Console
    from rich.table import Table

    unknown = [m for m in modes if m not in MODES]
    if unknown or not modes:
        raise ConfigError(f"--modes {','.join(modes)!r}: each must be one of {', '.join(MODES)}",
                          hint="e.g. --modes sync,windowed")
    if steps < 1:
        raise ConfigError(f"--steps must be at least 1 (got {steps})")
    console = Console(width=max(120, Console().width))
    results: dict[str, ArmResult] = {}
    with tempfile.TemporaryDirectory(prefix="forgerl-bench-real-") as tmp:
        work = keep if keep is not None else Path(tmp)
        work.mkdir(parents=True, exist_ok=True)
        for mode in modes:
            console.print(f"[bold]{mode}[/]: {' '.join(train_command(mode, steps=steps, seed=seed, run_dir=work / mode, set_values=set_values)[1:])}",
                          markup=True, highlight=False, soft_wrap=True)
            results[mode] = run_arm(mode, steps=steps, seed=seed, work=work, set_values=set_values, timeout_s=timeout_s)
    table = Table(title=f"the main job, real: forgerl train, {steps} steps, seed {seed}, one arm after the other")
    for col in ("mode", "wall s", "vs sync", "optimizer s", "held-out step 0", "held-out final", "rollout reward"):
        table.add_column(col, justify="left" if col == "mode" else "right")
    base = results.get("sync")
    for mode, r in results.items():
        table.add_row(mode, f"{r.wall_s:.1f}", f"{r.wall_s / base.wall_s:.2f}x" if base else "-", f"{r.train_s:.1f}",
                      f"{r.eval_first:.3f}", f"{r.eval_last:.3f}", f"{r.rollout_reward:.3f}")
    console.print(table)
    for mode, r in results.items():
        console.print(f"{mode}: {r.plan}", markup=False, highlight=False, soft_wrap=True)
    if base is not None and "windowed" in results:
        win = results["windowed"]
        ratio = win.wall_s / base.wall_s
        console.print(f"windowed / synchronous wall time: {ratio:.2f}x (goal <= 0.8x: {'OK' if ratio <= 0.8 else 'MISSED'}); "
                      f"held-out final {win.eval_last:.3f} vs {base.eval_last:.3f} (one seed: judge against the "
                      "run-to-run spread in docs/training.md)", highlight=False)
    return results
