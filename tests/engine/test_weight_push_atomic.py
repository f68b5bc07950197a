"""A weight push is all or nothing (issue 26 item 7): a state dict with one bad tensor — wrong
shape, wrong kind of dtype, NaN/Inf, unknown name — is refused before any weight is written, so
the engine keeps serving exactly the weights and version it had."""

from __future__ import annotations

import pytest
import torch

from forgerl.engine.llm import LLMEngine
from forgerl.errors import EngineError
from forgerl.testing import CharTokenizer, build_micro_moe


def _snapshot(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def _assert_bit_identical(model: torch.nn.Module, before: dict[str, torch.Tensor]) -> None:
    after = model.state_dict()
    assert after.keys() == before.keys()
    for name, tensor in before.items():
        # bit-exact: compare the raw bytes, so even NaN payloads or -0.0 would count as a change
        assert torch.equal(after[name].view(torch.uint8) if after[name].dtype != torch.bool else after[name],
                           tensor.view(torch.uint8) if tensor.dtype != torch.bool else tensor), name


def _last_float_param(state: dict[str, torch.Tensor]) -> str:
    """The name that comes last in the dict: every earlier tensor would be copied before it."""
    return [k for k, v in state.items() if v.is_floating_point()][-1]


def _bad_pushes() -> list[tuple[str, object, str]]:
    """(id, how to spoil the last tensor, words the error must contain)."""
    return [
        ("wrong-shape", lambda t: torch.zeros(t.shape[0] + 1, *t.shape[1:]), "shape"),
        ("broadcastable-shape", lambda t: torch.zeros(1, *t.shape[1:]) if t.dim() > 1 else torch.zeros(1), "shape"),
        ("nan", lambda t: torch.full_like(t, float("nan")), "non-finite"),
        ("inf", lambda t: torch.full_like(t, float("inf")), "non-finite"),
        ("integer-dtype", lambda t: torch.zeros(t.shape, dtype=torch.int64), "dtype"),
        ("not-a-tensor", lambda t: [0.0] * t.numel(), "tensor"),
    ]


@pytest.mark.parametrize("spoil, words", [(s, w) for _, s, w in _bad_pushes()], ids=[i for i, _, _ in _bad_pushes()])
def test_a_half_bad_push_leaves_weights_bit_identical_and_version_unchanged(spoil, words):
    model = build_micro_moe(seed=0)
    engine = LLMEngine(model, CharTokenizer(), max_context=32, num_slots=2, policy_version=3)
    before = _snapshot(model)
    push = build_micro_moe(seed=1).state_dict()
    last = _last_float_param(push)
    push[last] = spoil(push[last])
    with pytest.raises(EngineError, match=words) as err:
        engine.update_weights(push, version=4)
    assert last in str(err.value)  # the message names the tensor at fault
    assert engine.policy_version == 3
    _assert_bit_identical(model, before)


def test_an_unknown_name_among_good_tensors_changes_nothing():
    model = build_micro_moe(seed=0)
    engine = LLMEngine(model, CharTokenizer(), max_context=32, num_slots=2)
    before = _snapshot(model)
    push = {**build_micro_moe(seed=1).state_dict(), "not.a.param": torch.zeros(1)}
    with pytest.raises(EngineError, match="unknown parameter names"):
        engine.update_weights(push, version=1)
    assert engine.policy_version == 0
    _assert_bit_identical(model, before)


def test_a_good_push_after_a_refused_one_lands_exactly():
    model = build_micro_moe(seed=0)
    engine = LLMEngine(model, CharTokenizer(), max_context=32, num_slots=2)
    good = build_micro_moe(seed=1).state_dict()
    bad = dict(good)
    name = _last_float_param(bad)
    bad[name] = torch.full_like(bad[name], float("nan"))
    with pytest.raises(EngineError):
        engine.update_weights(bad, version=1)
    engine.update_weights(good, version=1)
    assert engine.policy_version == 1
    for key, tensor in model.state_dict().items():
        assert torch.equal(tensor, good[key]), key


def test_a_failure_while_copying_stops_the_engine_serving_torn_weights(monkeypatch):
    """Validation cannot foresee a device error in the middle of the copy; then the engine must
    refuse to sample from half-old, half-new weights until a full push lands."""
    import asyncio

    from forgerl.engine.base import SamplingParams

    model = build_micro_moe(seed=0)
    engine = LLMEngine(model, CharTokenizer(), max_context=32, num_slots=2)
    good = build_micro_moe(seed=1).state_dict()
    real_copy = torch.Tensor.copy_
    calls = {"n": 0}

    def failing_copy(self, src, *a, **k):
        calls["n"] += 1
        if calls["n"] == 3:
            raise RuntimeError("device fell over")
        return real_copy(self, src, *a, **k)

    monkeypatch.setattr(torch.Tensor, "copy_", failing_copy)
    with pytest.raises(EngineError, match="partly applied"):
        engine.update_weights(good, version=1)
    monkeypatch.setattr(torch.Tensor, "copy_", real_copy)
    assert engine.policy_version == 0
    with pytest.raises(EngineError, match="partly applied"):
        asyncio.run(engine.generate([1, 2, 3], SamplingParams(max_tokens=2)))
    partial = dict(list(good.items())[:3])
    with pytest.raises(EngineError, match="partly applied"):  # a partial push cannot heal a torn model
        engine.update_weights(partial, version=2)
    engine.update_weights(good, version=2)
    result = asyncio.run(engine.generate([1, 2, 3], SamplingParams(max_tokens=2)))
    assert result.policy_version == 2
