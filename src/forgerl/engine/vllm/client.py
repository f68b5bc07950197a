"""The vLLM adapter: forgerl's engine protocol over a vLLM OpenAI-compatible server.

The client itself is engine/remote.py's RemoteEngine (the same token-id `/v1/completions` request
drives `forgerl serve` and vLLM); this module gives it vLLM's defaults and keeps the names the
vLLM code and tests import.

Which logprobs: the server runs with `--logprobs-mode raw_logprobs` (server.py), the log-softmax of
the raw model logits before temperature, top-p/top-k or penalties. That is the convention of the
built-in engine (engine/base.py) and what the trainer recomputes for the CISPO importance ratio.
(`processed_logprobs` would give the temperature-scaled, truncated distribution instead; the trainer
does not recompute that one, so mixing them would bias the ratio.) Sampling settings are sent
explicitly on every request (and the server starts with `--generation-config vllm`), so a model's
`generation_config.json` can never change them silently.

Policy version: vLLM reports none on a completion, so every result is stamped with the adapter's
version when the request was sent. Weight pushes (weights.py) pause the server in drain mode, so a
request the server had already admitted finishes on the old weights and is stamped old, correctly.
A request that reaches the server while it is paused runs after the resume on the new weights but
keeps the old stamp: it looks staler than it is (the safe direction); a result never carries a
newer stamp than its weights.

Retries: the supervisor (server.VLLMServer) restarts a dead server, and a request lost to the crash
is sent again after the restart (`retry_in_flight`): nothing of it had reached the caller, so the
retry is a fresh sample, never a splice.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from forgerl.engine.remote import RemoteEngine, _ServerGone, completion_body, health

__all__ = ["VLLMEngine", "_ServerGone", "completion_body", "health"]


class VLLMEngine(RemoteEngine):
    """RemoteEngine against a vLLM server; `supervisor` is a server.VLLMServer (or None)."""

    server_kind = "vLLM"
    pusher_hint = ("build it with engine.vllm.open_vllm_engine, or call attach_pusher(VLLMWeightPusher(...))")

    def __init__(self, base_url: str, tokenizer: Any, *, retry_in_flight: bool = True, **kwargs: Any) -> None:
        super().__init__(base_url, tokenizer, retry_in_flight=retry_in_flight, **kwargs)

    def update_weights(self, state_dict: Mapping[str, Any], version: int, *, force: bool = False) -> None:
        """vLLM serves the main model only: MTP heads (`mtp.*`, model/mtp.py) are never pushed."""
        from forgerl.model.mtp import without_mtp  # heavy: torch, kept out of this module's import

        super().update_weights(without_mtp(dict(state_dict)), version, force=force)
