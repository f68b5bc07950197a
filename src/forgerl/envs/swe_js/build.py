"""Regenerate the shipped swe-js task set: `python -m forgerl.envs.swe_js.build --out data/swe_js`.

Writes `tasks.jsonl`, `report.json` and `report.md` (counts per kind, package, operator and target;
no timings), `perf_pins.json` (each perf target's timing decisions — benchmark rounds, kept or not —
read back from `--pins` so a rebuild decides the same; a target missing there is measured) and
`perf_timings.json` (this build's timings of the kept perf tasks, the one file that differs between
builds). `--recalibrate` ignores the pins and measures every target afresh. Needs the pinned npm
packages (`make setup`) and Node.js.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import time
from pathlib import Path

from forgerl.envs.swe import pins
from forgerl.envs.swe.pins import PerfPin
from forgerl.envs.swe_js.packages import PACKAGES, ROOT, require_node
from forgerl.envs.swe_js.pipeline import GenerationConfig, build_report, generate, report_markdown

TASKS_FILE = "tasks.jsonl"
REPORT_JSON = "report.json"
REPORT_MD = "report.md"
PERF_PINS = "perf_pins.json"
PERF_TIMINGS = "perf_timings.json"
DEFAULT_PINS = ROOT / "data" / "swe_js" / PERF_PINS


def read_pins(path: Path) -> dict[str, PerfPin]:
    """Pinned decisions per `package:target` (rounds and kept); a clear error for a bad file."""
    return pins.read_pins(path, with_rounds=True)


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
    (out / PERF_PINS).write_text(pins.pins_json(result.pins), encoding="utf-8")
    (out / PERF_TIMINGS).write_text(json.dumps(result.timings, indent=1, sort_keys=True) + "\n", encoding="utf-8")
    if result.measured:
        print(f"measured and pinned {len(result.measured)} perf target(s) without a pin: {', '.join(sorted(result.measured))}")
    if result.disagreements:
        print(f"{len(result.disagreements)} perf target(s) pinned as kept missed the bar in this build's one timing "
              f"(kept, as pinned; see perf_timings.json, or rebuild with --recalibrate): {', '.join(sorted(result.disagreements))}")
    return report


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True, help="output directory (e.g. data/swe_js)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--concurrency", type=int, default=GenerationConfig.concurrency)
    parser.add_argument("--only", nargs="*", default=None, help="package names to restrict to, e.g. ms semver")
    parser.add_argument("--pins", type=Path, default=DEFAULT_PINS,
                        help=f"pinned perf decisions per target (default {DEFAULT_PINS.relative_to(ROOT)}, when present)")
    parser.add_argument("--recalibrate", action="store_true", help="ignore --pins and measure every perf target")
    args = parser.parse_args(argv)
    names = tuple(p.name for p in PACKAGES)
    packages = names if not args.only else tuple(n for n in names if n in set(args.only))
    if not packages:
        parser.error(f"--only matched no package; known: {', '.join(names)}")
    if args.concurrency < 1:
        parser.error("--concurrency must be >= 1")
    pinned: dict[str, PerfPin] = {}
    if not args.recalibrate and (args.pins != DEFAULT_PINS or args.pins.exists()):
        pinned = read_pins(args.pins)
    config = GenerationConfig(seed=args.seed, concurrency=args.concurrency, packages=packages, perf_pins=pinned)
    start = time.monotonic()
    report = write_outputs(args.out, config)
    totals = report["totals"]
    print(f"wrote {totals['tasks']} tasks {totals['by_kind']} from {totals['kept']} kept of {totals['mutants_tried']} "
          f"candidates to {args.out} in {time.monotonic() - start:.0f} s")


if __name__ == "__main__":
    main()
