"""Reading training checkpoints as models: the checkpoint layout's names, verification of every
file against its checksums.json, and `--model` run references (`RUN`, `RUN:best`, `RUN:step_N`).

Why here and not in train/: every command that loads a model resolves run references
(model/loading.py), and the trainer builds on model/; the writing side (atomic saves, optimizer
and RNG state, resume) stays in forgerl/train/checkpoint.py, which imports these names.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
from pathlib import Path
from typing import Any

from forgerl.errors import ForgerlError
from forgerl.store import TrajectoryStore

log = logging.getLogger(__name__)

CHECKSUMS_FILENAME = "checksums.json"
STATE_FILENAME = "state.json"
BEST_POINTER_FILENAME = "best.json"
_STEP_DIR = re.compile(r"step_(\d{6,})")


class CheckpointError(ForgerlError):
    """A checkpoint that cannot be trusted or read: missing, truncated, corrupt, inconsistent."""


def checkpoint_dir(run_dir: Path, step: int) -> Path:
    return Path(run_dir) / "checkpoints" / f"step_{step:06d}"


def verify_checkpoint(directory: Path) -> bool:
    """Check every file of a checkpoint against its checksums.json. True: verified; False: the
    directory has no checksums.json (an older forgerl wrote it), with a warning. Raises
    CheckpointError naming the first file that is missing, truncated or corrupt."""
    directory = Path(directory)
    if not directory.is_dir():
        raise CheckpointError(f"checkpoint directory {directory} is missing: it was deleted, or the run directory "
                              "was copied without it (copy the whole run directory)")
    manifest_path = directory / CHECKSUMS_FILENAME
    if not manifest_path.exists():
        log.warning("checkpoint %s has no %s (written by an older forgerl): loading it unverified",
                    directory, CHECKSUMS_FILENAME)
        return False
    files = _read_manifest(manifest_path)
    for name, expected in files.items():
        _verify_file(directory / name, expected)
    return True


def _read_manifest(path: Path) -> dict[str, dict[str, Any]]:
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
        files = manifest["files"]
        if manifest.get("algorithm") != "sha256" or not isinstance(files, dict) or not files:
            raise ValueError("not a sha256 manifest with files")
        for name, entry in files.items():
            if not _safe_relative(name) or not isinstance(entry.get("sha256"), str) or not isinstance(entry.get("bytes"), int):
                raise ValueError(f"bad entry {name!r}")
    except (OSError, UnicodeDecodeError, ValueError, KeyError, TypeError, AttributeError) as exc:
        raise CheckpointError(f"checkpoint file {path} is corrupt ({_one_line(exc)}): the checkpoint cannot be "
                              "verified") from None
    return files


def _safe_relative(name: Any) -> bool:
    """A manifest name that stays inside the checkpoint: relative, no `..`, no empty parts."""
    if not isinstance(name, str) or not name or name.startswith("/") or "\\" in name:
        return False
    return all(part not in ("", ".", "..") for part in name.split("/"))


def _verify_file(path: Path, expected: dict[str, Any]) -> None:
    if not path.is_file():
        raise CheckpointError(f"checkpoint file {path} is missing (its checksums.json lists it)")
    size = path.stat().st_size
    if size != expected["bytes"]:
        what = "truncated" if size < expected["bytes"] else "longer than it was written"
        raise CheckpointError(f"checkpoint file {path} is {what}: {size} bytes on disk, {expected['bytes']} "
                              "written at save")
    with open(path, "rb") as f:
        actual = hashlib.file_digest(f, "sha256").hexdigest()
    if actual != expected["sha256"]:
        raise CheckpointError(f"checkpoint file {path} is corrupt: its sha256 {actual[:16]}... differs from "
                              f"{expected['sha256'][:16]}... recorded at save (same size: bytes were changed)")


def _one_line(exc: BaseException, limit: int = 200) -> str:
    text = " ".join(str(exc).split())
    return text if len(text) <= limit else text[:limit] + "..."


def step_dirs(run_dir: Path) -> list[tuple[int, Path]]:
    """The complete checkpoint directories of a run, by step (a `.tmp` one was never finished)."""
    root = Path(run_dir) / "checkpoints"
    found = []
    for path in root.iterdir() if root.is_dir() else ():
        match = _STEP_DIR.fullmatch(path.name)
        if match and path.is_dir():
            found.append((int(match.group(1)), path))
    return sorted(found)


def is_run_dir(path: Path) -> bool:
    return (Path(path) / "store.sqlite").is_file() or (Path(path) / "checkpoints").is_dir()


def read_best_pointer(run_dir: Path) -> dict[str, Any] | None:
    """The best checkpoint's record, or None when the run has none; a damaged pointer (it is read
    from disk, so it is untrusted) is a CheckpointError."""
    path = Path(run_dir) / "checkpoints" / BEST_POINTER_FILENAME
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        name = data["checkpoint"]
        if not (isinstance(name, str) and _STEP_DIR.fullmatch(name) and isinstance(data.get("step"), int)):
            raise ValueError("no checkpoint name and step")
    except (OSError, UnicodeDecodeError, ValueError, KeyError, TypeError) as exc:
        raise CheckpointError(f"{path} is corrupt ({_one_line(exc)}): delete it; the next held-out evaluation "
                              "of the run (or `forgerl train --resume`) writes it again") from None
    return data


_REFERENCE = re.compile(r"(?P<base>.+):(?P<which>best|latest|step_?(?P<step>\d+))")


def resolve_model_reference(name: str) -> Path | None:
    """The checkpoint directory a `--model` value names, verified: `RUN` (the latest good
    checkpoint), `RUN:best`, `RUN:latest`, `RUN:step_N`, or a checkpoint directory itself. None
    when `name` is none of these (a built-in model or a plain Hugging Face directory)."""
    match = _REFERENCE.fullmatch(name)
    if match and Path(match["base"]).is_dir():
        run_dir, which = Path(match["base"]), match["which"]
        if not is_run_dir(run_dir):
            raise CheckpointError(f"--model {name}: {run_dir} is not a forgerl run directory (no checkpoints/ or "
                                  "store.sqlite); `:best` and `:step_N` name a checkpoint of a training run")
    else:
        path = Path(name)
        if not path.is_dir():
            return None
        if (path / CHECKSUMS_FILENAME).is_file() or (path / STATE_FILENAME).is_file():
            verify_checkpoint(path)
            return _require_model_files(path)
        if not is_run_dir(path):
            return None
        run_dir, which = path, "latest"
    if which == "best":
        best = read_best_pointer(run_dir)
        if best is None:
            raise CheckpointError(f"--model {name}: the run in {run_dir} has no best checkpoint yet (none was "
                                  "written at a step with a held-out evaluation); use RUN or RUN:step_N")
        directory = run_dir / "checkpoints" / best["checkpoint"]
        verify_checkpoint(directory)
        return _require_model_files(directory)
    if which.startswith("step"):
        directory = checkpoint_dir(run_dir, int(match["step"]))  # type: ignore[index]
        if not directory.is_dir():
            steps = ", ".join(str(s) for s, _ in step_dirs(run_dir)) or "none"
            raise CheckpointError(f"--model {name}: the run in {run_dir} has no checkpoint at that step "
                                  f"(checkpointed steps: {steps})")
        verify_checkpoint(directory)
        return _require_model_files(directory)
    return _latest_good(run_dir, name)


def _latest_good(run_dir: Path, name: str) -> Path:
    """The newest checkpoint that verifies, falling back past damaged ones with a warning;
    checkpoints a resume superseded are skipped (the store knows them)."""
    candidates = [path for _, path in reversed(step_dirs(run_dir))]
    live = _live_checkpoint_names(run_dir)
    if live is not None:
        candidates = [path for path in candidates if path.name in live]
    failures: list[str] = []
    for directory in candidates:
        try:
            verify_checkpoint(directory)
        except CheckpointError as exc:
            failures.append(str(exc))
            log.warning("%s; trying the previous checkpoint", exc)
            continue
        return _require_model_files(directory)
    if failures:
        raise CheckpointError(f"--model {name}: no checkpoint of the run verifies ({failures[0]})")
    raise CheckpointError(f"--model {name}: the run in {run_dir} has no checkpoint yet (it is written every "
                          "checkpoint_every steps and at the end of the run)")


def _live_checkpoint_names(run_dir: Path) -> set[str] | None:
    """Directory names of the checkpoints the run's store holds (not superseded); None without a store."""
    if not (Path(run_dir) / "store.sqlite").is_file():
        return None

    with TrajectoryStore(run_dir) as store:
        runs = store.runs()
        if not runs:
            return set()
        return {Path(record.path).name for record in store.checkpoints(runs[-1].id)}


def _require_model_files(directory: Path) -> Path:
    if not (directory / "config.json").is_file():
        raise CheckpointError(f"checkpoint {directory} has no config.json (written by a forgerl before model "
                              "checkpoints): resume the run once with `forgerl train --resume` to write a new one, "
                              "or copy config.json and the tokenizer files of its base model into it")
    return directory


__all__ = ["BEST_POINTER_FILENAME", "CHECKSUMS_FILENAME", "STATE_FILENAME", "CheckpointError", "checkpoint_dir",
           "is_run_dir", "read_best_pointer", "resolve_model_reference", "step_dirs", "verify_checkpoint"]
