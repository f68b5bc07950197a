"""Issue 8's experiment in one command: real rollouts of the default policy, labelled by a scripted
expert with a known preference (forgerl.review.tool_expert: no invented numbers in tool calls), a
reward model trained on the labels, and short training runs with and without it as a reward
component, compared on the preference metric (fraction of grounded rollouts per step).

    python scripts/rm_reward_experiment.py                    # all stages (~1 h on 2 busy CPU cores)
    python scripts/rm_reward_experiment.py --stage compare --rm runs/rm-experiment/reward_model
    python scripts/rm_reward_experiment.py --smoke --out /tmp/rmx   # plumbing check, a few minutes
    python scripts/rm_reward_experiment.py --stage transfer --rm OUT/reward_model OUT/verifier_seed0 OUT/verifier_rm_seed0
    python scripts/rm_reward_experiment.py --stage rm --from-rollouts tests/review/data/tool_reasoning_rollouts.jsonl.gz

Writes OUT/data (the labelled rollouts), OUT/reward_model, OUT/<arm>_seed<S> (training runs with
report.md), OUT/results.json and OUT/table.md. The logic lives in forgerl.experiments.reward_model.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any

from forgerl.experiments.reward_model import (
    collect,
    compare,
    label_and_train,
    load_rollouts,
    table,
    transfer_evaluation,
)
from forgerl.store import TrajectoryStore


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--stage", choices=["all", "collect", "rm", "compare", "transfer"], default="all")
    parser.add_argument("runs", nargs="*", help="transfer: run directories (default: OUT/*_seed*)")
    parser.add_argument("--out", default="runs/rm-experiment", help="output directory")
    parser.add_argument("--batches", type=int, default=8, help="collect: batches of 8 tasks x 4 rollouts")
    parser.add_argument("--from-rollouts", default=None,
                        help="rm: label these exported rollouts (.jsonl.gz) instead of OUT/data from the collect stage")
    parser.add_argument("--degenerate", type=int, default=1,
                        help="rm: rounds of synthetic degenerate episodes per task (collapse, derail, guess); 0 = none")
    parser.add_argument("--rm", default=None, help="compare: a reward model directory (default OUT/reward_model)")
    parser.add_argument("--steps", type=int, default=10, help="compare: training steps per arm")
    parser.add_argument("--seeds", default="0", help="compare: comma-separated run seeds (both arms run each)")
    parser.add_argument("--groups", type=int, default=4, help="compare: tasks per step")
    parser.add_argument("--group-size", type=int, default=8, help="compare: rollouts per task (the main job's 8)")
    parser.add_argument("--weight", type=float, default=0.5, help="compare: reward-model weight (verifier: 1)")
    parser.add_argument("--lr", type=float, default=None, help="compare: learning rate (default: the trainer's)")
    parser.add_argument("--arms", default="verifier,verifier+rm", help="compare: which arms to run (e.g. one per process)")
    parser.add_argument("--smoke", action="store_true", help="1 batch of 2 tasks, 1 split, 1 step of 2 tasks")
    args = parser.parse_args()
    out = Path(args.out)
    rm_dir = Path(args.rm) if args.rm else out / "reward_model"
    overrides: dict[str, Any] = {"groups_per_step": args.groups, "group_size": args.group_size, "eval": {"tasks": 8}}
    if args.lr is not None:
        overrides["optim"] = {"lr": args.lr}
    batches, seeds, splits = args.batches, tuple(int(s) for s in args.seeds.split(",")), (0, 1, 2)
    if args.smoke:
        batches, args.steps, seeds, splits = 1, 1, seeds[:1], (0,)
        overrides.update(groups_per_step=2, group_size=2, eval={"tasks": 1}, max_turns=3)
    start = time.perf_counter()
    if args.stage in ("all", "collect"):
        trajs = collect(out / "data", batches=batches, groups=2 if args.smoke else 8, group_size=2 if args.smoke else 4)
        print(f"collected {len(trajs)} rollouts in {out / 'data'} ({time.perf_counter() - start:.0f} s)")
    if args.stage in ("all", "rm"):
        if args.from_rollouts:
            with TrajectoryStore(out / "data") as store:
                if not store.query(limit=1):
                    store.add_run({"kind": f"rollouts from {args.from_rollouts}"}, run_id="rollouts")
                    store.add_trajectories(load_rollouts(args.from_rollouts), "rollouts")
        results = label_and_train(out / "data", rm_dir, seeds=splits, degenerate_per_task=args.degenerate)
        for seed, r in zip(splits, results, strict=True):
            parts = [f"reward model, split {seed}: {r.n_train_tasks} train / {r.n_held_out_tasks} held-out tasks"]
            for name, h in (("all", r.held_out), *r.held_out_by_kind.items()):
                parts.append(f"held-out {name}: pairwise accuracy {h.pairwise_accuracy:.3f} on {h.n_pairs} pairs "
                             f"(verifier alone {h.verifier_accuracy:.3f}), ECE {h.ece:.3f}, Brier {h.brier:.3f}")
            print("\n  ".join(parts))
        print(f"saved the split-{splits[0]} model to {rm_dir}")
    if args.stage in ("all", "compare"):
        results = compare(rm_dir, out, steps=args.steps, seeds=seeds, weight=args.weight, overrides=overrides,
                          arms=tuple(args.arms.split(",")))
        text = table(results, window=min(3, args.steps))
        (out / "table.md").write_text(text + "\n")
        print(text)
    if args.stage in ("all", "transfer"):
        runs = [Path(r) for r in args.runs] or sorted(p for p in out.glob("*_seed*") if p.is_dir())
        for name, ev in transfer_evaluation(rm_dir, runs, out).items():
            print(f"transfer, {name}: pairwise accuracy {ev.pairwise_accuracy:.3f} on {ev.n_pairs} pairs "
                  f"(verifier alone {ev.verifier_accuracy:.3f}), ECE {ev.ece:.3f}, Brier {ev.brier:.3f}")
    print(f"done in {time.perf_counter() - start:.0f} s; results in {out}")


if __name__ == "__main__":
    main()
