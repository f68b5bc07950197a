"""Versioned weight sync from the trainer to a vLLM server, over its dev-mode HTTP endpoints.

    save safetensors (shared memory) -> POST /pause (drain) -> POST /collective_rpc reload_weights
    -> POST /reset_prefix_cache -> verify checksums -> POST /update_weight_version -> POST /resume

Why this route: editing parameters in the server has no effect on CPU (oneDNN keeps its own packed
copies), sleep/wake_up are no-ops on CPU and the NCCL/IPC transfer engines are GPU-only; the
worker's `reload_weights` runs vLLM's own loader (fusing q/k/v, gate/up) over a checkpoint
directory and re-packs the oneDNN copies. Pausing in drain mode lets requests the server already
admitted finish on the old weights (they are stamped with the old version, client.py); the prefix
cache is reset because its keys/values came from the old weights.

Checking that a sync landed: the server's reported version must equal the pushed one, and the
server's per-tensor checksums (`/weight_checker`) must change when the pushed weights changed, and
must come back bit-identical when weights pushed before are pushed again (a restore).
Failures are reported in the PushResult and fed to the stale-weights alarm (alarm.py);
the server is always resumed.
"""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from forgerl.errors import EngineError
from forgerl.weights.alarm import StaleWeightsAlarm
from forgerl.weights.base import PushResult, default_shared_dir

log = logging.getLogger(__name__)


def state_digest(state_dict: Mapping[str, Any]) -> str:
    """A digest of the tensors' names, dtypes, shapes and bytes (what the trainer pushed)."""
    h = hashlib.blake2b(digest_size=16)
    for name in sorted(state_dict):
        t = state_dict[name].detach().contiguous().cpu()
        h.update(f"{name}|{t.dtype}|{tuple(t.shape)}|".encode())
        h.update(t.view(-1).view(__import__("torch").uint8).numpy().tobytes() if t.numel() else b"")
    return h.hexdigest()


def _combine(checksums: Mapping[str, Any]) -> str:
    h = hashlib.blake2b(digest_size=16)
    for name in sorted(checksums):
        h.update(f"{name}={checksums[name]};".encode())
    return h.hexdigest()


class VLLMWeightPusher:
    """Pushes weights with a version to a vLLM server started with VLLM_SERVER_DEV_MODE=1.

    `dtype`: what the tensors are saved as (the server's dtype, so the loader copies, never casts
    twice). `verify`: check the sync landed (version + checksums; costs one checksum pass on the
    server). Keeps the newest pushed directory so a restarted server can be brought back to it
    (`restore`).
    """

    def __init__(self, base_url: str, *, shared_dir: str | os.PathLike[str] | None = None, dtype: str = "bfloat16",
                 drain_timeout_s: float = 120.0, timeout_s: float = 600.0, verify: bool = True,
                 alarm: StaleWeightsAlarm | None = None, transport: Any = None) -> None:
        import httpx

        self.base_url = base_url.rstrip("/")
        self.shared_dir = Path(shared_dir) if shared_dir is not None else default_shared_dir().with_name(
            default_shared_dir().name + "-vllm")
        self.shared_dir.mkdir(parents=True, exist_ok=True)
        self.dtype = dtype
        self.drain_timeout_s = drain_timeout_s
        self.verify = verify
        self.alarm = alarm if alarm is not None else StaleWeightsAlarm()
        self._http = httpx.Client(base_url=self.base_url, timeout=timeout_s, transport=transport)
        self.current: tuple[int, Path] | None = None  # (version, dir) the server holds
        self._checksum_by_digest: dict[str, str] = {}
        self._last_checksum: str | None = None
        self._last_digest: str | None = None
        # names, shapes and dtypes of the server's weights (meta tensors), and the names allowed to
        # hold non-finite values: a push is checked against them before anything reaches the server
        self.schema: dict[str, Any] | None = None
        self._non_finite_ok: set[str] = set()

    # ------------------------------------------------------------------ public
    def baseline(self, digest: str | None = None, weights: Mapping[str, Any] | None = None) -> str | None:
        """Record the server's checksum of the weights it started with (under `digest`, the trainer's
        digest of those weights, when known), so a later push of the same weights must match it.
        `weights` (those same weights) fixes the names, shapes and dtypes every later push must have."""
        if weights is not None:
            self.remember_schema(weights)
        checksum = self._server_checksum()
        self._last_checksum, self._last_digest = checksum, digest
        if digest is not None and checksum is not None:
            self._checksum_by_digest[digest] = checksum
        return checksum

    def push(self, state_dict: Mapping[str, Any], version: int) -> PushResult:
        """Save, pause, reload, reset the prefix cache, set the version, resume, verify. Never raises
        for a failed push (the alarm does the shouting) except StaleWeightsError from the alarm."""
        import httpx

        t0 = time.perf_counter()
        refusal = self.refusal(state_dict)
        if refusal is not None:  # vLLM's loader copies tensor by tensor: a bad one would land half a push
            result = PushResult(version=version, ok=False, engine_version=self.engine_version(), error=refusal)
            log.error("weight push of version %d to vLLM refused before sending: %s", version, refusal)
            self.alarm.check(version, result.engine_version)
            return result
        target = self.shared_dir / f"v{version:08d}"
        digest = state_digest(state_dict) if self.verify else None
        size = self._save(state_dict, target)
        t1 = time.perf_counter()
        result = PushResult(version=version, ok=False, engine_version=None, bytes=size, save_s=t1 - t0)
        server: dict[str, Any] = {}
        try:
            server.update(self._apply(target, version, digest))
            result.request_s = time.perf_counter() - t1
            result.engine_version = self.engine_version()
            if result.engine_version != version:
                raise EngineError(f"the server reports version {result.engine_version} after pushing {version}")
            result.ok = True
        except (httpx.HTTPError, EngineError, ValueError) as exc:
            result.error = f"{type(exc).__name__}: {exc}"
            if result.engine_version is None:
                result.engine_version = self.engine_version()
        result.server = server
        result.total_s = time.perf_counter() - t0
        if result.ok:
            if self.schema is None:
                self.remember_schema(state_dict)
            old, self.current = self.current, (version, target)
            if old is not None and old[1] != target:
                shutil.rmtree(old[1], ignore_errors=True)
        else:
            if self.current is None or self.current[1] != target:
                shutil.rmtree(target, ignore_errors=True)
            log.error("weight push of version %d to vLLM failed: %s", version, result.error)
        self.alarm.check(version, result.engine_version)
        return result

    def remember_schema(self, weights: Mapping[str, Any]) -> None:
        """Take `weights` (the server's own) as the reference every later push is checked against."""
        import torch

        self.schema = {k: torch.empty(tuple(v.shape), dtype=v.dtype, device="meta") for k, v in weights.items()}
        self._non_finite_ok = {k for k, v in weights.items()
                               if (v.is_floating_point() or v.is_complex()) and not bool(torch.isfinite(v).all())}

    def refusal(self, state_dict: Mapping[str, Any]) -> str | None:
        """Why `state_dict` must not be pushed (unknown name, wrong shape or dtype kind, NaN/Inf),
        or None. Before the first push or baseline only finiteness can be checked."""
        import torch

        from forgerl.weights.check import check_weight_push  # torch: kept out of `forgerl --help`

        reference = self.schema
        if reference is None:
            reference = {k: torch.empty(tuple(v.shape), dtype=v.dtype, device="meta") if isinstance(v, torch.Tensor)
                         else v for k, v in state_dict.items()}
        try:
            check_weight_push(state_dict, reference, may_be_non_finite=self._non_finite_ok.__contains__)
        except EngineError as exc:
            return str(exc)
        return None

    def restore(self, _server: Any = None) -> None:
        """Load the newest pushed weights and version again (after a server restart)."""
        if self.current is None:
            return
        version, path = self.current
        self._apply(path, version, self._last_digest)
        if self.engine_version() != version:
            raise EngineError(f"restoring version {version} after a restart did not land")
        log.warning("restarted vLLM server brought back to policy version %d", version)

    def engine_version(self) -> int | None:
        """The version the server reports (GET /weight_info), or None when unreachable."""
        import httpx

        try:
            resp = self._http.get("/weight_info")
            if resp.status_code != 200:
                return None
            value = resp.json().get("weight_version")
            return int(value) if value is not None else None
        except (httpx.HTTPError, ValueError, TypeError):
            return None

    def close(self) -> None:
        self._http.close()
        shutil.rmtree(self.shared_dir, ignore_errors=True)

    # ------------------------------------------------------------------ internals
    def _save(self, state_dict: Mapping[str, Any], target: Path) -> int:
        import torch
        from safetensors.torch import save_file

        dtype = getattr(torch, self.dtype)
        tmp = target.with_name(target.name + ".tmp")
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
        tensors = {k: (v.detach().to(dtype) if v.is_floating_point() else v.detach()).contiguous().cpu()
                   for k, v in state_dict.items()}
        save_file(tensors, str(tmp / "model.safetensors"), metadata={"format": "pt"})
        shutil.rmtree(target, ignore_errors=True)
        os.replace(tmp, target)
        return (target / "model.safetensors").stat().st_size

    def _post(self, path: str, **kwargs: Any) -> Any:
        resp = self._http.post(path, **kwargs)
        if resp.status_code >= 400:
            raise EngineError(f"vLLM {path} answered HTTP {resp.status_code}: {resp.text[:300]} "
                              "(is the server started with VLLM_SERVER_DEV_MODE=1?)")
        try:
            return resp.json()
        except ValueError:
            return resp.text

    def _apply(self, path: Path, version: int, digest: str | None = None) -> dict[str, float]:
        """Pause (drain), reload, reset the prefix cache, verify (while still paused, so the server
        never claims a version whose weights did not land), set the version, resume."""
        times: dict[str, float] = {}
        t = time.perf_counter()
        # drain: admitted requests finish on the old weights (vLLM's default mode aborts them)
        self._post("/pause", params={"mode": "wait"}, timeout=self.drain_timeout_s)
        times["pause_s"] = time.perf_counter() - t
        try:
            t = time.perf_counter()
            self._post("/collective_rpc", json={"method": "reload_weights", "kwargs": {"weights_path": str(path)}})
            times["reload_s"] = time.perf_counter() - t
            t = time.perf_counter()
            self._post("/reset_prefix_cache")
            times["reset_s"] = time.perf_counter() - t
            if self.verify:
                t = time.perf_counter()
                self._verify(digest)
                times["verify_s"] = time.perf_counter() - t
            self._post("/update_weight_version", json={"new_version": str(version)})
        finally:
            t = time.perf_counter()
            self._post("/resume")
            times["resume_s"] = time.perf_counter() - t
        return times

    def _server_checksum(self) -> str | None:
        import httpx

        try:
            resp = self._http.post("/weight_checker", json={"action": "checksum"})
        except httpx.HTTPError:
            return None
        if resp.status_code != 200:
            return None
        body = resp.json()
        sums = body.get("checksums", body) if isinstance(body, dict) else body
        if isinstance(sums, list):  # one entry per worker
            sums = {str(i): s for i, s in enumerate(sums)}
        return _combine(sums) if isinstance(sums, dict) and sums else None

    def _verify(self, digest: str | None) -> None:
        checksum = self._server_checksum()
        if checksum is None:
            raise EngineError("could not read the server's weight checksums (/weight_checker)")
        if digest is not None:
            known = self._checksum_by_digest.get(digest)
            if known is not None and known != checksum:
                raise EngineError("the server's weights differ from the last time these exact weights were pushed: "
                                  "the reload did not land (or was not bit-exact)")
            if known is None and self._last_checksum is not None and digest != self._last_digest \
                    and checksum == self._last_checksum:
                raise EngineError("new weights were pushed but the server's checksums did not change: the reload did not land")
            self._checksum_by_digest[digest] = checksum
        self._last_checksum, self._last_digest = checksum, digest
