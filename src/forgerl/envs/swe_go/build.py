"""Regenerate the shipped swe-go task set: `python -m forgerl.envs.swe_go.build --out data/swe_go`.

Writes `tasks.jsonl`, `report.json` and `report.md` (byte for byte the same on every run with the
same seed, Debian package versions and pins), `perf_pins.json` (each perf decision — package,
function, slowdown kind: kept or not — read back from `--pins` so a rebuild decides the same; a
decision missing there is measured and pinned) and `perf_timings.json` (this build's timings of the
kept perf tasks, the one file that differs between builds). `--recalibrate` ignores the pins and
measures every slowdown afresh.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import time
from pathlib import Path

from forgerl.envs.swe import pins
from forgerl.envs.swe.pins import PerfPin
from forgerl.envs.swe_go.pipeline import GenerationConfig, build_report, generate, report_markdown

PERF_PINS = "perf_pins.json"
DEFAULT_PINS = Path(__file__).resolve().parents[4] / "data" / "swe_go" / PERF_PINS


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
    (out / PERF_PINS).write_text(pins.pins_json(result.pins), encoding="utf-8")
    (out / "perf_timings.json").write_text(json.dumps(result.timings, indent=1, sort_keys=True) + "\n", encoding="utf-8")
    if result.measured:
        print(f"measured and pinned {len(result.measured)} perf decision(s) without a pin")
    if result.disagreements:
        print(f"{len(result.disagreements)} perf decision(s) pinned as kept missed the bar in this build's one timing "
              f"(kept, as pinned; see perf_timings.json, or rebuild with --recalibrate): {', '.join(sorted(result.disagreements))}")
    if result.retried:
        print(f"{len(result.retried)} suite run(s) retried with longer limits after a timeout")
    return report


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--out", type=Path, required=True, help="output directory (e.g. data/swe_go)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--concurrency", type=int, default=GenerationConfig.concurrency)
    parser.add_argument("--only", nargs="*", default=None, help="function names to restrict to (debugging)")
    parser.add_argument("--pins", type=Path, default=DEFAULT_PINS,
                        help="pinned perf decisions (default data/swe_go/perf_pins.json, when present)")
    parser.add_argument("--recalibrate", action="store_true", help="ignore --pins and measure every slowdown")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    if args.concurrency < 1:
        parser.error("--concurrency must be >= 1")
    pinned: dict[str, PerfPin] = {}
    if not args.recalibrate and (args.pins != DEFAULT_PINS or args.pins.exists()):
        pinned = pins.read_pins(args.pins, with_rounds=False)
    config = GenerationConfig(seed=args.seed, concurrency=args.concurrency, perf_pins=pinned,
                              only_functions=frozenset(args.only) if args.only else None)  # fmt: skip
    start = time.monotonic()
    report = write_outputs(args.out, config)
    totals = report["totals"]
    print(f"wrote {totals['tasks']} tasks {totals['by_kind']} from {totals['kept']} kept of {totals['tried']} tried "
          f"to {args.out} in {time.monotonic() - start:.0f} s")  # fmt: skip


if __name__ == "__main__":
    main()
