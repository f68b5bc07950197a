"""Regenerate the shipped swe-bugfix task set: `python -m forgerl.envs.swe.build --out data/swe`.

Writes `tasks.jsonl` (one Task per line), `report.json` (every mutant tried, kept or rejected and
why, with counts per package, module, function and operator) and `report.md` (the same counts as
tables). Deterministic for a given seed and package pins (packages.py).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
from pathlib import Path

from forgerl.envs.swe.packages import TARGETS
from forgerl.envs.swe.pipeline import GenerationConfig, build_report, generate, report_markdown

TASKS_FILE = "tasks.jsonl"
REPORT_JSON = "report.json"
REPORT_MD = "report.md"
PERF_TIMINGS = "perf_timings.json"


def write_outputs(out: Path, config: GenerationConfig) -> dict:
    result = asyncio.run(generate(config))
    report = build_report(result, config)
    out.mkdir(parents=True, exist_ok=True)
    with (out / TASKS_FILE).open("w", encoding="utf-8") as f:
        for task in result.tasks:
            f.write(json.dumps(task.model_dump(mode="json"), ensure_ascii=False, sort_keys=True) + "\n")
    (out / REPORT_JSON).write_text(json.dumps(report, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    (out / REPORT_MD).write_text(report_markdown(report), encoding="utf-8")
    if result.perf_timings:  # measured, so not byte-stable: kept out of the files above
        (out / PERF_TIMINGS).write_text(json.dumps(result.perf_timings, indent=1, sort_keys=True) + "\n",
                                        encoding="utf-8")
    return report


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True, help="output directory (e.g. data/swe)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--keep-per-function", type=int, default=GenerationConfig.keep_per_function)
    parser.add_argument("--max-tries-per-function", type=int, default=GenerationConfig.max_tries_per_function)
    parser.add_argument("--concurrency", type=int, default=GenerationConfig.concurrency)
    parser.add_argument("--no-write-test", action="store_true", help="skip the test-inversion variants")
    parser.add_argument("--only", nargs="*", default=None, help="module paths to restrict to, e.g. toolz/itertoolz.py")
    parser.add_argument("--kinds", nargs="*", default=list(GenerationConfig.extra_kinds),
                        help="task kinds made after the bug fixes (feature perf merged; none: only bug fixes)")
    args = parser.parse_args(argv)
    targets = TARGETS if not args.only else tuple(t for t in TARGETS if t.module in set(args.only))
    if not targets:
        parser.error(f"--only matched no target; known: {', '.join(t.module for t in TARGETS)}")
    if args.keep_per_function < 1 or args.max_tries_per_function < 1 or args.concurrency < 1:
        parser.error("--keep-per-function, --max-tries-per-function and --concurrency must be >= 1")
    config = GenerationConfig(
        seed=args.seed,
        keep_per_function=args.keep_per_function,
        max_tries_per_function=args.max_tries_per_function,
        concurrency=args.concurrency,
        write_test_variants=not args.no_write_test,
        targets=targets,
        extra_kinds=tuple(args.kinds),
    )
    unknown = set(config.extra_kinds) - {"feature", "perf", "merged"}
    if unknown:
        parser.error(f"--kinds: unknown {sorted(unknown)}; choose from feature, perf, merged")
    start = time.monotonic()
    report = write_outputs(args.out, config)
    totals = report["totals"]
    print(
        f"wrote {totals['tasks']} tasks ({totals['bugfix_tasks']} bug-fix"
        + "".join(f", {totals[k + '_tasks']} {k}" for k in config.extra_kinds)
        + f") from {totals['kept']} kept of "
        f"{totals['mutants_tried']} mutants to {args.out} in {time.monotonic() - start:.0f} s"
    )


if __name__ == "__main__":
    main()
