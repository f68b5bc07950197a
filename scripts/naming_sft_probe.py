"""Issue 7 probe: can SFT teach the tiny policy to read tool names from the prompt?

SFT from the default policy on scripted-solver data where only tool and parameter names change
(tool_info at strength 0, probability 0.5; PascalCase held out, as in the experiment), then the
starting and the new policy on every naming style at 192-token turns (where SFT alone solves
difficulty 3), 32 held-out tasks each.

    python scripts/naming_sft_probe.py [OUT]        # ~25 min on 2 CPU cores; OUT default runs/naming-sft

Writes the policy to OUT and the evaluation to OUT.json; prints the table.
"""

from __future__ import annotations

import json
import sys
import time

from forgerl.perturb.experiment import _evaluate, markdown_table, summarize
from forgerl.perturb.spec import (
    NAMING_STYLES,
    HeldOutScaffolds,
    PerturbSpec,
    Scaffold,
    ToolInfoSpec,
)
from forgerl.train.cli import run_sft
from forgerl.train.config import TrainConfig


def main() -> None:
    out = sys.argv[1] if len(sys.argv) > 1 else "runs/naming-sft"
    spec = PerturbSpec(tool_info=ToolInfoSpec(probability=0.5, strength=0.0))  # default held-out: pascal
    t0 = time.perf_counter()
    run_sft(out, examples=2400, steps=300, batch_size=8, lr=1e-3, seed=5, difficulty=[1, 2, 3, 4], init="default",
            varied=True, perturb=spec, max_length=2560)
    none = HeldOutScaffolds(chat_formats=[], naming_styles=[], response_styles=[])
    scaffolds = [Scaffold(name="default")] + [
        Scaffold(name=f"naming={style}", held_out=style in spec.held_out.naming_styles,
                 spec=PerturbSpec(tool_info=ToolInfoSpec(probability=1.0, strength=0.0, naming_styles=[style]), held_out=none))
        for style in NAMING_STYLES]
    rows = []
    for arm, model in (("start", "default"), ("naming-sft", out)):
        cfg = TrainConfig(max_context=2560, model=model, max_tokens=192)
        rows += [{"arm": arm, "seed": 0, **r.as_dict()} for r in _evaluate(cfg, None, scaffolds, 32)]
        print(f"{arm} evaluated ({time.perf_counter() - t0:.0f} s)", flush=True)
    summary = summarize(rows)
    with open(out + ".json", "w") as f:
        json.dump({"rows": rows, "summary": summary}, f, indent=1)
    print(markdown_table(summary))


if __name__ == "__main__":
    main()
