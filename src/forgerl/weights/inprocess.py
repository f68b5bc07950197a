"""Weight transport to an engine in this process (the built-in LLMEngine): a direct, validated copy.

The engine's own `update_weights` already checks the whole push before writing (check.py), so
this transport only turns its EngineError into a failed PushResult, like the other transports do,
and remembers the newest weights so `restore()` can put them back.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from typing import Any, Protocol

from forgerl.errors import EngineError
from forgerl.weights.base import PushResult

log = logging.getLogger(__name__)


class UpdatableEngine(Protocol):
    """The part of an engine this transport needs."""

    policy_version: int

    def update_weights(self, state_dict: Mapping[str, Any], version: int) -> None: ...


class InProcessTransport:
    """`push` copies the weights into `engine` between two decode steps."""

    def __init__(self, engine: UpdatableEngine) -> None:
        self.engine = engine
        self._newest: tuple[Mapping[str, Any], int] | None = None

    def push(self, state_dict: Mapping[str, Any], version: int) -> PushResult:
        """Never raises for a refused push: the result carries the engine's reason."""
        t0 = time.perf_counter()
        result = PushResult(version=version, ok=False, engine_version=self.engine.policy_version)
        try:
            self.engine.update_weights(state_dict, version)
        except EngineError as exc:
            result.error = str(exc)
            log.error("weight push of version %d refused: %s", version, exc)
        else:
            result.ok = True
            self._newest = (state_dict, version)
        result.engine_version = self.engine.policy_version
        result.total_s = result.request_s = time.perf_counter() - t0
        return result

    def restore(self) -> PushResult | None:
        """Push the newest accepted weights again (None when nothing was pushed yet)."""
        if self._newest is None:
            return None
        return self.push(*self._newest)

    def close(self) -> None:
        """Drop the reference to the newest weights (the engine keeps its own copy)."""
        self._newest = None
