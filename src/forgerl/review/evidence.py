"""AppDev verifier evidence in the review app: each rubric item's verdict as a row a reviewer can
check, and the one way the app reads a screenshot a verdict names.

An AppDev episode's `reward_evidence` holds the verifier's verdicts (envs/appdev/rubric.py
ItemVerdict): `gate` (the execution gate), `items` (one per rubric item), `evidence_dir` (where the
screenshots were written) and, when recorded, `verifier` and `seconds` — under the key `verifier`
when the reward was composed with process signals (envs/rewards.py), as episodes record it. Everything in a verdict is
untrusted: the app under test wrote the DOM and the console lines, and a model verifier writes the
reasons, the action list and even the screenshot names. So the page shows it all as escaped text
(templates.py autoescape), and a screenshot is served only when it is a regular PNG file inside the
trajectory's evidence directory, reached without `..`, without an absolute name and without a
symlink anywhere on the way; the URL carries only its index in the verdicts, never a path.
"""

from __future__ import annotations

import json
import os
import stat
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

from pydantic import ValidationError

from forgerl.envs.appdev.rubric import ItemVerdict

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
MAX_SCREENSHOT_BYTES = 16 * 1024 * 1024
"""A screenshot larger than this is refused rather than read into memory (a full-page capture of a
desktop viewport is well under 2 MiB)."""


class EvidenceRefused(Exception):
    """A screenshot the app will not serve; the message says why (and names no path)."""


@dataclass(frozen=True)
class Shot:
    index: int  # its place in screenshot_names(): what the URL carries
    name: str  # the verdict's relative path, shown as text only


@dataclass(frozen=True)
class VerdictRow:
    id: str
    layer: str
    passed: bool
    reason: str
    actions: list[str]
    console: list[str]
    dom_excerpt: str
    measured: str | None  # pretty JSON of the measured values, if any
    shots: list[Shot]


@dataclass(frozen=True)
class AppEvidenceView:
    rows: list[VerdictRow]  # the gate first, then the rubric items in order
    gate_passed: bool
    passed: int  # rubric items passed (the gate not counted)
    total: int
    verifier: str | None
    seconds: float | None
    screenshots_kept: bool  # the evidence directory still exists (episodes keep it only when asked to)


def _app_evidence(evidence: Any) -> dict[str, Any] | None:
    """The dict holding the verdicts: `evidence` itself, or the family's part of a composed reward's."""
    for found in (evidence, evidence.get("verifier") if isinstance(evidence, dict) else None):
        if isinstance(found, dict) and isinstance(found.get("items"), list) and "gate" in found:
            return found
    return None


def _verdicts(evidence: Any) -> tuple[ItemVerdict, list[ItemVerdict]] | None:
    """(gate, items) when `evidence` has the AppDev shape, else None (the page shows the raw JSON)."""
    evidence = _app_evidence(evidence)
    if evidence is None:
        return None
    try:
        return ItemVerdict.model_validate(evidence["gate"]), [ItemVerdict.model_validate(i) for i in evidence["items"]]
    except ValidationError:
        return None


def screenshot_names(evidence: Any) -> list[str]:
    """Every screenshot the verdicts name, gate first, in order: index i is served at
    /t/<id>/screenshot/<i>."""
    found = _verdicts(evidence)
    if found is None:
        return []
    gate, items = found
    return [name for verdict in (gate, *items) for name in verdict.screenshots]


def appdev_view(evidence: Any) -> AppEvidenceView | None:
    """The verdicts as table rows, or None when `evidence` is not an AppDev verifier's."""
    found = _verdicts(evidence)
    if found is None:
        return None
    gate, items = found
    evidence = _app_evidence(evidence)
    assert evidence is not None  # _verdicts found it
    rows, index = [], 0
    for v in (gate, *items):
        shots = [Shot(index + k, name) for k, name in enumerate(v.screenshots)]
        index += len(shots)
        measured = json.dumps(v.measured, indent=2, sort_keys=True, ensure_ascii=False, default=str) if v.measured else None
        rows.append(VerdictRow(v.id, v.layer, v.passed, v.reason, list(v.actions), list(v.console), v.dom_excerpt,
                               measured, shots))
    seconds, verifier, root = evidence.get("seconds"), evidence.get("verifier"), evidence.get("evidence_dir")
    return AppEvidenceView(rows, gate.passed, sum(i.passed for i in items), len(items),
                           verifier if isinstance(verifier, str) else None,
                           float(seconds) if isinstance(seconds, int | float) and not isinstance(seconds, bool) else None,
                           isinstance(root, str) and os.path.isabs(root) and os.path.isdir(root))


def read_screenshot(evidence: Any, index: int) -> bytes:
    """The bytes of the verdicts' `index`-th screenshot. Raises EvidenceRefused unless it is a
    regular PNG file (by its signature) inside the recorded evidence directory, named by a relative
    path without `..`, with no symlink on the way, and at most MAX_SCREENSHOT_BYTES."""
    names = screenshot_names(evidence)
    if not 0 <= index < len(names):
        raise EvidenceRefused("no such screenshot in this trajectory's verdicts")
    root_text = (_app_evidence(evidence) or {}).get("evidence_dir")
    if not isinstance(root_text, str) or not os.path.isabs(root_text) or "\x00" in root_text:
        raise EvidenceRefused("the verdicts record no absolute evidence directory")
    name = names[index]
    rel = PurePosixPath(name)
    if (not name or "\\" in name or "\x00" in name or rel.is_absolute()
            or any(part in ("..", ".", "") for part in name.split("/"))):
        raise EvidenceRefused("the screenshot's name is not a plain relative path inside the evidence directory")
    if rel.suffix.lower() != ".png":
        raise EvidenceRefused("only .png screenshots are served")
    root = Path(os.path.realpath(root_text))
    path = root
    for part in rel.parts:
        path = path / part
        if path.is_symlink():
            raise EvidenceRefused("the screenshot's path goes through a symlink")
    if os.path.commonpath([os.path.realpath(path), root]) != str(root):
        raise EvidenceRefused("the screenshot is outside the evidence directory")
    return _read_png(path)


def _read_png(path: Path) -> bytes:
    """A regular file's bytes, opened without following a symlink (one swapped in after the checks
    above fails here) and without blocking on a FIFO; refused unless it starts like a PNG."""
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0))
    except OSError:
        raise EvidenceRefused("the screenshot is not there (evidence directories are cleaned up unless kept)") from None
    with os.fdopen(fd, "rb") as f:
        info = os.fstat(f.fileno())
        if not stat.S_ISREG(info.st_mode):
            raise EvidenceRefused("the screenshot is not a regular file")
        if info.st_size > MAX_SCREENSHOT_BYTES:
            raise EvidenceRefused(f"the screenshot is larger than {MAX_SCREENSHOT_BYTES} bytes")
        data = f.read(MAX_SCREENSHOT_BYTES + 1)
    if not data.startswith(PNG_SIGNATURE) or len(data) > MAX_SCREENSHOT_BYTES:
        raise EvidenceRefused("the file is not a PNG image")
    return data
