"""Regenerate the shipped swe-js task set: `python -m forgerl.envs.swe_js.build --out data/swe_js`.

Writes `tasks.jsonl`, `report.json` and `report.md` (counts per kind, package, operator and target;
no timings: two builds give them byte for byte), `perf_rounds.json` (each perf target's benchmark
length, read back from `--rounds` so a rebuild times the same benchmark; a target missing there is
calibrated) and `perf_timings.json` (the measured timings of every kept perf task, the one file that
differs between builds). `--recalibrate` measures every target's rounds afresh. Needs the pinned npm
packages (`make setup`) and Node.js.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import time
from pathlib import Path

from forgerl.envs.swe_js.packages import PACKAGES, ROOT, require_node
from forgerl.envs.swe_js.pipeline import GenerationConfig, build_report, generate, report_markdown

TASKS_FILE = "tasks.jsonl"
REPORT_JSON = "report.json"
REPORT_MD = "report.md"
PERF_ROUNDS = "perf_rounds.json"
PERF_TIMINGS = "perf_timings.json"
DEFAULT_ROUNDS = ROOT / "data" / "swe_js" / PERF_ROUNDS


def read_rounds(path: Path) -> dict[str, int]:
    """Pinned rounds per `package:target`; a clear error for a file that is not such a mapping."""
    try:
        rounds = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise SystemExit(f"cannot read the pinned perf rounds {path}: {exc}; fix it or pass --recalibrate") from exc
    if not isinstance(rounds, dict) or not all(isinstance(k, str) and type(v) is int and v >= 1 for k, v in rounds.items()):
        raise SystemExit(f"{path} must map 'package:target' to a positive integer number of rounds; fix it or pass "
                         "--recalibrate")
    return rounds


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
    for name, values in ((PERF_ROUNDS, result.rounds), (PERF_TIMINGS, result.timings)):
        (out / name).write_text(json.dumps(values, indent=1, sort_keys=True) + "\n", encoding="utf-8")
    if result.calibrated:
        print(f"calibrated the perf rounds of {len(result.calibrated)} target(s): {', '.join(sorted(result.calibrated))}")
    return report


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True, help="output directory (e.g. data/swe_js)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--concurrency", type=int, default=GenerationConfig.concurrency)
    parser.add_argument("--only", nargs="*", default=None, help="package names to restrict to, e.g. ms semver")
    parser.add_argument("--rounds", type=Path, default=DEFAULT_ROUNDS,
                        help=f"pinned perf rounds per target (default {DEFAULT_ROUNDS.relative_to(ROOT)}, when present)")
    parser.add_argument("--recalibrate", action="store_true", help="ignore --rounds and measure every perf target")
    args = parser.parse_args(argv)
    names = tuple(p.name for p in PACKAGES)
    packages = names if not args.only else tuple(n for n in names if n in set(args.only))
    if not packages:
        parser.error(f"--only matched no package; known: {', '.join(names)}")
    if args.concurrency < 1:
        parser.error("--concurrency must be >= 1")
    pinned: dict[str, int] = {}
    if not args.recalibrate and (args.rounds != DEFAULT_ROUNDS or args.rounds.exists()):
        pinned = read_rounds(args.rounds)
    config = GenerationConfig(seed=args.seed, concurrency=args.concurrency, packages=packages, perf_rounds=pinned)
    start = time.monotonic()
    report = write_outputs(args.out, config)
    totals = report["totals"]
    print(f"wrote {totals['tasks']} tasks {totals['by_kind']} from {totals['kept']} kept of {totals['mutants_tried']} "
          f"candidates to {args.out} in {time.monotonic() - start:.0f} s")


if __name__ == "__main__":
    main()
