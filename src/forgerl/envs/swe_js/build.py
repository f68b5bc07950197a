"""Regenerate the shipped swe-js task set: `python -m forgerl.envs.swe_js.build --out data/swe_js`.

Writes `tasks.jsonl`, `report.json` and `report.md` (counts per kind, package, operator and target;
no timings, so two runs give the same report byte for byte; the perf tasks' measured baselines are
in their task data). Needs the pinned npm packages (`make setup`) and Node.js.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import time
from pathlib import Path

from forgerl.envs.swe_js.packages import PACKAGES, require_node
from forgerl.envs.swe_js.pipeline import GenerationConfig, build_report, generate, report_markdown

TASKS_FILE = "tasks.jsonl"
REPORT_JSON = "report.json"
REPORT_MD = "report.md"


def write_outputs(out: Path, config: GenerationConfig) -> dict:
    require_node()
    result = asyncio.run(generate(config))
    report = build_report(result, config)
    out.mkdir(parents=True, exist_ok=True)
    with (out / TASKS_FILE).open("w", encoding="utf-8") as f:
        # a stable shuffle (by id hash): the first seeds of either side of the split meet every
        # kind and package, so `envs validate`'s sample covers them
        for task in sorted(result.tasks, key=lambda t: hashlib.sha256(t.id.encode()).hexdigest()):
            f.write(json.dumps(task.model_dump(mode="json"), ensure_ascii=False, sort_keys=True) + "\n")
    (out / REPORT_JSON).write_text(json.dumps(report, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    (out / REPORT_MD).write_text(report_markdown(report), encoding="utf-8")
    return report


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True, help="output directory (e.g. data/swe_js)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--concurrency", type=int, default=GenerationConfig.concurrency)
    parser.add_argument("--only", nargs="*", default=None, help="package names to restrict to, e.g. ms semver")
    args = parser.parse_args(argv)
    names = tuple(p.name for p in PACKAGES)
    packages = names if not args.only else tuple(n for n in names if n in set(args.only))
    if not packages:
        parser.error(f"--only matched no package; known: {', '.join(names)}")
    if args.concurrency < 1:
        parser.error("--concurrency must be >= 1")
    config = GenerationConfig(seed=args.seed, concurrency=args.concurrency, packages=packages)
    start = time.monotonic()
    report = write_outputs(args.out, config)
    totals = report["totals"]
    print(f"wrote {totals['tasks']} tasks {totals['by_kind']} from {totals['kept']} kept of {totals['mutants_tried']} "
          f"candidates to {args.out} in {time.monotonic() - start:.0f} s")


if __name__ == "__main__":
    main()
