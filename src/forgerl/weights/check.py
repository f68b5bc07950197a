"""Validation of a whole push before any tensor is written: what makes a push all or nothing.

Shared by the in-process engine (engine/llm.py `update_weights`) and the vLLM transport
(vllm_reload.py), whose server loads tensor by tensor and so must never receive a bad one.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import torch

from forgerl.errors import EngineError


def check_weight_push(state_dict: Mapping[str, Any], targets: Mapping[str, torch.Tensor], *,
                      may_be_non_finite: Callable[[str], bool] = lambda name: False) -> None:
    """Refuse a push before anything is written (EngineError naming the tensor): every name must be
    one of `targets` (the model's weights, or meta tensors of their shapes and dtypes), every
    tensor exactly its shape (a broadcastable one would be copied silently) and of the same kind of
    dtype (a cast between float precisions is fine, integers into floats are not), and floating
    values finite (one NaN turns every later forward into NaN) unless `may_be_non_finite(name)`
    (a buffer such as a mask that holds -inf by design)."""
    unknown = sorted(set(state_dict) - set(targets))
    if unknown:
        raise EngineError(f"update_weights: unknown parameter names {unknown[:5]}{' ...' if len(unknown) > 5 else ''}; "
                          "push the serving model's own state dict")
    for name, tensor in state_dict.items():
        target = targets[name]
        if not isinstance(tensor, torch.Tensor):
            raise EngineError(f"update_weights: {name} is a {type(tensor).__name__}, not a tensor")
        if tuple(tensor.shape) != tuple(target.shape):
            raise EngineError(f"update_weights: {name} has shape {tuple(tensor.shape)}, the model's is "
                              f"{tuple(target.shape)}; nothing was loaded")
        if _dtype_kind(tensor.dtype) != _dtype_kind(target.dtype):
            raise EngineError(f"update_weights: {name} has dtype {tensor.dtype}, the model's is {target.dtype} "
                              f"(a {_dtype_kind(target.dtype)} tensor is needed); nothing was loaded")
        if tensor.is_floating_point() or tensor.is_complex():
            if not bool(torch.isfinite(tensor).all()) and not may_be_non_finite(name):
                raise EngineError(f"update_weights: {name} holds non-finite values (NaN or Inf); nothing was loaded")


def _dtype_kind(dtype: torch.dtype) -> str:
    if dtype == torch.bool:
        return "bool"
    if dtype.is_complex:
        return "complex"
    return "floating-point" if dtype.is_floating_point else "integer"
