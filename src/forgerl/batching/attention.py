"""Tree attention for packed prefix trees, plugged into transformers' attention interface.

The rule (see `forgerl.batching.tree`): key k is visible to query q iff `k <= q < subtree_end[k]`.
Three ways to apply it, all exact (a masked key contributes an exact 0 to the softmax):

- `dense`: an explicit 4-D mask [1, 1, L, L] handed to the model's own attention implementation.
  transformers 5.x returns a 4-D `attention_mask` as-is from `create_causal_mask` (it treats it
  as already prepared), for `minimax_m2` as for Llama/Qwen2. SDPA takes a bool mask (True =
  attend); eager *adds* the mask to the scores, so it gets 0 / dtype-min. O(L^2) time and memory:
  the reference, and fine for small rows.
- `sparse` (CPU default): a registered attention function that cuts the row into query blocks and
  gives each block only the keys some query in it can see (`k < block_end and subtree_end[k] >
  block_start`: its ancestors and its own branch), then runs SDPA on that gathered slice with the
  dense rule as a small mask. The work is that of the merged tree, not of L^2.
- `flex` (CUDA default): FlexAttention with a `BlockMask` from the same rule, built with
  `create_block_mask(..., _compile=True)` (the dense build of a 200k-token tree needs ~49 GiB,
  RESOURCES.md); fully masked blocks are skipped by the kernel.

The `sparse`/`flex` paths run under a temporary `config._attn_implementation = "forgerl_tree"`
(registered once with `AttentionInterface`); transformers then builds no mask of its own and passes
our `tree_attention` keyword through every decoder layer to the attention function.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Literal

import torch
import torch.nn.functional as F

ATTN_NAME = "forgerl_tree"
TreeAttentionMode = Literal["auto", "dense", "sparse", "flex"]
SUPPORTED_DENSE = ("sdpa", "eager")


def dense_tree_mask(subtree_end: torch.Tensor) -> torch.Tensor:
    """[L, L] bool, True where query (row) may attend to key (column)."""
    idx = torch.arange(subtree_end.numel(), device=subtree_end.device)
    return (idx[None, :] <= idx[:, None]) & (idx[:, None] < subtree_end[None, :])


@dataclass
class SparsePlan:
    """Per query block [a, b): the key indices it may need and the rule restricted to them."""

    blocks: list[tuple[int, int, torch.Tensor, torch.Tensor]]  # (a, b, key_index [K], mask [1, 1, b-a, K])


def sparse_plan(subtree_end: torch.Tensor, block: int = 256) -> SparsePlan:
    length = subtree_end.numel()
    idx = torch.arange(length, device=subtree_end.device)
    blocks = []
    for a in range(0, length, block):
        b = min(length, a + block)
        keys = torch.nonzero((idx < b) & (subtree_end > a)).squeeze(-1)  # [K]
        q = idx[a:b, None]
        mask = (keys[None, :] <= q) & (q < subtree_end[keys][None, :])  # [b-a, K]
        blocks.append((a, b, keys, mask[None, None]))
    return SparsePlan(blocks)


@dataclass
class TreeAttention:
    """What the registered attention function needs for one packed row."""

    mode: Literal["sparse", "flex"]
    plan: SparsePlan | None = None
    block_mask: Any = None  # torch.nn.attention.flex_attention.BlockMask


def tree_attention_forward(module: torch.nn.Module, query: torch.Tensor, key: torch.Tensor, value: torch.Tensor,
                           attention_mask: torch.Tensor | None, scaling: float | None = None, dropout: float = 0.0,
                           tree_attention: TreeAttention | None = None, **kwargs: Any) -> tuple[torch.Tensor, None]:
    """query [B, Hq, L, D], key/value [B, Hkv, L, D] -> ([B, L, Hq, D], None), as transformers expects."""
    if tree_attention is None:
        raise RuntimeError("the forgerl_tree attention implementation needs a `tree_attention=` plan; "
                           "run the model through forgerl.batching.tree_forward")
    if dropout:
        raise ValueError("tree attention does not support attention dropout; set attention_dropout=0")
    for unsupported in ("sliding_window", "softcap"):
        if kwargs.get(unsupported) is not None:
            raise ValueError(f"tree attention does not implement {unsupported} layers ({type(module).__name__}); "
                             "train this model with batch_mode 'chain' or 'call'")
    if tree_attention.mode == "flex":
        out = _flex(query, key, value, tree_attention.block_mask, scaling)
    else:
        gqa = query.shape[1] != key.shape[1]
        parts = []
        for a, b, keys, mask in tree_attention.plan.blocks:
            k = key.index_select(2, keys)
            v = value.index_select(2, keys)
            parts.append(F.scaled_dot_product_attention(query[:, :, a:b], k, v, attn_mask=mask, scale=scaling,
                                                        enable_gqa=gqa))
        out = torch.cat(parts, dim=2)
    return out.transpose(1, 2).contiguous(), None


_compiled_flex: Any = None


def _flex(query: torch.Tensor, key: torch.Tensor, value: torch.Tensor, block_mask: Any, scaling: float | None) -> torch.Tensor:
    global _compiled_flex
    from torch.nn.attention.flex_attention import flex_attention

    if _compiled_flex is None:
        # dynamic=True: one kernel for every row length (a run's micro-batches all differ). With
        # static shapes each new length recompiles, and past dynamo's recompile limit torch silently
        # falls back to eager flex_attention, which materialises the whole [L, L] score matrix.
        # Grad mode, dtype and head layout still key separate graphs, hence the higher limit.
        import torch._dynamo.config as dynamo_config

        if getattr(dynamo_config, "recompile_limit", 64) < 64:
            dynamo_config.recompile_limit = 64
        _compiled_flex = torch.compile(flex_attention, dynamic=True)
    enable_gqa = query.shape[1] != key.shape[1]
    return _compiled_flex(query, key, value, block_mask=block_mask, scale=scaling, enable_gqa=enable_gqa)


def flex_block_mask(subtree_end: torch.Tensor) -> Any:
    """FlexAttention BlockMask of the tree rule; `_compile=True` keeps the build sparse."""
    from torch.nn.attention.flex_attention import create_block_mask

    ends = subtree_end

    def tree_rule(b: Any, h: Any, q: Any, kv: Any) -> Any:
        return (kv <= q) & (q < ends[kv])

    length = ends.numel()
    return create_block_mask(tree_rule, B=None, H=None, Q_LEN=length, KV_LEN=length, device=ends.device, _compile=True)


_registered = False


def register() -> None:
    global _registered
    if _registered:
        return
    from transformers import AttentionInterface

    AttentionInterface.register(ATTN_NAME, tree_attention_forward)
    _registered = True


@contextmanager
def attention_implementation(config: Any, name: str) -> Iterator[None]:
    """Temporarily switch a model config's attention implementation (restored on exit)."""
    old = config._attn_implementation
    config._attn_implementation = name
    try:
        yield
    finally:
        config._attn_implementation = old


def resolve_mode(mode: TreeAttentionMode, device: torch.device) -> Literal["dense", "sparse", "flex"]:
    if mode == "auto":
        return "flex" if device.type == "cuda" else "sparse"
    if mode == "flex" and device.type != "cuda":
        raise ValueError("tree attention mode 'flex' needs a CUDA device; use 'sparse' (or 'dense') on CPU")
    if mode not in ("dense", "sparse", "flex"):
        raise ValueError(f"unknown tree attention mode {mode!r}; use auto, dense, sparse or flex")
    return mode


def dense_mask_for(config: Any, subtree_end: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """The 4-D mask the model's own attention implementation expects (bool for SDPA, additive for eager)."""
    impl = config._attn_implementation
    allowed = dense_tree_mask(subtree_end)[None, None]
    if impl == "sdpa":
        return allowed
    if impl == "eager":
        return torch.zeros(allowed.shape, dtype=dtype, device=allowed.device).masked_fill(~allowed, torch.finfo(dtype).min)
    raise ValueError(f"dense tree attention supports the {', '.join(SUPPORTED_DENSE)} attention implementations, "
                     f"not {impl!r}; load the model with attn_implementation='sdpa' or use tree attention mode 'sparse'/'flex'")
