"""The decision log: one JSON object per line, enough on its own to replay any kept decision.

Line 1 (`kind: header`) holds what a rerun needs: the base config (every field), the search space,
the objective, the budget, the splits' seed bases and the runner's settings. Then one line per event:
`measure` (a proposal, its diff against the base, where it came from, the evidence — the validation
measurement, the run's report metrics, the doctor's findings — the decision and why), `reject` (a
proposal that never ran, and why), `stop` (why the search ended) and, last, `evaluation` (the
held-out report, written after the search: once it is there the log takes no more decisions).
Each line is flushed as written, so a crashed search leaves a readable log.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from forgerl.errors import ConfigError
from forgerl.evolve.splits import GuardrailError

LOG_VERSION = 1


class DecisionLog:
    def __init__(self, path: str | Path, header: dict[str, Any]) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._sealed = False
        self.path.write_text("")
        self._write({"kind": "header", "version": LOG_VERSION, **header})

    def _write(self, record: dict[str, Any]) -> None:
        with self.path.open("a", encoding="utf-8") as f:
            f.write(json.dumps({"time": round(time.time(), 3), **record}, default=str) + "\n")

    def write(self, kind: str, **record: Any) -> None:
        if self._sealed and kind != "evaluation":
            raise GuardrailError("the decision log is sealed: the evaluation split has been reported, so no "
                                 "further decision may be logged")
        if kind == "evaluation":
            self._sealed = True
        self._write({"kind": kind, **record})


def read_log(path: str | Path) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """(the header, the other records in order). ConfigError if the file is not a decision log."""
    path = Path(path)
    try:
        lines = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    except FileNotFoundError:
        raise ConfigError(f"decision log {path} does not exist") from None
    except json.JSONDecodeError as exc:
        raise ConfigError(f"decision log {path} is not JSONL (line {exc.lineno}): {exc.msg}") from None
    if not lines or lines[0].get("kind") != "header":
        raise ConfigError(f"{path} is not an evolve decision log (its first line is no header)")
    if lines[0].get("version") != LOG_VERSION:
        raise ConfigError(f"{path} is a version {lines[0].get('version')} log; this forgerl reads version {LOG_VERSION}")
    return lines[0], lines[1:]
