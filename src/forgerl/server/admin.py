"""Weight sync across processes: the admin routes that load a new policy version into the engine.

The trainer (`forgerl.weights.http_push.WeightPusher`) writes the weights as one safetensors file
in a shared directory — `/dev/shm` by default, i.e. shared memory, so nothing touches a disk —
and posts its path and version here. The file format is safe to load from another process (no
pickle) and is memory-mapped, so the server reads it without a copy through a socket.

Versions are never mixed within a completion by default ("drain"): new requests wait at the
admission gate, requests in flight finish on the old weights, the weights are swapped, and the gate
reopens. If the in-flight requests do not finish within the drain timeout, nothing is loaded and
the push answers 503 (the trainer may retry or alarm). "immediate" swaps between two engine steps
instead; running requests then carry the oldest version that sampled any of their tokens.

Versions must increase, so a second trainer cannot silently mix its weights in (409). A trainer
that attaches to a server it did not start pushes its initial weights with `force` (they replace
whatever the server was started with); every admin answer names the server process in the
`x-forgerl-server-instance` header, so a trainer can tell that the server restarted (and lost the
pushed weights) and push the newest ones again (forgerl/weights/http_push.py `WeightPusher.restore`).
"""

from __future__ import annotations

import asyncio
import hmac
import logging
import time
import uuid
from pathlib import Path
from typing import Any, Literal

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from forgerl.server.protocol import error_body

log = logging.getLogger(__name__)

VERSION_HEADER = "x-forgerl-policy-version"
INSTANCE_HEADER = "x-forgerl-server-instance"  # changes when the server process restarts


class AdmissionGate:
    """Counts requests in flight; `drain` stops new admissions until `resume`."""

    def __init__(self) -> None:
        self.in_flight = 0
        self.paused = False
        self._cond: asyncio.Condition | None = None
        self._wakeups: set[asyncio.Task[None]] = set()  # strong refs: the loop keeps only weak ones

    def _condition(self) -> asyncio.Condition:
        if self._cond is None:  # created on the server's loop, at first use
            self._cond = asyncio.Condition()
        return self._cond

    async def enter(self) -> None:
        cond = self._condition()
        async with cond:
            await cond.wait_for(lambda: not self.paused)
            self.in_flight += 1

    def exit(self) -> None:
        self.in_flight -= 1
        if self.in_flight < 0:
            raise RuntimeError("admission gate released more often than entered")
        if self.paused:  # only a drain waits for the count
            task = asyncio.get_running_loop().create_task(self._notify())
            self._wakeups.add(task)
            task.add_done_callback(self._wakeups.discard)

    def releaser(self) -> Any:
        """A release callable that acts once, however many paths call it."""
        done = False

        def release() -> None:
            nonlocal done
            if not done:
                done = True
                self.exit()

        return release

    async def _notify(self) -> None:
        cond = self._condition()
        async with cond:
            cond.notify_all()

    async def drain(self, timeout_s: float) -> bool:
        """Stop admitting; True once nothing is in flight, False (still paused) on timeout."""
        cond = self._condition()
        async with cond:
            self.paused = True
            try:
                await asyncio.wait_for(cond.wait_for(lambda: self.in_flight == 0), timeout_s)
            except TimeoutError:
                return False
        return True

    async def resume(self) -> None:
        cond = self._condition()
        async with cond:
            self.paused = False
            cond.notify_all()


class WeightUpdate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    path: str | None = None
    """A .safetensors file readable by the server (the trainer's shared directory: `shm`)."""
    name: str | None = None
    """Or the name of a .safetensors file in the directory the server was started with
    (`--weights-dir`: the `dir` transport, shared storage mounted anywhere on the server's host)."""
    version: int = Field(ge=0)
    """The new policy version; must be greater than the engine's."""
    mode: Literal["drain", "immediate"] = "drain"
    drain_timeout_s: float = Field(60.0, gt=0)
    force: bool = False
    """Load even when `version` is not newer: a trainer attaching to a running server (its own
    initial weights as its version 0) or restoring a restarted one. Normal pushes leave it off, so
    a second trainer pushing to the same server is refused (409) instead of mixing weights."""


def _err(status: int, message: str, code: str) -> JSONResponse:
    return JSONResponse(error_body(message, "invalid_request_error" if status < 500 else "server_error", None, code),
                        status_code=status)


def resolve_weights_file(update: WeightUpdate, weights_dir: Path | None) -> Path | str:
    """The file a push names, or the message of a 400 saying what was wrong and what to do."""
    if (update.path is None) == (update.name is None):
        return "give exactly one of path (a file on the server's machine) or name (a file in its --weights-dir)"
    if update.name is not None:
        if weights_dir is None:
            return (f"the push names {update.name!r} in the weights directory, but this server was started without "
                    "one: start `forgerl serve` with --weights-dir PATH (where the trainer's weights_dir is mounted)")
        if Path(update.name).name != update.name or update.name in (".", ".."):
            return f"name {update.name!r} must be a bare file name inside --weights-dir, not a path"
        path = weights_dir / update.name
        where = f"{update.name!r} in --weights-dir {str(weights_dir)!r}"
        hint = "is the trainer's weights_dir the same storage as this server's --weights-dir?"
    else:
        path = Path(str(update.path))
        where = repr(update.path)
        hint = "the trainer and server must share the directory: for engines on other hosts use the dir transport"
    if path.suffix != ".safetensors" or not path.is_file():
        return f"{where} is not a readable .safetensors file on the server's machine ({hint})"
    return path


def add_admin_routes(app: FastAPI, engine: Any, gate: AdmissionGate, admin_token: str | None,
                     weights_dir: Path | None = None) -> None:
    lock = asyncio.Lock()  # one weight update at a time
    # Identifies this server process: a trainer that sees it change knows the server restarted
    # (and lost the weights it pushed), so it pushes them again (forgerl/weights/http_push.py restore).
    instance = uuid.uuid4().hex

    def denied(request: Request) -> JSONResponse | None:
        if admin_token is None:
            return _err(404, "the admin routes are disabled: start the server with an admin token "
                             "(FORGERL_ADMIN_TOKEN, or create_app(..., admin_token=...))", "admin_disabled")
        got = request.headers.get("authorization", "")
        if not hmac.compare_digest(got.encode(), f"Bearer {admin_token}".encode()):
            return _err(401, "missing or wrong admin bearer token", "unauthorized")
        return None

    @app.get("/admin/weights", response_model=None)
    async def weights_info(request: Request) -> JSONResponse | dict[str, Any]:
        if (refusal := denied(request)) is not None:
            return refusal
        return JSONResponse({"policy_version": engine.policy_version, "in_flight": gate.in_flight,
                             "paused": gate.paused}, headers={INSTANCE_HEADER: instance})

    @app.post("/admin/weights", response_model=None)
    async def load_weights(request: Request) -> JSONResponse | dict[str, Any]:
        if (refusal := denied(request)) is not None:
            return refusal
        try:
            update = WeightUpdate.model_validate_json(await request.body())
        except ValidationError as exc:
            first = exc.errors()[0]
            where = ".".join(str(p) for p in first["loc"]) or "body"
            return _err(400, f"invalid weight update ({where}): {first['msg']}", "invalid_request")
        path = resolve_weights_file(update, weights_dir)
        if isinstance(path, str):
            return _err(400, path, "weights_not_found")
        async with lock:
            current = engine.policy_version
            if update.version <= current and not update.force:
                return _err(409, f"version {update.version} is not newer than the engine's {current}; "
                                 "versions must increase (force: true replaces them anyway)", "stale_version")
            t0 = time.perf_counter()
            try:
                state = await asyncio.to_thread(_load, path)
            except Exception as exc:  # noqa: BLE001 — a bad file is the caller's error, not a crash
                return _err(400, f"cannot read {path.name!r} as safetensors: {exc}", "weights_unreadable")
            t1 = time.perf_counter()
            waited = gate.in_flight if update.mode == "drain" else 0
            try:  # the gate reopens however this ends (a timeout, a refused file, a cancelled request)
                if update.mode == "drain" and not await gate.drain(update.drain_timeout_s):
                    return _err(503, f"{gate.in_flight} requests still in flight after {update.drain_timeout_s}s; "
                                     f"weights not loaded (still version {current}); retry or use mode 'immediate'",
                                "drain_timeout")
                t2 = time.perf_counter()
                await asyncio.to_thread(engine.update_weights, state, update.version)
            except Exception as exc:  # noqa: BLE001
                log.exception("weight update to version %d failed", update.version)
                return _err(400, f"the engine refused the weights: {exc}", "weights_rejected")
            finally:
                await gate.resume()
            t3 = time.perf_counter()
        log.info("policy version %d -> %d (%s, load %.3fs, drain %.3fs, apply %.3fs)", current, update.version,
                 path.name, t1 - t0, t2 - t1, t3 - t2)
        return JSONResponse({"policy_version": engine.policy_version, "previous_version": current, "load_s": t1 - t0,
                             "drain_s": t2 - t1, "apply_s": t3 - t2, "drained_requests": waited,
                             "tensors": len(state), "bytes": path.stat().st_size}, headers={INSTANCE_HEADER: instance})


def _load(path: Path) -> dict[str, Any]:
    from safetensors.torch import load_file

    return load_file(str(path))
