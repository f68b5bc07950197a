"""A slot-based KV cache that lets rows of one batch sit at different lengths.

transformers' caches assume every row of a batch has the same length. Continuous batching needs
the opposite: sessions join and leave, each at its own position, and an idle session keeps its KV
so its next request (which extends its context) only prefills the new tokens. Here every slot owns
a fixed `[kv_heads, max_len, head_dim]` region per layer; the engine sets a *write plan* before each
forward (which slots, at which positions) and passes its own 4-D attention mask, which transformers
uses as-is. Decode steps run over slots `0..n` so the returned keys/values are views, not copies.

With speculative decoding the cache also keeps the main model's last hidden state of every cached
position (`hidden`, written by `store_hidden` under the same plan): the MTP draft modules
(model/mtp.py) read them over a window instead of keeping a cache of their own.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from transformers.cache_utils import Cache


@dataclass
class WritePlan:
    """Where the next forward's new keys/values go.

    prefill: one slot, `length` new tokens starting at `start`.
    prefill_many: slots `slots[r]`, row r's tokens at `positions[r, :]` (padding at the scratch
        position); keys/values come back gathered (a copy), which prefill amortises.
    decode: slots `0..num_rows`, one token each, at `positions[row]`.
    verify: slots `0..num_rows`, row r's tokens at `positions[r, :]` (a speculative step's token
        and drafts; padding and idle rows at the scratch position); keys/values come back as views.
    window: slots `slots[r]`, row r's tokens at `positions[r, :]`; the keys/values returned are
        those at `key_positions[r, :]` only (an MTP module's attention window), gathered.
    """

    kind: str  # "prefill" | "prefill_many" | "decode" | "verify" | "window"
    slot: int = 0
    start: int = 0
    length: int = 0
    num_rows: int = 0
    positions: torch.Tensor | None = None  # decode: [num_rows]; prefill_many, verify: [rows, q_len]
    slots: torch.Tensor | None = None  # prefill_many: [rows]
    kv_len: int = 0  # how many positions the returned keys/values cover
    key_positions: torch.Tensor | None = None  # window: [rows, span]


class SlotKVCache(Cache):
    def __init__(self, num_layers: int, num_slots: int, kv_heads: int, max_len: int, head_dim: int,
                 dtype: torch.dtype, device: torch.device | str, hidden_size: int | None = None) -> None:
        super().__init__(layers=[])
        shape = (num_slots, kv_heads, max_len, head_dim)
        self.keys = [torch.zeros(shape, dtype=dtype, device=device) for _ in range(num_layers)]
        self.values = [torch.zeros(shape, dtype=dtype, device=device) for _ in range(num_layers)]
        # [num_slots, max_len, hidden]: the main model's last hidden states (speculative decoding only)
        self.hidden = None if hidden_size is None else torch.zeros((num_slots, max_len, hidden_size), dtype=dtype,
                                                                  device=device)
        self.num_slots = num_slots
        self.max_len = max_len
        self.plan: WritePlan | None = None
        self._rows: torch.Tensor | None = None

    def set_plan(self, plan: WritePlan) -> None:
        self.plan = plan
        views = plan.kind in ("decode", "verify")
        self._rows = torch.arange(plan.num_rows, device=self.keys[0].device) if views else None

    def update(self, key_states: torch.Tensor, value_states: torch.Tensor, layer_idx: int, *args, **kwargs):
        # key_states: [batch, kv_heads, q_len, head_dim]
        plan = self.plan
        assert plan is not None, "SlotKVCache.update called without a write plan"
        k_buf, v_buf = self.keys[layer_idx], self.values[layer_idx]
        if plan.kind == "prefill":
            end = plan.start + plan.length
            k_buf[plan.slot, :, plan.start:end] = key_states[0]
            v_buf[plan.slot, :, plan.start:end] = value_states[0]
            return k_buf[plan.slot:plan.slot + 1, :, :end], v_buf[plan.slot:plan.slot + 1, :, :end]
        if plan.kind in ("prefill_many", "window"):
            rows = plan.slots.unsqueeze(1).expand_as(plan.positions)
            k_buf[rows, :, plan.positions] = key_states.transpose(1, 2)
            v_buf[rows, :, plan.positions] = value_states.transpose(1, 2)
            if plan.kind == "window":
                keys = plan.slots.unsqueeze(1).expand_as(plan.key_positions)
                return (k_buf[keys, :, plan.key_positions].transpose(1, 2),
                        v_buf[keys, :, plan.key_positions].transpose(1, 2))
            return k_buf[plan.slots, :, :plan.kv_len], v_buf[plan.slots, :, :plan.kv_len]
        if plan.kind == "verify":
            rows = self._rows.unsqueeze(1).expand_as(plan.positions)
            k_buf[rows, :, plan.positions] = key_states.transpose(1, 2)
            v_buf[rows, :, plan.positions] = value_states.transpose(1, 2)
            return k_buf[:plan.num_rows, :, :plan.kv_len], v_buf[:plan.num_rows, :, :plan.kv_len]
        # decode: row r writes its single new token at positions[r]
        k_buf[self._rows, :, plan.positions] = key_states[:, :, 0]
        v_buf[self._rows, :, plan.positions] = value_states[:, :, 0]
        return k_buf[:plan.num_rows, :, :plan.kv_len], v_buf[:plan.num_rows, :, :plan.kv_len]

    def store_hidden(self, hidden: torch.Tensor) -> None:
        """Keep the last hidden states [rows, q_len, hidden] of the forward that ran under the
        current plan, at the positions its keys/values went to (no-op without a hidden buffer)."""
        plan, buf = self.plan, self.hidden
        if buf is None or plan is None:
            return
        if plan.kind == "prefill":
            buf[plan.slot, plan.start:plan.start + plan.length] = hidden[0]
        elif plan.kind in ("prefill_many", "window"):
            buf[plan.slots.unsqueeze(1).expand_as(plan.positions), plan.positions] = hidden
        elif plan.kind == "decode":
            buf[self._rows, plan.positions] = hidden[:, 0]
        else:
            buf[self._rows.unsqueeze(1).expand_as(plan.positions), plan.positions] = hidden

    def get_seq_length(self, layer_idx: int = 0) -> int:
        return 0 if self.plan is None else self.plan.kv_len

    @property
    def is_compileable(self) -> bool:  # noqa: D401
        return False

    def copy_slot(self, src: int, dst: int, length: int) -> None:
        """Copy the first `length` cached positions of slot `src` into slot `dst` (prefix sharing)."""
        for k_buf, v_buf in zip(self.keys, self.values):
            k_buf[dst, :, :length] = k_buf[src, :, :length]
            v_buf[dst, :, :length] = v_buf[src, :, :length]
        if self.hidden is not None:
            self.hidden[dst, :length] = self.hidden[src, :length]
