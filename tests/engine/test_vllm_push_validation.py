"""The vLLM weight pusher refuses a bad push before it reaches the server (issue 26 item 7).

vLLM's `reload_weights` copies tensor by tensor, so a wrong shape in the last tensor would leave
the server half-overwritten, serving at the old version. The pusher checks names, shapes, dtype
kinds and finiteness against the server's own weights first; these tests need no vLLM (the
server is an httpx mock that records what it was sent).
"""

from __future__ import annotations

import httpx
import pytest
import torch

from forgerl.weights.vllm_reload import VLLMWeightPusher


def _weights(seed: int = 0) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return {"embed.weight": torch.randn(8, 4, generator=g), "layer.weight": torch.randn(4, 4, generator=g),
            "lm_head.weight": torch.randn(8, 4, generator=g)}


class FakeVLLM:
    """Answers the dev-mode endpoints; `calls` lists every path the pusher hit."""

    def __init__(self) -> None:
        self.calls: list[str] = []
        self.version = 0

    def handle(self, request: httpx.Request) -> httpx.Response:
        self.calls.append(request.url.path)
        if request.url.path == "/weight_info":
            return httpx.Response(200, json={"weight_version": str(self.version)})
        if request.url.path == "/update_weight_version":
            import json

            self.version = int(json.loads(request.content)["new_version"])
        return httpx.Response(200, json={})


@pytest.mark.parametrize("spoil, words", [
    (lambda w: w.update({"lm_head.weight": torch.zeros(9, 4)}), "shape"),
    (lambda w: w.update({"lm_head.weight": torch.full((8, 4), float("nan"))}), "non-finite"),
    (lambda w: w.update({"lm_head.weight": torch.zeros(8, 4, dtype=torch.int32)}), "dtype"),
    (lambda w: w.update({"extra.weight": torch.zeros(1)}), "unknown parameter names"),
], ids=["shape", "nan", "dtype", "unknown-name"])
def test_a_bad_push_never_reaches_the_server(tmp_path, spoil, words):
    server = FakeVLLM()
    pusher = VLLMWeightPusher("http://vllm.invalid", shared_dir=tmp_path, verify=False,
                              transport=httpx.MockTransport(server.handle))
    pusher.remember_schema(_weights(0))
    bad = _weights(1)
    spoil(bad)
    result = pusher.push(bad, 1)
    assert not result.ok and words in result.error, result.error
    assert result.engine_version == 0
    assert server.calls == ["/weight_info"]  # no pause, no reload: the server's weights were never touched
    assert not any(tmp_path.iterdir())  # nothing was written for the server to load either
    good = pusher.push(_weights(1), 1)
    assert good.ok and "/collective_rpc" in server.calls and server.version == 1, good.error


def test_non_finite_weights_are_refused_even_before_the_schema_is_known(tmp_path):
    server = FakeVLLM()
    pusher = VLLMWeightPusher("http://vllm.invalid", shared_dir=tmp_path, verify=False,
                              transport=httpx.MockTransport(server.handle))
    bad = _weights(0)
    bad["layer.weight"][0, 0] = float("inf")
    result = pusher.push(bad, 1)
    assert not result.ok and "layer.weight" in result.error and "/collective_rpc" not in server.calls
    assert pusher.push(_weights(0), 1).ok
    assert pusher.schema is not None and set(pusher.schema) == set(_weights(0))  # the first good push sets it
