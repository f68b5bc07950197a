"""The context-rot experiment's table (issue 24 item 5; docs/context-rot-experiment.md): four ways of
managing the context on `tool-reasoning-long`, read back from the run directories the four configs wrote.

    forgerl sft ... --out runs/context-rot-sft             # the shared start (command in the doc)
    for seed in 0 1 2; do for arm in none inference-only fixed actions; do
      forgerl train examples/configs/experiments/context-rot-$arm.toml --seed $seed --run-dir runs/context-rot-$arm-s$seed
    done; done
    python scripts/context_rot_experiment.py                # markdown tables on stdout
    python scripts/context_rot_experiment.py --runs runs --json out.json

Reads each run's held-out metrics from its store (`heldout/pass_rate`, `/scored`, `/truncated_rate`,
`/policy_rewrites`; train/rollouts.py `_pass_metrics`) at every evaluation step, and the training
rollouts' pass rate. Prints per arm and step the pass count of each seed, the pooled pass rate with a
95% Wilson interval, the truncated share and the policy's own context rewrites per episode; then each
arm minus arm (a) and minus arm (b) at the end with a Newcombe interval on the pooled difference. A missing run is
listed as missing, not guessed.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from experiment_tables import last_run_metrics, table_cli

from forgerl.stats import newcombe_difference, wilson_interval

ARMS = {"none": "(a) no management", "inference-only": "(b) fixed, at inference only",
        "fixed": "(c) fixed, in training too", "actions": "(d) a trained action"}
HELD_OUT = ("pass_rate", "scored", "truncated_rate", "policy_rewrites")


def read_run(run_dir: Path) -> dict[str, Any] | None:
    """{"evals": {step: {metric: value}}, "rollout_pass": {step: rate}, "train_s", "rollout_s"} of the
    last run recorded in `run_dir`, or None when there is none."""
    rows = last_run_metrics(run_dir)
    if rows is None:
        return None
    evals: dict[int, dict[str, float]] = {}
    rollout_pass: dict[int, float] = {}
    seconds = {"rollout_s": 0.0, "train_s": 0.0}
    for step, name, value in rows:
        if name.startswith("heldout/") and name.removeprefix("heldout/") in HELD_OUT:
            evals.setdefault(step, {})[name.removeprefix("heldout/")] = value
        elif name == "rollout/pass_rate":
            rollout_pass[step] = value
        elif name in ("time/rollout_s", "time/train_s"):
            seconds[name.removeprefix("time/")] += value
    for cell in evals.values():
        cell["n"] = int(round(cell.get("scored", 0.0)))
        cell["passed"] = int(round(cell.get("pass_rate", 0.0) * cell["n"]))
    return {"evals": evals, "rollout_pass": rollout_pass, **seconds}


def tables(root: Path, seeds: list[int]) -> tuple[str, dict[str, Any]]:
    data = {arm: {seed: read_run(root / f"context-rot-{arm}-s{seed}") for seed in seeds} for arm in ARMS}
    steps = sorted({step for runs in data.values() for run in runs.values() if run for step in run["evals"]})
    lines = ["| arm | step | passed per seed | pooled | 95% Wilson | truncated | policy rewrites / episode |",
             "|---|---|---|---|---|---|---|"]
    pooled: dict[tuple[str, int], tuple[int, int]] = {}
    for arm, label in ARMS.items():
        for step in steps:
            cells = {seed: (run or {}).get("evals", {}).get(step) for seed, run in data[arm].items()}
            got = {seed: c for seed, c in cells.items() if c and c["n"]}
            if not got:
                continue
            passed, n = sum(c["passed"] for c in got.values()), sum(c["n"] for c in got.values())
            pooled[(arm, step)] = (passed, n)
            low, high = wilson_interval(passed, n)
            per_seed = ", ".join(f"s{seed} {c['passed']}/{c['n']}" for seed, c in got.items())
            per_seed += "".join(f" (s{seed} not run)" for seed in cells if seed not in got)
            truncated = sum(c.get("truncated_rate", 0.0) * c["n"] for c in got.values()) / n
            rewrites = sum(c.get("policy_rewrites", 0.0) * c["n"] for c in got.values()) / n
            lines.append(f"| {label} | {step} | {per_seed} | {passed}/{n} = {passed / n:.3f} | [{low:.3f}, {high:.3f}] "
                         f"| {truncated:.3f} | {rewrites:.2f} |")
    out = ["## Held-out pass rate per arm and evaluation step (greedy; pooled over seeds)", "", *lines]
    if steps:
        end = steps[-1]
        for base_arm in ("none", "inference-only"):
            out += ["", f"## Each arm minus {ARMS[base_arm][:3]} at step {end} (pooled; Newcombe 95% interval)", "",
                    "| arm | pass rate | difference | 95% interval |", "|---|---|---|---|"]
            base = pooled.get((base_arm, end))
            for arm, label in ARMS.items():
                mine = pooled.get((arm, end))
                if arm == base_arm:
                    continue
                if not (mine and base):
                    out.append(f"| {label} | {'not run' if not mine else f'{mine[0]}/{mine[1]}'} | | |")
                    continue
                d, low, high = newcombe_difference(*mine, *base)
                out.append(f"| {label} | {mine[0]}/{mine[1]} | {d:+.3f} | [{low:+.3f}, {high:+.3f}] |")
    out += ["", "## Runs (training rollouts' pass rate per step; seconds in rollouts and optimizer steps)", "",
            "| run | rollout pass rate by step | rollouts (s) | optimizer (s) |", "|---|---|---|---|"]
    for arm in ARMS:
        for seed, run in data[arm].items():
            if run is None:
                out.append(f"| context-rot-{arm}-s{seed} | not run | | |")
                continue
            curve = " ".join(f"{v:.2f}" for _, v in sorted(run["rollout_pass"].items()))
            out.append(f"| context-rot-{arm}-s{seed} | {curve} | {run['rollout_s']:.0f} | {run['train_s']:.0f} |")
    return "\n".join(out), {arm: {str(s): r for s, r in runs.items()} for arm, runs in data.items()}


def main() -> None:
    table_cli(__doc__ or "", "folder holding runs/context-rot-<arm>-s<seed>", tables)


if __name__ == "__main__":
    main()
