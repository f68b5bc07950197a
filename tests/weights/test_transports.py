"""Weight transport has one home (issue 18 item 2): one protocol, one file per transport, and the
package stays light enough to import from the CLI and the engine client."""

from __future__ import annotations

import subprocess
import sys

import torch

from forgerl.engine.llm import LLMEngine
from forgerl.testing import CharTokenizer, build_micro_moe
from forgerl.weights import (
    InProcessTransport,
    PushResult,
    VLLMWeightPusher,
    WeightPusher,
    WeightTransport,
)


def test_every_transport_speaks_the_protocol(tmp_path) -> None:
    engine = LLMEngine(build_micro_moe(), CharTokenizer(), max_context=32, num_slots=1)
    http = WeightPusher("http://127.0.0.1:9", admin_token="t", shared_dir=tmp_path / "http")
    vllm = VLLMWeightPusher("http://127.0.0.1:9", shared_dir=tmp_path / "vllm")
    try:
        for transport in (InProcessTransport(engine), http, vllm):
            assert isinstance(transport, WeightTransport), type(transport).__name__
    finally:
        http.close()
        vllm.close()


def test_inprocess_push_lands_and_moves_the_version() -> None:
    model = build_micro_moe()
    engine = LLMEngine(model, CharTokenizer(), max_context=32, num_slots=1, policy_version=1)
    new = {k: torch.zeros_like(v) for k, v in model.state_dict().items() if v.is_floating_point()}
    result = InProcessTransport(engine).push(new, 2)
    assert isinstance(result, PushResult)
    assert (result.ok, result.engine_version, result.error) == (True, 2, None)
    assert all(float(model.state_dict()[k].abs().sum()) == 0.0 for k in new)


def test_inprocess_refused_push_is_a_failed_result_and_changes_nothing() -> None:
    model = build_micro_moe()
    engine = LLMEngine(model, CharTokenizer(), max_context=32, num_slots=1, policy_version=4)
    before = {k: v.detach().clone() for k, v in model.state_dict().items()}
    bad = {k: torch.full_like(v, float("nan")) for k, v in model.state_dict().items() if v.is_floating_point()}
    transport = InProcessTransport(engine)
    result = transport.push(bad, 5)
    assert not result.ok and result.engine_version == 4
    assert "non-finite" in (result.error or "")
    assert all(torch.equal(model.state_dict()[k], v) for k, v in before.items())
    assert transport.restore() is None  # nothing was accepted, so nothing to restore


def test_importing_the_weights_package_pulls_in_neither_torch_nor_httpx() -> None:
    code = ("import sys, forgerl.weights; "
            "print(sorted(m for m in ('torch', 'httpx') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
