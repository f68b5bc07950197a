"""Running the gateway: in a background thread on a loopback port (tests, in-process drivers) or
in the foreground (`forgerl gateway`)."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable
from typing import Any

from forgerl.gateway.core import Gateway


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

    def __init__(self, gateway: Gateway, *, host: str = "127.0.0.1", port: int = 0) -> None:
        from forgerl.gateway.app import create_gateway_app

        self.gateway = gateway
        super().__init__(app_factory=lambda url: create_gateway_app(gateway, public_url=url), host=host, port=port)


def serve_gateway(
    model: str = "tiny-random", host: str = "127.0.0.1", port: int = 8100, chat_format: str = "minimax_m2", *,
    run_dir: str | None = None, admin_key: str | None = None, session_ttl_s: float = 3600.0,
    served_model_name: str | None = None, log_level: str = "info", upstream: str | None = None,
    upstream_api_key: str | None = None,
) -> None:
    """Serve the gateway until interrupted, over `model` in the built-in engine or, with
    `upstream`, over a remote OpenAI-compatible server that returns token ids. Finished
    trajectories go to the store in `run_dir` when given."""
    import uvicorn

    from forgerl.chat import get_format
    from forgerl.engine import load_engine
    from forgerl.gateway.app import create_gateway_app

    store = None
    if run_dir is not None:
        from forgerl.store import TrajectoryStore

        store = TrajectoryStore(run_dir)
    if upstream is not None:
        from forgerl.gateway.remote import Upstream

        engine: Any = Upstream(upstream, api_key=upstream_api_key).discover()
    else:
        engine = load_engine(model, chat_format=chat_format)
    gateway = Gateway(engine, get_format(chat_format), store=store, admin_key=admin_key, session_ttl_s=session_ttl_s,
                      served_model_name=served_model_name)
    uvicorn.run(create_gateway_app(gateway), host=host, port=port, log_level=log_level)
