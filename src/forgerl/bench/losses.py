"""`forgerl bench losses`: CISPO vs GRPO vs DAPO (and any other registered loss) trained side by side
on the default task with the same budget, seeds, tasks and initial policy; prints the steps each
needs to reach a target held-out reward (MiniMax-M1 reports CISPO matching DAPO in half the steps)."""

from __future__ import annotations

import tempfile
from pathlib import Path

from forgerl.train.config import TrainConfig


def steps_to_target(evals: list[tuple[int, float]], target: float) -> int | None:
    """First evaluated step whose held-out reward reaches `target` (None: never within the budget)."""
    for step, reward in evals:
        if reward >= target:
            return step
    return None


def run_loss_bench(losses: tuple[str, ...] = ("cispo", "grpo", "dapo"), seeds: tuple[int, ...] = (0,), steps: int = 20,
                   target_gain: float = 0.15, eval_every: int = 2, base: TrainConfig | None = None) -> dict[str, list[int | None]]:
    from rich.console import Console
    from rich.table import Table

    from forgerl.training import run_training  # heavy: torch, kept out of this module's import

    console = Console()
    base = base or TrainConfig()
    results: dict[str, list[int | None]] = {}
    finals: dict[str, list[float]] = {}
    curves: dict[str, list[str]] = {}
    starts: list[float] = []
    with tempfile.TemporaryDirectory(prefix="forgerl-bench-losses-") as tmp:
        for seed in seeds:
            for name in losses:
                cfg = base.model_copy(update={"steps": steps, "seed": seed, "checkpoint_every": steps,
                                              "run_dir": str(Path(tmp) / f"{name}-{seed}")})
                cfg.eval = cfg.eval.model_copy(update={"every": eval_every})
                cfg.loss = cfg.loss.model_copy(update={"name": name})
                console.print(f"[bold]{name}[/] seed {seed}: training {steps} steps ...")
                result = run_training(cfg)
                start = result.eval_rewards[0][1]
                starts.append(start)
                target = start + target_gain
                results.setdefault(name, []).append(steps_to_target(result.eval_rewards[1:], target))
                finals.setdefault(name, []).append(result.eval_rewards[-1][1])
                curves.setdefault(name, []).append(" ".join(f"{r:.2f}" for _, r in result.eval_rewards))
    table = Table(title=f"steps to reach held-out reward start+{target_gain} (budget {steps} steps, seeds {list(seeds)})")
    for col in ("loss", "steps to target (per seed)", "final held-out reward (per seed)",
                f"held-out every {eval_every} steps (per seed)"):
        table.add_column(col)
    for name in losses:
        table.add_row(name, ", ".join("—" if s is None else str(s) for s in results[name]),
                      ", ".join(f"{r:.3f}" for r in finals[name]), "; ".join(curves[name]))
    console.print(table)
    console.print(f"starting held-out reward: {', '.join(f'{s:.3f}' for s in starts)} ('—' = target not reached)")
    return results
