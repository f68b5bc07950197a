"""The negative-transfer experiment's table (issue 24 item 2; docs/curriculum-experiment.md): mixed vs
sequential curriculum, read back from the run directories the two configs wrote.

    for seed in 0 1 2; do for arm in mixed sequential; do
      forgerl train examples/configs/experiments/transfer-$arm.toml --seed $seed --run-dir runs/transfer-$arm-s$seed
    done; done
    python scripts/transfer_experiment.py                    # markdown tables on stdout
    python scripts/transfer_experiment.py --runs runs --json out.json

Reads each run's held-out metrics from its store: `domain/<family>/eval_pass_rate` and
`/eval_scored` (tasks the verifier passed, out of the scored ones) and `eval/<family>` (mean
reward, shaped by speed) at every evaluation step. Prints, per arm, domain and evaluation step, the
pass rate of each seed, their mean and range, the pass count pooled over seeds with a 95% Wilson
interval, and the mean held-out reward; then mixed minus sequential at the end, per domain, with a
Newcombe interval on the pooled difference. A missing run is listed as missing, not guessed.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from experiment_tables import last_run_metrics, table_cli

from forgerl.stats import newcombe_difference, wilson_interval

ARMS = ("mixed", "sequential")


def read_run(run_dir: Path) -> dict[str, Any] | None:
    """{"evals": {step: {family: {"passed", "n", "reward"}}}, "last_step", "rollout_s", "train_s"}
    of the run in `run_dir` (its last record), or None when there is none."""
    rows = last_run_metrics(run_dir)
    if rows is None:
        return None
    evals: dict[int, dict[str, dict[str, float]]] = {}
    last = 0
    seconds = {"rollout": 0.0, "train": 0.0}
    for step, name, value in rows:
        last = max(last, step)
        if name in ("time/rollout_s", "time/train_s"):
            seconds[name.split("/")[1].removesuffix("_s")] += value
        parts = name.split("/")
        if name.startswith("eval/") and name != "eval/reward":
            evals.setdefault(step, {}).setdefault(name.removeprefix("eval/"), {})["reward"] = value
        elif len(parts) == 3 and parts[0] == "domain" and parts[2] in ("eval_pass_rate", "eval_scored"):
            evals.setdefault(step, {}).setdefault(parts[1], {})[parts[2]] = value
    for by_family in evals.values():
        for cell in by_family.values():
            n = int(round(cell.get("eval_scored", 0.0)))
            cell["n"] = n
            cell["passed"] = int(round(cell.get("eval_pass_rate", 0.0) * n))
    return {"evals": evals, "last_step": last, **{f"{k}_s": v for k, v in seconds.items()}}


def tables(root: Path, seeds: list[int]) -> tuple[str, dict[str, Any]]:
    data = {arm: {seed: read_run(root / f"transfer-{arm}-s{seed}") for seed in seeds} for arm in ARMS}
    families: list[str] = []
    steps: list[int] = []
    for arm in ARMS:
        for run in data[arm].values():
            for step, by_family in (run or {}).get("evals", {}).items():
                steps.append(step)
                families.extend(f for f in by_family if f not in families)
    steps = sorted(set(steps))
    lines = ["| arm | domain | step | pass rate per seed | mean (min-max) | pooled passed/n | 95% Wilson | mean reward |",
             "|---|---|---|---|---|---|---|---|"]
    pooled: dict[tuple[str, str, int], tuple[int, int]] = {}
    for arm in ARMS:
        for family in families:
            for step in steps:
                cells = [(seed, (run or {}).get("evals", {}).get(step, {}).get(family)) for seed, run in data[arm].items()]
                got = [(seed, c) for seed, c in cells if c and c.get("n")]
                if not got:
                    continue
                rates = [c["passed"] / c["n"] for _, c in got]
                passed, n = sum(c["passed"] for _, c in got), sum(c["n"] for _, c in got)
                pooled[(arm, family, step)] = (passed, n)
                low, high = wilson_interval(passed, n)
                per_seed = ", ".join(f"s{seed} {c['passed']}/{c['n']}" for seed, c in got)
                missing = [seed for seed, c in cells if not (c and c.get("n"))]
                if missing:
                    per_seed += " (" + ", ".join(f"s{s} not run" for s in missing) + ")"
                reward = sum(c.get("reward", 0.0) for _, c in got) / len(got)
                lines.append(f"| {arm} | {family} | {step} | {per_seed} | {sum(rates) / len(rates):.3f} "
                             f"({min(rates):.3f}-{max(rates):.3f}) | {passed}/{n} | [{low:.3f}, {high:.3f}] | {reward:.3f} |")
    out = ["## Held-out pass rate per arm, domain and evaluation step", "", *lines]
    if steps:
        end = steps[-1]
        out += ["", f"## Mixed minus sequential at step {end} (pooled over seeds; Newcombe 95% interval)", "",
                "| domain | mixed | sequential | difference | 95% interval |", "|---|---|---|---|---|"]
        for family in families:
            m, s = pooled.get(("mixed", family, end)), pooled.get(("sequential", family, end))
            if not (m and s):
                out.append(f"| {family} | {m or 'not run'} | {s or 'not run'} | | |")
                continue
            d, low, high = newcombe_difference(*m, *s)
            out.append(f"| {family} | {m[0]}/{m[1]} | {s[0]}/{s[1]} | {d:+.3f} | [{low:+.3f}, {high:+.3f}] |")
    out += ["", "## Runs (seconds the training steps spent; held-out evaluations and start-up not included)", "",
            "| run | last step | rollouts (s) | optimizer (s) |", "|---|---|---|---|"]
    for arm in ARMS:
        for seed, run in data[arm].items():
            out.append(f"| transfer-{arm}-s{seed} | " + (f"{run['last_step']} | {run['rollout_s']:.0f} | {run['train_s']:.0f} |" if run else "not run | | |"))
    return "\n".join(out), {arm: {str(s): r for s, r in runs.items()} for arm, runs in data.items()}


def main() -> None:
    table_cli(__doc__ or "", "folder holding runs/transfer-<arm>-s<seed>", tables)


if __name__ == "__main__":
    main()
