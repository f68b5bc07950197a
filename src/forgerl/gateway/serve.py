"""Running the gateway: in a background thread on a loopback port (tests, in-process drivers) or
in the foreground (`forgerl gateway`).

Shutdown: on SIGTERM or SIGINT uvicorn stops accepting, finishes the requests in flight, runs the
app's lifespan shutdown and then re-raises the signal, so code after `uvicorn.run` never runs. The
foreground app is therefore wrapped (`CloseSessionsOnShutdown`) so that lifespan shutdown ends every
live session as FAILED (stored, with no reward: the gateway going away is not the agent's doing)
and closes its environment, removing its sandbox; nothing is left on disk by a terminated gateway.
"""

from __future__ import annotations

import logging
import os
import socket
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from forgerl.chat import get_format
from forgerl.engine import load_engine
from forgerl.gateway.core import Gateway
from forgerl.store import TrajectoryStore

log = logging.getLogger(__name__)


class ThreadedServer:
    """Any ASGI app served by uvicorn on its own thread and event loop, on a loopback port
    (port 0 picks a free one). Whatever the app drives (an engine) then runs on that loop."""

    def __init__(self, app: Any = None, *, app_factory: Callable[[str], Any] | None = None, host: str = "127.0.0.1",
                 port: int = 0) -> None:
        """Serve `app`, or `app_factory(url)` when the app needs to know its own URL."""
        import uvicorn

        self._sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._sock.bind((host, port))
        self.port = self._sock.getsockname()[1]
        self.url = f"http://{host}:{self.port}"
        self.app = app_factory(self.url) if app_factory is not None else app
        # backlog: a load test opens hundreds of connections at once
        config = uvicorn.Config(self.app, log_level="warning", lifespan="off", backlog=4096, timeout_keep_alive=30)
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._server.run, kwargs={"sockets": [self._sock]}, daemon=True,
                                        name=f"uvicorn-{self.port}")

    def start(self, timeout_s: float = 10.0) -> ThreadedServer:
        self._thread.start()
        deadline = time.monotonic() + timeout_s
        while not self._server.started:
            if time.monotonic() > deadline or not self._thread.is_alive():
                raise RuntimeError("the uvicorn server did not start")
            time.sleep(0.01)
        return self

    def stop(self) -> None:
        self._server.should_exit = True
        self._thread.join(timeout=10)
        self._sock.close()

    def __enter__(self) -> ThreadedServer:
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()


class BackgroundGateway(ThreadedServer):
    """The gateway on a loopback port in a background thread (tests, in-process trainers)."""

    def __init__(self, gateway: Gateway, *, host: str = "127.0.0.1", port: int = 0,
                 max_body_bytes: int | None = None) -> None:
        """`max_body_bytes`: the request-body cap (None: server/limits.py's default)."""
        from forgerl.gateway.app import (
            create_gateway_app,  # heavy: fastapi, httpx, starlette, kept out of this module's import
        )

        self.gateway = gateway
        limit = {} if max_body_bytes is None else {"max_body_bytes": max_body_bytes}
        super().__init__(app_factory=lambda url: create_gateway_app(gateway, public_url=url, **limit), host=host,
                         port=port)


async def shutdown_sessions(gateway: Gateway) -> int:
    """End every live session because the gateway is going away: FAILED at the timeout boundary
    (the rollout was cut off, as a cancelled white-box episode is), stored, environment closed.
    Never raises; returns how many sessions it ended."""

    live = [s for s in list(gateway.sessions.values()) if not s.ended]
    for session in live:
        try:
            await gateway.cut_off(session, "the gateway shut down before the session ended", reason="gateway shutdown")
        except Exception as exc:  # noqa: BLE001 — the next session must still be cleaned up
            log.error("could not store session %s at shutdown: %s", session.id, exc)
            gateway.finished[session.id] = session.trajectory
    if live:
        log.warning("gateway shutdown: ended %d live session(s) as failed and removed their environments", len(live))
    return len(live)


class CloseSessionsOnShutdown:
    """ASGI wrapper that answers the lifespan protocol itself and, at shutdown, runs
    `shutdown_sessions` (the wrapped app has no lifespan handlers of its own)."""

    def __init__(self, app: Any, gateway: Gateway) -> None:
        self.app, self.gateway = app, gateway

    async def __call__(self, scope: dict[str, Any], receive: Callable[..., Any], send: Callable[..., Any]) -> None:
        if scope["type"] != "lifespan":
            await self.app(scope, receive, send)
            return
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                try:
                    await shutdown_sessions(self.gateway)
                finally:
                    await send({"type": "lifespan.shutdown.complete"})
                return


def serve_gateway(
    model: str = "tiny-random", host: str = "127.0.0.1", port: int = 8100, chat_format: str = "minimax_m2", *,
    run_dir: str | None = None, admin_key: str | None = None, session_ttl_s: float = 3600.0,
    served_model_name: str | None = None, log_level: str = "info", upstream: str | None = None,
    upstream_api_key: str | None = None, max_body_bytes: int | None = None,
) -> None:
    """Serve the gateway until interrupted, over `model` in the built-in engine or, with
    `upstream`, over a remote OpenAI-compatible server that returns token ids. Finished
    trajectories go to the store in `run_dir` when given. `max_body_bytes` caps request bodies
    (None: server/limits.py's default)."""
    import uvicorn

    from forgerl.gateway.app import (
        create_gateway_app,  # heavy: fastapi, httpx, starlette, kept out of this module's import
    )

    store = None
    if run_dir is not None:
        store = TrajectoryStore(run_dir)
    if upstream is not None:
        from forgerl.gateway.remote import Upstream  # heavy: fastapi, httpx, kept out of this module's import

        engine: Any = Upstream(upstream, api_key=upstream_api_key).discover()
    else:
        engine = load_engine(model, chat_format=chat_format)
    gateway = Gateway(engine, get_format(chat_format), store=store, admin_key=admin_key, session_ttl_s=session_ttl_s,
                      served_model_name=served_model_name)
    if admin_key is None:
        announce_admin_key(gateway.admin_key or "", run_dir)
    app = CloseSessionsOnShutdown(create_gateway_app(gateway), gateway)
    uvicorn.run(app, host=host, port=port, log_level=log_level, lifespan="on")


ADMIN_KEY_FILE = "gateway-admin-key"


def announce_admin_key(key: str, run_dir: str | None) -> Path | None:
    """Tell the operator the admin key the gateway made up: on stderr, and in `run_dir`'s
    `gateway-admin-key` file (mode 0600, created with that mode so it is never readable by
    others, not even for an instant) for drivers that read it. Returns the file's path."""
    path = None
    if run_dir is not None:
        path = Path(run_dir) / ADMIN_KEY_FILE
        path.parent.mkdir(parents=True, exist_ok=True)
        path.unlink(missing_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as out:
            out.write(key + "\n")
    where = f" (also in {path}, mode 0600)" if path is not None else ""
    print(f"forgerl gateway admin key: {key}{where}\n"
          "  send it as 'Authorization: Bearer <key>' to POST /sessions; set FORGERL_GATEWAY_ADMIN_KEY to choose it",
          file=sys.stderr, flush=True)
    return path
