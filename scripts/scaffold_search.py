"""Scaffold search (issue 25 item 3): on which scaffold does the current policy do best?

The offline proposer (successive halving, `forgerl evolve`) searches a declared scaffold space —
naming style of tools and parameters, tool-output layout, system-prompt rewrite, chat format — for
the default policy with no training (`budget.steps_per_run = 0`): every candidate is the shipped
policy, greedy, measured on the validation split (task seeds from VALIDATION_SEED_BASE, never used
by training or `forgerl eval`). When the search stops, the chosen scaffold and the default scaffold
are measured once on the evaluation split (the trainer's held-out tasks), and the gain is reported
with 95% Wilson intervals per arm and Newcombe's interval for the difference. Whatever it shows is
written down, no gain included.

    nice -n 10 .venv/bin/python scripts/scaffold_search.py --out runs/scaffold-search

writes OUT/decisions.jsonl (the evolve log: `forgerl evolve replay OUT/decisions.jsonl` reruns the
kept decision), OUT/results.json and OUT/table.md (every scaffold's validation measurement at its
largest fidelity, and the evaluation-split report).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

from forgerl.evolve.run import run_evolve
from forgerl.evolve.settings import load_settings

SPACE = {
    "naming": ["default", "synonym", "camel", "kebab", "upper"],
    "response_layout": ["default", "json", "kv", "table"],
    "system_prompt": ["default", 0.0, 0.5],
    "chat_format": ["default", "hermes"],
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default="runs/scaffold-search")
    parser.add_argument("--difficulty", default="1,2",
                        help="tool-reasoning levels, cycled over the tasks. The main job trains at 3, where the default "
                             "policy passes ~0 greedy (0/16); it passes 1/16 at 2 and 12/16 at 1 (held-out, greedy): "
                             "levels 1 and 2 in turn leave a scaffold room to move it either way")
    parser.add_argument("--candidates", type=int, default=4, help="first halving rung")
    parser.add_argument("--eta", type=int, default=2)
    parser.add_argument("--validation-tasks", type=int, default=8)
    parser.add_argument("--evaluation-tasks", type=int, default=16)
    parser.add_argument("--min-tasks", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0, help="the halving sampler's seed")
    parser.add_argument("--wall-s", type=float, default=1200)
    args = parser.parse_args()

    settings = load_settings(None, out=args.out, base_set={"env": "tool-reasoning", "difficulty": [int(d) for d in args.difficulty.split(",")]},
                             budget={"max_runs": 50, "steps_per_run": 0, "wall_s": args.wall_s},
                             objective={"metric": "success_rate", "validation_tasks": args.validation_tasks,
                                        "evaluation_tasks": args.evaluation_tasks, "rule": "margin", "margin": 0.0},
                             space={"scaffold": SPACE},
                             halving={"candidates": args.candidates, "eta": args.eta, "min_tasks": args.min_tasks,
                                      "seed": args.seed})
    start = time.perf_counter()

    def show(outcome: Any) -> None:
        m = outcome.result.measurement
        print(f"[{outcome.index:03d}] {time.perf_counter() - start:6.0f}s {outcome.decision:9s} "
              f"{outcome.proposal.candidate.scaffold.name():55s} {m.successes}/{m.n} "
              f"[{m.ci_low:.2f}, {m.ci_high:.2f}] ({outcome.proposal.source})", flush=True)

    result = run_evolve(settings, use_doctor=False, on_outcome=show)
    seconds = time.perf_counter() - start
    best: dict[str, dict[str, Any]] = {}
    for o in [result.baseline, *result.history]:  # each scaffold at its largest fidelity
        name, m = o.proposal.candidate.scaffold.name(), o.result.measurement
        if name not in best or m.n >= best[name]["n"]:
            best[name] = {**m.as_dict(), "decision": o.decision, "source": o.proposal.source}
    report = {"command": "scripts/scaffold_search.py " + " ".join(f"--{k.replace('_', '-')} {v}" for k, v in vars(args).items()),
              "seconds": seconds, "stop_reason": result.stop_reason, "chosen": result.incumbent.proposal.candidate.scaffold.name(),
              "validation": best, "evaluation": result.evaluation, "space": SPACE}
    out = Path(args.out)
    (out / "results.json").write_text(json.dumps(report, indent=2, default=str))
    (out / "table.md").write_text(table(report))
    print(table(report))


def table(report: dict[str, Any]) -> str:
    lines = [f"Scaffold search on tool-reasoning, default policy, no training ({report['seconds']:.0f} s; "
             f"stop: {report['stop_reason']})", "",
             "| scaffold | validation success [95% Wilson] | n | decision |", "|---|---|---|---|"]
    for name, m in sorted(report["validation"].items(), key=lambda kv: (-kv[1]["n"], -kv[1]["success_rate"])):
        lines.append(f"| {name} | {m['success_rate']:.3f} [{m['ci_low']:.2f}, {m['ci_high']:.2f}] | {m['n']} | {m['decision']} |")
    ev = report["evaluation"]
    if ev:
        lines += ["", f"Evaluation split (held-out tasks, n={ev['tasks']} each, measured once after the search):", "",
                  "| arm | scaffold | success [95% Wilson] |", "|---|---|---|"]
        for arm, row in ev["rows"].items():
            e = row["evaluation"]
            lines.append(f"| {arm} | {row['label']} | {e['success_rate']:.3f} [{e['ci_low']:.2f}, {e['ci_high']:.2f}] "
                         f"({e['successes']}/{e['n']}) |")
        if "gain" in ev:
            g = ev["gain"]
            lines.append(f"\ngain (chosen - default): {g['success_rate']:+.3f}, 95% Newcombe interval "
                         f"[{g['ci_low']:+.3f}, {g['ci_high']:+.3f}]")
        else:
            lines.append("\nno scaffold beat the default on validation: nothing to compare on the evaluation split")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
