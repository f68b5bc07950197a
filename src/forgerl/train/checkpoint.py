"""Training checkpoints with integrity: written atomically with a sha256 per file, verified before
they are loaded, and a resume that falls back to the previous good checkpoint.

Why: a checkpoint is read long after it was written (a resume days later, a copy on another
machine). A file cut short by a full disk, or damaged in a copy, otherwise either fails deep inside
the loader with a traceback that does not name it, or — 64 KB of 0xFF inside a tensor's data are
NaN weights to safetensors — loads silently and fails steps later as non-finite logprobs.

A checkpoint directory `run_dir/checkpoints/step_NNNNNN/` holds `model.safetensors` (weights incl.
buffers such as the MoE selection bias), `optimizer.pt`, `rng.pt`, `state.json` (step, policy
version) and `checksums.json` (sha256 and size of each of them). It is written into `step_N.tmp`,
every file fsynced, then renamed into place and the parent fsynced, so a directory under its final
name is complete; the store records it only after that. Loading verifies every file against
`checksums.json` first; a directory without one (written by an older forgerl) loads with a
warning, still guarded by the loaders' own checks and a finite-weights check. Any failure is a
`CheckpointError`: one line naming the file and what is wrong with it.

On resume (`restore_latest`) a checkpoint that fails is skipped and the previous one is tried, with
a warning naming both: fallback is automatic, because the run then redoes the steps after the
checkpoint it used, and exact resume (store `supersede_from`) keeps each step once.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import torch

from forgerl.errors import ForgerlError

log = logging.getLogger(__name__)

CHECKSUMS_FILENAME = "checksums.json"
MODEL_FILENAME = "model.safetensors"
OPTIMIZER_FILENAME = "optimizer.pt"
RNG_FILENAME = "rng.pt"
STATE_FILENAME = "state.json"
_CHECKSUM_FORMAT = 1
T = TypeVar("T")


class CheckpointError(ForgerlError):
    """A checkpoint that cannot be trusted or read: missing, truncated, corrupt, inconsistent."""


def checkpoint_dir(run_dir: Path, step: int) -> Path:
    return Path(run_dir) / "checkpoints" / f"step_{step:06d}"


# -- saving -------------------------------------------------------------------------------------

def write_checkpoint(final: Path, policy: torch.nn.Module, optimizer: torch.optim.Optimizer,
                     state: dict[str, Any]) -> Path:
    """Write a complete checkpoint at `final` (replacing one already there), atomically."""
    from safetensors.torch import save_model

    final = Path(final)
    tmp = final.with_name(final.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    # save_model, not save_file(state_dict()): tied weights (SmolLM2's embedding = LM head) are one
    # tensor under two names, which save_file refuses; save_model stores it once, load_model re-ties
    save_model(policy, str(tmp / MODEL_FILENAME))
    torch.save(optimizer.state_dict(), tmp / OPTIMIZER_FILENAME)
    torch.save({"torch": torch.get_rng_state()}, tmp / RNG_FILENAME)
    (tmp / STATE_FILENAME).write_text(json.dumps(state))
    files = {name: _digest_and_sync(tmp / name)
             for name in (MODEL_FILENAME, OPTIMIZER_FILENAME, RNG_FILENAME, STATE_FILENAME)}
    manifest = {"format": _CHECKSUM_FORMAT, "algorithm": "sha256", "files": files}
    (tmp / CHECKSUMS_FILENAME).write_text(json.dumps(manifest, indent=1, sort_keys=True))
    _digest_and_sync(tmp / CHECKSUMS_FILENAME)
    _sync_dir(tmp)
    shutil.rmtree(final, ignore_errors=True)
    os.replace(tmp, final)
    _sync_dir(final.parent)
    return final


def _digest_and_sync(path: Path) -> dict[str, Any]:
    """sha256 and size of what is on disk (read back, so the checksum is of the bytes stored), fsynced."""
    with open(path, "rb") as f:
        digest = hashlib.file_digest(f, "sha256").hexdigest()
        os.fsync(f.fileno())
    return {"sha256": digest, "bytes": path.stat().st_size}


def _sync_dir(path: Path) -> None:
    """fsync a directory, so a rename into it survives a power cut (POSIX; elsewhere a no-op)."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


# -- verifying and loading ----------------------------------------------------------------------

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
            if Path(name).name != name or not isinstance(entry.get("sha256"), str) or not isinstance(entry.get("bytes"), int):
                raise ValueError(f"bad entry {name!r}")
    except (OSError, UnicodeDecodeError, ValueError, KeyError, TypeError, AttributeError) as exc:
        raise CheckpointError(f"checkpoint file {path} is corrupt ({_one_line(exc)}): the checkpoint cannot be "
                              "verified") from None
    return files


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


def load_checkpoint(directory: Path, policy: torch.nn.Module, optimizer: torch.optim.Optimizer) -> dict[str, Any]:
    """Verify, then load weights, optimizer state and RNG from `directory`; returns its state.json
    (step, version). Any problem is a one-line CheckpointError naming the file."""
    from safetensors.torch import load_model

    directory = Path(directory)
    verify_checkpoint(directory)
    state = _read(directory / STATE_FILENAME, lambda p: json.loads(p.read_text(encoding="utf-8")))
    if not (isinstance(state, dict) and isinstance(state.get("step"), int) and isinstance(state.get("version"), int)):
        raise CheckpointError(f"checkpoint file {directory / STATE_FILENAME} does not hold a step and a policy "
                              f"version (got {str(state)[:80]})")
    _read(directory / MODEL_FILENAME, lambda p: load_model(policy, str(p)))
    _check_finite(policy, directory / MODEL_FILENAME)
    optimizer_state = _read(directory / OPTIMIZER_FILENAME, lambda p: torch.load(p, weights_only=True))
    _check_finite_state(optimizer_state, directory / OPTIMIZER_FILENAME)
    _read(directory / OPTIMIZER_FILENAME, lambda _: optimizer.load_state_dict(optimizer_state))
    rng = _read(directory / RNG_FILENAME, lambda p: torch.load(p, weights_only=True)["torch"])
    _read(directory / RNG_FILENAME, lambda _: torch.set_rng_state(rng))
    return state


def _read(path: Path, load: Callable[[Path], T]) -> T:
    """Run one loader on one checkpoint file, turning whatever it raises into a CheckpointError
    that names the file (the loaders' own errors do not, and run to many lines)."""
    if not path.is_file():
        raise CheckpointError(f"checkpoint file {path} is missing")
    try:
        return load(path)
    except Exception as exc:  # noqa: BLE001 — safetensors, pickle, zip and shape errors alike
        raise CheckpointError(f"checkpoint file {path} cannot be loaded: {type(exc).__name__}: {_one_line(exc)}") from None


def _check_finite(policy: torch.nn.Module, path: Path) -> None:
    """NaN/inf weights: what damaged bytes read as (0xFF...) when no checksum caught them, or a run
    that diverged before it was saved; either way no step can be trained from them."""
    for name, param in policy.named_parameters():
        if param.is_floating_point() and not bool(torch.isfinite(param).all()):
            raise CheckpointError(f"checkpoint file {path} holds non-finite weights in {name}: the file is damaged "
                                  "or the run had diverged when it was saved")


def _check_finite_state(optimizer_state: Any, path: Path) -> None:
    """The optimizer's moments are as damaged as weights would be by the same bytes."""
    per_param = optimizer_state.get("state", {}) if isinstance(optimizer_state, dict) else {}
    for key, values in per_param.items():
        for name, value in (values.items() if isinstance(values, dict) else ()):
            if isinstance(value, torch.Tensor) and value.is_floating_point() and not bool(torch.isfinite(value).all()):
                raise CheckpointError(f"checkpoint file {path} holds non-finite optimizer state ({name} of "
                                      f"parameter {key}): the file is damaged or the run had diverged")


def _one_line(exc: BaseException, limit: int = 200) -> str:
    text = " ".join(str(exc).split())
    return text if len(text) <= limit else text[:limit] + "..."


# -- resuming -----------------------------------------------------------------------------------

def restore_latest(run_dir: Path, records: list[Any], policy: torch.nn.Module,
                   optimizer: torch.optim.Optimizer) -> tuple[Any, dict[str, Any]] | None:
    """Load the newest checkpoint among `records` (the store's CheckpointRecords) that verifies
    and loads; (record, state) or None when there are none. A failing checkpoint is skipped with a
    warning and the previous one tried; if none works, CheckpointError names the newest failure.

    Checkpoints are looked up under `run_dir/checkpoints/` by their directory name whatever path
    the store recorded, so a copied or moved run directory resumes from its own files."""
    failures: list[str] = []
    for record in sorted(records, key=lambda r: (r.step, r.id), reverse=True):
        directory = Path(run_dir) / "checkpoints" / Path(record.path).name
        try:
            state = load_checkpoint(directory, policy, optimizer)
            if state["step"] != record.step:
                raise CheckpointError(f"checkpoint file {directory / STATE_FILENAME} holds step {state['step']} but the "
                                      f"store records this checkpoint at step {record.step}: the run directory is "
                                      "inconsistent (mixed copies?)")
        except CheckpointError as exc:
            failures.append(str(exc))
            log.warning("%s", exc)
            continue
        if failures:
            log.warning("resuming from the previous good checkpoint %s (step %d); %d later checkpoint(s) failed "
                        "verification and their steps are redone", directory, record.step, len(failures))
        return record, state
    if failures:
        raise CheckpointError(f"{failures[0]}; no earlier checkpoint of this run loads either"
                              + (f" ({len(failures) - 1} more failed)" if len(failures) > 1 else "")
                              + ": restore the checkpoint files from a backup, or start a new run with another --run-dir")
    return None


__all__ = ["CHECKSUMS_FILENAME", "CheckpointError", "checkpoint_dir", "load_checkpoint", "restore_latest",
           "verify_checkpoint", "write_checkpoint"]
