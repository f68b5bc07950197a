"""Perf pins: each perf target's timing decisions, measured once and kept in a file, as a lockfile
keeps versions — shared by the coding families' generators (swe-js, swe-go).

Why: a slowdown whose true conservative speed-up sits near the generation bar is kept by one
measurement and rejected by the next on a shared machine, retries or not, so a rebuild that
re-decides it does not give the same task set. A rebuild therefore reads the pins: a target pinned
as rejected is not timed again, one pinned as kept is timed once more (for the timings file) and a
miss of the bar is reported as a disagreement, not acted on; only a target without a pin is
measured and decided, then pinned. `--recalibrate` in a family's build ignores the file.

The file maps a family-chosen key (e.g. "package:target") to `{"kept": bool}`, plus `"rounds"`
(a positive int) for a family whose benchmark length is calibrated (swe-js).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class PerfPin:
    """A perf target's timing decisions: its benchmark rounds (None where the family's benchmark has
    a fixed length) and whether its slowdown was kept."""

    rounds: int | None
    kept: bool


def read_pins(path: Path, *, with_rounds: bool) -> dict[str, PerfPin]:
    """The pins in `path`; SystemExit naming the file and the fix for one that is not such a mapping
    (the builds are command-line tools, and a bad lockfile must stop them before any work)."""
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise SystemExit(f"cannot read the perf pins {path}: {exc}; fix it or pass --recalibrate") from exc
    fields = {"rounds", "kept"} if with_rounds else {"kept"}
    shape = '{"rounds": a positive integer, "kept": true or false}' if with_rounds else '{"kept": true or false}'
    if not isinstance(raw, dict) or not all(isinstance(k, str) and _valid(v, fields) for k, v in raw.items()):
        raise SystemExit(f"{path} must map each perf target's key to {shape}; fix it or pass --recalibrate")
    return {key: PerfPin(rounds=value.get("rounds"), kept=value["kept"]) for key, value in raw.items()}


def _valid(value: object, fields: set[str]) -> bool:
    if not isinstance(value, dict) or set(value) != fields or type(value["kept"]) is not bool:
        return False
    return "rounds" not in fields or (type(value["rounds"]) is int and value["rounds"] >= 1)


def pins_json(pins: Mapping[str, PerfPin]) -> str:
    """The file's text: sorted keys, `rounds` only where set, so two builds deciding alike write it
    byte for byte alike."""
    values = {key: {"kept": pin.kept, **({"rounds": pin.rounds} if pin.rounds is not None else {})}
              for key, pin in pins.items()}  # fmt: skip
    return json.dumps(values, indent=1, sort_keys=True) + "\n"
