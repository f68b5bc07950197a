"""OpenAI-compatible HTTP server over any forgerl Engine (`forgerl serve`).

`create_app` and `serve` are imported lazily so that importing this package does not pull in
FastAPI (an optional `server` extra, DESIGN contract 7) until it is actually used.
"""

from __future__ import annotations

from typing import Any

__all__ = ["create_app", "serve"]


def __getattr__(name: str) -> Any:
    if name in __all__:
        from forgerl.server import app  # heavy: fastapi, loaded on first use; app imports this package

        return getattr(app, name)
    raise AttributeError(f"module 'forgerl.server' has no attribute {name!r}")
