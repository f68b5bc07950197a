"""Regenerate the shipped swe-go task set: `python -m forgerl.envs.swe_go.build --out data/swe_go`.

Writes `tasks.jsonl`, `report.json` and `report.md` (byte for byte the same on every run with the
same seed and Debian package versions, as long as the perf tasks' speed-ups stay clear of the
threshold) and `perf_timings.json` (the measured timings of each perf task's gold, with their noise:
measurements, so they differ run to run).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import time
from pathlib import Path

from forgerl.envs.swe_go.pipeline import GenerationConfig, build_report, generate, report_markdown


def write_outputs(out: Path, config: GenerationConfig) -> dict:
    result = asyncio.run(generate(config))
    result.tasks.sort(key=lambda t: t.id)
    report = build_report(result, config)
    out.mkdir(parents=True, exist_ok=True)
    with (out / "tasks.jsonl").open("w", encoding="utf-8") as f:
        for task in result.tasks:
            f.write(json.dumps(task.model_dump(mode="json"), ensure_ascii=False, sort_keys=True) + "\n")
    (out / "report.json").write_text(json.dumps(report, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    (out / "report.md").write_text(report_markdown(report), encoding="utf-8")
    (out / "perf_timings.json").write_text(json.dumps(result.timings, indent=1, sort_keys=True) + "\n", encoding="utf-8")
    return report


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--out", type=Path, required=True, help="output directory (e.g. data/swe_go)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--concurrency", type=int, default=GenerationConfig.concurrency)
    parser.add_argument("--only", nargs="*", default=None, help="function names to restrict to (debugging)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    if args.concurrency < 1:
        parser.error("--concurrency must be >= 1")
    config = GenerationConfig(seed=args.seed, concurrency=args.concurrency,
                              only_functions=frozenset(args.only) if args.only else None)  # fmt: skip
    start = time.monotonic()
    report = write_outputs(args.out, config)
    totals = report["totals"]
    print(f"wrote {totals['tasks']} tasks {totals['by_kind']} from {totals['kept']} kept of {totals['tried']} tried "
          f"to {args.out} in {time.monotonic() - start:.0f} s")  # fmt: skip


if __name__ == "__main__":
    main()
