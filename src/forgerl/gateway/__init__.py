"""The recording gateway for black-box agents (`forgerl gateway`).

`Gateway` (core.py) holds sessions, credentials and recording; `create_gateway_app` (app.py) is
its HTTP API and needs the `server` extra; `serve_gateway`/`BackgroundGateway` (serve.py) run it;
`Upstream` (remote.py) stands in for the engine when a remote server samples; `train.py` trains
through it. Everything is imported on first use, so `import forgerl.gateway` stays cheap.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "Gateway": "core", "GatewayError": "core", "OpenedSession": "core", "Session": "sessions",
    "create_gateway_app": "app", "serve_gateway": "serve", "BackgroundGateway": "serve", "Upstream": "remote",
    "train_through_gateway": "train",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(f"forgerl.gateway.{_EXPORTS[name]}"), name)
    raise AttributeError(f"module 'forgerl.gateway' has no attribute {name!r}")
