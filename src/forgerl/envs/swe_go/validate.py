"""The slow validation tier of swe-go: gold 1.0 and no-op 0 on EVERY shipped task, and each perf
task's gold validated `--perf-repeats` times (it must clear the PerfRule in >= 95% of them).

`python -m forgerl.envs.swe_go.validate [--kind perf] [--perf-repeats 3] [--out data/swe_go/validation.json]`
(`forgerl envs validate swe-go` is the default tier: it samples.) Takes about ten seconds a task.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
from collections import Counter
from pathlib import Path
from typing import Any

from forgerl.envs.base import Task
from forgerl.envs.rewards import Verdict
from forgerl.envs.swe_go import SweGoEnv, load_go_tasks
from forgerl.types import ToolCall

SUBMIT = [[ToolCall(name="submit", arguments={})]]


async def play(task: Task, steps: list[list[ToolCall]]) -> Verdict:
    env = SweGoEnv()
    env.reset(task)
    try:
        for step in steps:
            for call in step:
                await env.execute(call)
        return env.verify(None)  # type: ignore[arg-type]
    finally:
        await env.close()


async def validate(tasks: list[Task], perf_repeats: int) -> dict[str, Any]:
    rows: list[dict[str, Any]] = []
    for task in tasks:
        start = time.monotonic()
        repeats = perf_repeats if task.data["kind"] == "perf" else 1
        golds = [await play(task, SweGoEnv().gold_solution(task)) for _ in range(repeats)]
        noop = await play(task, SUBMIT)
        row = {"id": task.id, "kind": task.data["kind"], "gold": [g.outcome for g in golds], "noop": noop.outcome,
               "seconds": round(time.monotonic() - start, 1)}  # fmt: skip
        if task.data["kind"] == "perf":
            row["perf"] = [g.evidence.get("perf") for g in golds]
        bad = [g.evidence for g in golds if g.outcome != 1.0]
        if bad:
            row["gold_evidence"] = bad[0]
        rows.append(row)
        print(f"{task.id}: gold {row['gold']} noop {row['noop']} ({row['seconds']} s)", flush=True)
    perf = [g for r in rows if r["kind"] == "perf" for g in r["gold"]]
    return {
        "tasks": len(rows),
        "by_kind": dict(sorted(Counter(r["kind"] for r in rows).items())),
        "gold_all_one": sum(all(g == 1.0 for g in r["gold"]) for r in rows),
        "noop_zero": sum(r["noop"] <= 0.0 for r in rows),
        "perf_gold_pass_rate": round(sum(perf) / len(perf), 3) if perf else None,
        "perf_validations": len(perf),
        "rows": rows,
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--kind", default=None, help="only this kind")
    parser.add_argument("--perf-repeats", type=int, default=3)
    parser.add_argument("--out", type=Path, default=None, help="write the summary (JSON) here")
    parser.add_argument("--exclude-kind", default=None, help="leave this kind out")
    parser.add_argument("--reverse", action="store_true", help="last task first (a second process can meet the first)")
    args = parser.parse_args(argv)
    tasks = [t for t in load_go_tasks(args.kind) if t.data["kind"] != args.exclude_kind]
    summary = asyncio.run(validate(tasks[::-1] if args.reverse else tasks, args.perf_repeats))
    if args.out:
        args.out.write_text(json.dumps(summary, indent=1) + "\n", encoding="utf-8")
    print(json.dumps({k: v for k, v in summary.items() if k != "rows"}))
    ok = summary["gold_all_one"] == summary["tasks"] == summary["noop_zero"]
    raise SystemExit(0 if ok and (summary["perf_gold_pass_rate"] or 1.0) >= 0.95 else 1)


if __name__ == "__main__":
    main()
