"""Training checkpoints with integrity: written atomically with a sha256 per file, verified before
they are loaded, and a resume that falls back to the previous good checkpoint.

Why: a checkpoint is read long after it was written (a resume days later, a copy on another
machine). A file cut short by a full disk, or damaged in a copy, otherwise either fails deep inside
the loader with a traceback that does not name it, or — 64 KB of 0xFF inside a tensor's data are
NaN weights to safetensors — loads silently and fails steps later as non-finite logprobs.

A checkpoint directory `run_dir/checkpoints/step_NNNNNN/` holds `model.safetensors` (weights incl.
buffers such as the MoE selection bias), `mtp.safetensors` when the policy has MTP heads
(model/mtp.py; kept out of model.safetensors so transformers and vLLM load it as is),
`optimizer.pt`, `rng.pt`, `state.json` (step, policy version) and `checksums.json` (sha256 and
size of each of them). It is written into `step_N.tmp`,
every file fsynced, then renamed into place and the parent fsynced, so a directory under its final
name is complete; the store records it only after that. Loading verifies every file against
`checksums.json` first; a directory without one (written by an older forgerl) loads with a
warning, still guarded by the loaders' own checks and a finite-weights check. Any failure is a
`CheckpointError`: one line naming the file and what is wrong with it.

On resume (`restore_latest`) a checkpoint that fails is skipped and the previous one is tried, with
a warning naming both: fallback is automatic, because the run then redoes the steps after the
checkpoint it used, and exact resume (store `supersede_from`) keeps each step once.

A checkpoint is also a Hugging Face model directory (issue 27): `config.json`, `generation_config.json`
and the tokenizer files sit next to the weights, inside the same atomic write and checksums, so
`--model RUN`, `RUN:best` or `RUN:step_N` (resolve_model_reference) and transformers' `from_pretrained`
load it. For a LoRA run `model.safetensors` holds the merged weights under the base model's names,
`adapter/` the peft adapter, and `lora_policy.safetensors` the adapter-wrapped policy the trainer
resumes from (exact, where un-merging would not be). `checkpoints/best.json` names the checkpoint
with the best held-out reward; it is replaced atomically, and no checkpoint is ever pruned.

Sharded runs (train/sharded.py) write the same directory with `dcp/` in place of the trainer's
files: the model and optimizer shards as torch.distributed.checkpoint wrote them (every rank its
own files, so the run directory must be on storage all nodes share), checksummed like the rest.
`model.safetensors` then holds the full weights rank 0 gathered (LoRA merged, no `adapter/`), so
engines, `RUN:best` and `forgerl eval` load it as they load any checkpoint. DCP reshards on load: a
sharded checkpoint resumes on another world size, one process included; a one-process checkpoint
does not resume sharded (a CheckpointError says to resume it with one process).
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

from forgerl.model.checkpoints import (
    BEST_POINTER_FILENAME,
    CHECKSUMS_FILENAME,
    STATE_FILENAME,
    CheckpointError,
    _one_line,
    checkpoint_dir,
    is_run_dir,
    read_best_pointer,
    resolve_model_reference,
    step_dirs,
    verify_checkpoint,
)
from forgerl.model.lora import causal_lm, inference_weights, is_peft
from forgerl.model.mtp import MTP_FILENAME, detached_mtp, save_mtp, split_state
from forgerl.train.sharded import load_training_state

log = logging.getLogger(__name__)

MODEL_FILENAME = "model.safetensors"
OPTIMIZER_FILENAME = "optimizer.pt"
RNG_FILENAME = "rng.pt"
DCP_DIRNAME = "dcp"
LORA_POLICY_FILENAME = "lora_policy.safetensors"
ADAPTER_DIRNAME = "adapter"
_SAFETENSORS_METADATA = {"format": "pt"}  # what transformers and other safetensors readers expect
_CHECKSUM_FORMAT = 1
T = TypeVar("T")


# -- saving -------------------------------------------------------------------------------------

def write_checkpoint(final: Path, policy: torch.nn.Module, optimizer: torch.optim.Optimizer,
                     state: dict[str, Any], *, tokenizer: Any = None) -> Path:
    """Write a complete checkpoint at `final` (replacing one already there), atomically: the
    trainer's state and, when the policy is a transformers model, a loadable Hugging Face model
    directory (config, generation config, tokenizer; LoRA merged with the adapter kept beside it)."""
    final = Path(final)
    tmp = final.with_name(final.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    _write_policy(tmp, policy)
    torch.save(optimizer.state_dict(), tmp / OPTIMIZER_FILENAME)
    torch.save({"torch": torch.get_rng_state()}, tmp / RNG_FILENAME)
    (tmp / STATE_FILENAME).write_text(json.dumps(state))
    if tokenizer is not None:
        tokenizer.save_pretrained(tmp)
    return _seal(tmp, final)


def write_sharded_checkpoint(final: Path, weights: Callable[[], dict[str, torch.Tensor]], policy: torch.nn.Module,
                             training_state: Callable[[Path], None], state: dict[str, Any], *,
                             tokenizer: Any = None) -> Path:
    """Rank 0's part of a sharded checkpoint, as atomic as `write_checkpoint`: every rank writes
    its shards into `dcp/` of the temporary directory (`training_state`, a collective), then rank 0
    adds the full weights (`weights`, a collective too), config, tokenizer and state, checksums
    every file (shards included) and renames the directory into place."""
    final = Path(final)
    tmp = final.with_name(final.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    training_state(tmp / DCP_DIRNAME)
    from safetensors.torch import save_file

    full = weights()
    model = causal_lm(policy)
    config = getattr(model, "config", None)
    if config is not None and getattr(config, "tie_word_embeddings", False):
        full = _drop_tied_copies(model, full)
    full, mtp = split_state(full)  # the MTP heads go to mtp.safetensors, as in a one-process checkpoint
    save_file({name: tensor.contiguous() for name, tensor in full.items()}, str(tmp / MODEL_FILENAME),
              metadata=_SAFETENSORS_METADATA)
    if mtp:
        save_file({name: tensor.contiguous() for name, tensor in mtp.items()}, str(tmp / MTP_FILENAME),
                  metadata=_SAFETENSORS_METADATA)
    _write_model_config(tmp, policy)
    torch.save({"torch": torch.get_rng_state()}, tmp / RNG_FILENAME)
    (tmp / STATE_FILENAME).write_text(json.dumps(state))
    if tokenizer is not None:
        tokenizer.save_pretrained(tmp)
    return _seal(tmp, final)


def _seal(tmp: Path, final: Path) -> Path:
    """Checksum and fsync every file of `tmp`, then rename it to `final` (replacing one there)."""
    for path in tmp.rglob("*"):
        if path.is_file():
            normal_file_mode(path)
    files = {name: _digest_and_sync(tmp / name) for name in _payload_files(tmp)}
    manifest = {"format": _CHECKSUM_FORMAT, "algorithm": "sha256", "files": files}
    (tmp / CHECKSUMS_FILENAME).write_text(json.dumps(manifest, indent=1, sort_keys=True))
    _digest_and_sync(tmp / CHECKSUMS_FILENAME)
    for sub in [tmp, *(p for p in tmp.rglob("*") if p.is_dir())]:
        _sync_dir(sub)
    shutil.rmtree(final, ignore_errors=True)
    os.replace(tmp, final)
    _sync_dir(final.parent)
    return final


def _write_policy(directory: Path, policy: torch.nn.Module) -> None:
    """The weights (and for a transformers model its config and generation config). MTP heads
    go to their own mtp.safetensors, so model.safetensors loads in transformers and vLLM as is."""
    from safetensors.torch import save_file, save_model

    # save_model, not save_file(state_dict()): tied weights (SmolLM2's embedding = LM head) are one
    # tensor under two names, which save_file refuses; save_model stores it once, load_model re-ties
    if is_peft(policy):  # the adapter-wrapped policy (heads included) for resume; the rest merged
        save_model(policy, str(directory / LORA_POLICY_FILENAME), metadata=_SAFETENSORS_METADATA)
        merged, mtp = split_state({name: tensor.contiguous() for name, tensor in inference_weights(policy).items()})
        save_file(_drop_tied_copies(causal_lm(policy), merged), str(directory / MODEL_FILENAME),
                  metadata=_SAFETENSORS_METADATA)
        if mtp:  # LoRA also wraps the heads' projections: saved merged, as load_policy attaches them
            save_file(mtp, str(directory / MTP_FILENAME), metadata=_SAFETENSORS_METADATA)
        policy.save_pretrained(str(directory / ADAPTER_DIRNAME))
    else:
        with detached_mtp(policy):
            save_model(policy, str(directory / MODEL_FILENAME), metadata=_SAFETENSORS_METADATA)
        save_mtp(policy, directory)
    _write_model_config(directory, policy)


def _write_model_config(directory: Path, policy: torch.nn.Module) -> None:
    """A transformers model's config and generation config, as from_pretrained expects them."""
    model = causal_lm(policy)
    config = getattr(model, "config", None)
    if config is not None and hasattr(config, "save_pretrained"):
        config.save_pretrained(directory)
        generation = getattr(model, "generation_config", None)
        if generation is not None:
            generation.save_pretrained(directory)


def normal_file_mode(path: Path) -> None:
    """rw-r--r-- less the umask: safetensors writes its files 0600, which other users of a shared
    model directory (a server, a colleague) cannot read."""
    mask = os.umask(0)
    os.umask(mask)
    os.chmod(path, 0o644 & ~mask)


def _drop_tied_copies(model: torch.nn.Module, weights: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Merged LoRA weights are clones, so tied ones (embedding = LM head) are two tensors; keep the
    first name of each tied pair as save_model would, so the file matches a plain checkpoint."""
    seen: dict[int, str] = {}
    drop: set[str] = set()
    for name, tensor in model.state_dict(keep_vars=True).items():
        clean = name.replace(".base_layer.", ".")
        key = tensor.data_ptr()
        if key in seen and seen[key] != clean:
            drop.add(clean)
        seen.setdefault(key, clean)
    return {name: tensor for name, tensor in weights.items() if name not in drop}


def _payload_files(directory: Path) -> list[str]:
    """Every file of a checkpoint but its checksums.json, as relative POSIX paths."""
    return sorted(p.relative_to(directory).as_posix() for p in directory.rglob("*")
                  if p.is_file() and p.name != CHECKSUMS_FILENAME)


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


def load_checkpoint(directory: Path, policy: torch.nn.Module, optimizer: torch.optim.Optimizer) -> dict[str, Any]:
    """Verify, then load weights, optimizer state and RNG from `directory`; returns its state.json
    (step, version). Any problem is a one-line CheckpointError naming the file."""
    from safetensors.torch import load_file, load_model

    directory = Path(directory)
    verify_checkpoint(directory)
    state = _read(directory / STATE_FILENAME, lambda p: json.loads(p.read_text(encoding="utf-8")))
    if not (isinstance(state, dict) and isinstance(state.get("step"), int) and isinstance(state.get("version"), int)):
        raise CheckpointError(f"checkpoint file {directory / STATE_FILENAME} does not hold a step and a policy "
                              f"version (got {str(state)[:80]})")
    if (directory / DCP_DIRNAME).is_dir():  # written by a sharded run: DCP reshards it for one process
        _read_dir(directory / DCP_DIRNAME, lambda p: load_training_state(p, policy, optimizer))
        _check_finite(policy, directory / DCP_DIRNAME)
    else:
        weights = _policy_weights_file(directory, policy)
        if weights.name == LORA_POLICY_FILENAME:  # the whole adapter-wrapped policy, heads included
            _read(weights, lambda p: load_model(policy, str(p)))
        else:
            with detached_mtp(policy) as heads:
                _read(weights, lambda p: load_model(policy, str(p)))
            if heads is not None:  # the trainer's policy has heads: the checkpoint must hold them
                if not (directory / MTP_FILENAME).is_file():
                    raise CheckpointError(f"checkpoint {directory} has no {MTP_FILENAME} but the policy being resumed "
                                          "has MTP heads: the run was started from a model without them",
                                          hint="resume with the model the run started from (without MTP heads: "
                                               "num_mtp_modules 0 in its config.json)")
                _read(directory / MTP_FILENAME, lambda p: heads.load_state_dict(load_file(str(p)), strict=True))
        _check_finite(policy, weights)
        optimizer_state = _read(directory / OPTIMIZER_FILENAME, lambda p: torch.load(p, weights_only=True))
        _check_finite_state(optimizer_state, directory / OPTIMIZER_FILENAME)
        _read(directory / OPTIMIZER_FILENAME, lambda _: optimizer.load_state_dict(optimizer_state))
    rng = _read(directory / RNG_FILENAME, lambda p: torch.load(p, weights_only=True)["torch"])
    _read(directory / RNG_FILENAME, lambda _: torch.set_rng_state(rng))
    return state


def _read_dir(path: Path, load: Callable[[Path], T]) -> T:
    """`_read` for a directory (a DCP checkpoint): its errors as one CheckpointError naming it."""
    try:
        return load(path)
    except Exception as exc:  # noqa: BLE001 — as in _read
        raise CheckpointError(f"checkpoint directory {path} cannot be loaded: {type(exc).__name__}: "
                              f"{_one_line(exc)}") from None


def _policy_weights_file(directory: Path, policy: torch.nn.Module) -> Path:
    """The file the trainer's policy resumes from: the adapter-wrapped policy for LoRA (older
    checkpoints kept it in model.safetensors), model.safetensors otherwise."""

    if is_peft(policy) and (directory / LORA_POLICY_FILENAME).is_file():
        return directory / LORA_POLICY_FILENAME
    return directory / MODEL_FILENAME


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


def restore_latest_sharded(run_dir: Path, records: list[Any], training_state: Callable[[Path], None]
                           ) -> tuple[Any, dict[str, Any]] | None:
    """Rank 0's part of a sharded resume: the newest checkpoint that verifies (earlier ones are
    tried with a warning, as in `restore_latest`), then every rank loads its `dcp/` (a collective,
    so a load that fails after verification fails the run: there is no fallback past it)."""
    failures: list[str] = []
    for record in sorted(records, key=lambda r: (r.step, r.id), reverse=True):
        directory = Path(run_dir) / "checkpoints" / Path(record.path).name
        if directory.is_dir() and not (directory / DCP_DIRNAME).is_dir():  # not damage: no fallback past it
            raise CheckpointError(f"checkpoint {directory} was written by a one-process run (it has no {DCP_DIRNAME}/ "
                                  "sharded state) and does not resume sharded",
                                  hint="resume it with one process (without --nproc-per-node); checkpoints of a "
                                       "sharded run resume on any number of ranks, one included")
        try:
            verify_checkpoint(directory)
            state = _read(directory / STATE_FILENAME, lambda p: json.loads(p.read_text(encoding="utf-8")))
            if state.get("step") != record.step:
                raise CheckpointError(f"checkpoint file {directory / STATE_FILENAME} holds step {state.get('step')} but "
                                      f"the store records this checkpoint at step {record.step}")
        except CheckpointError as exc:
            failures.append(str(exc))
            log.warning("%s", exc)
            continue
        training_state(directory / DCP_DIRNAME)
        return record, state
    if failures:
        raise CheckpointError(failures[0] + (f" ({len(failures) - 1} earlier checkpoint(s) failed too)"
                                             if len(failures) > 1 else ""))
    return None


# -- run directories as models ----------------------------------------------------------------


def write_best_pointer(run_dir: Path, step: int, eval_reward: float) -> Path:
    """Name the best checkpoint in `checkpoints/best.json`, replaced atomically (a file, not a
    symlink: it cannot dangle, and a copied run directory keeps it)."""
    root = Path(run_dir) / "checkpoints"
    target = root / BEST_POINTER_FILENAME
    tmp = root / (BEST_POINTER_FILENAME + ".tmp")
    tmp.write_text(json.dumps({"checkpoint": checkpoint_dir(run_dir, step).name, "step": step,
                               "eval_reward": eval_reward}, indent=1))
    _digest_and_sync(tmp)
    os.replace(tmp, target)
    _sync_dir(root)
    return target


def remove_best_pointer(run_dir: Path) -> None:
    (Path(run_dir) / "checkpoints" / BEST_POINTER_FILENAME).unlink(missing_ok=True)


__all__ = ["CHECKSUMS_FILENAME", "CheckpointError", "checkpoint_dir", "is_run_dir", "load_checkpoint",
           "normal_file_mode", "read_best_pointer", "remove_best_pointer", "resolve_model_reference", "restore_latest",
           "step_dirs", "verify_checkpoint", "write_best_pointer", "write_checkpoint"]
