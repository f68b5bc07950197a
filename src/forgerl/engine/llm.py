"""The built-in inference engine: continuous batching and prefix reuse on any transformers causal LM.

Why not `model.generate`: an agentic RL workload is many sessions, each sending a request that
extends its previous context by a tool result. `generate` recomputes the whole context every turn
and cannot let requests join a running batch. Here one scheduler task owns the model:

    loop:  admit waiting requests into free KV slots (reusing the longest cached prefix, so only
           the new tokens are prefilled) -> one decode step for every running request -> stream
           each sampled token (id + raw logprob) back to its caller -> free finished slots

With `speculative` > 0 (a policy with MTP heads, model/mtp.py) the decode step drafts up to N tokens
per request with the MTP modules (each depth keeps a small cache of its own, so a round computes only
the positions new since the last) and verifies them all in one forward of the main model, accepting
by lossless speculative sampling (engine/speculative.py): same tokens for greedy, the same
distribution otherwise, logprobs always the main model's. How many drafts a request gets adapts to
how many its heads have been getting accepted (`DraftDepth`): untrained or stale heads soon draft
nothing, and a step where no row drafts is a plain decode step.

The steps run as a task on the caller's event loop (see `_start_scheduler`). Every result carries
the policy version the request started with (the oldest that sampled any of its tokens, if a weight
update landed mid-request); `update_weights` swaps weights between two steps.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import threading
import time
from collections import deque
from collections.abc import AsyncIterator, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import torch

from forgerl.cores import Share
from forgerl.engine.base import (
    GenerationResult,
    SamplingParams,
    TokenEvent,
    common_prefix_len,
    final_result,
)
from forgerl.engine.kv import SlotKVCache, WritePlan
from forgerl.engine.sampling import sample_rows
from forgerl.engine.speculative import DraftDepth, propose, verify_row
from forgerl.errors import ConfigError, ContextLengthError, EngineError
from forgerl.model.mtp import MTPHeads, get_mtp
from forgerl.types import Timings
from forgerl.weights.check import check_weight_push


@dataclass
class _Request:
    prompt_ids: list[int]
    params: SamplingParams
    session_id: str | None
    loop: asyncio.AbstractEventLoop
    queue: asyncio.Queue
    generator: torch.Generator
    stop_ids: frozenset[int]
    created: float = field(default_factory=time.perf_counter)
    completion: list[int] = field(default_factory=list)
    logprobs: list[float] = field(default_factory=list)
    version: int = 0
    cached_tokens: int = 0
    prefill_s: float = 0.0
    started: float = 0.0
    cancelled: bool = False
    want_tokens: bool = True  # stream() callers get TokenEvents; generate() callers only the result
    drafting: DraftDepth | None = None  # speculative decoding: how many drafts pay for this request

    def emit(self, item: Any) -> None:
        try:
            if _current_loop() is self.loop:
                self.queue.put_nowait(item)
            else:
                self.loop.call_soon_threadsafe(self.queue.put_nowait, item)
        except RuntimeError:  # the caller's event loop is gone: nobody is listening any more
            self.cancelled = True


def _current_loop() -> asyncio.AbstractEventLoop | None:
    try:
        return asyncio.get_running_loop()
    except RuntimeError:
        return None


MIN_SHARED_PREFILL = 16
"""Prompt tokens a request must gain by waiting one step for another request's prefill (engine
step: `_prefix_comes_with`); below this, computing them again is cheaper than the wait."""


@dataclass
class _Slot:
    index: int
    tokens: list[int] = field(default_factory=list)  # ids whose keys/values are cached, in order
    request: _Request | None = None
    session_id: str | None = None
    last_used: float = 0.0
    # per MTP depth k: positions [draft_lo[k], draft_hi[k]) hold final keys/values and outputs of
    # that depth in its cache (speculative decoding; see LLMEngine._draft)
    draft_lo: list[int] = field(default_factory=list)
    draft_hi: list[int] = field(default_factory=list)
    drafting: DraftDepth | None = None  # the last request's draft-length estimate, for its session's next one


class LLMEngine:
    """Token-in/token-out generation with continuous batching and per-slot prefix reuse."""

    def __init__(
        self,
        model: Any,
        tokenizer: Any,
        *,
        model_name: str = "model",
        max_context: int = 2048,
        num_slots: int = 32,
        max_prefill_batch: int = 8,
        stop_token_ids: tuple[int, ...] = (),
        fp32_lm_head: bool = True,
        policy_version: int = 0,
        threads: Share | None = None,
        speculative: int | None = None,
    ) -> None:
        cfg = model.config
        self.model = model
        self.tokenizer = tokenizer
        self.model_name = model_name
        self.max_context = max_context
        self.policy_version = policy_version
        self.fp32_lm_head = fp32_lm_head
        self.default_stop_ids = frozenset(stop_token_ids)
        self.max_prefill_batch = max_prefill_batch
        self.threads = threads  # the core plan's share for the thread that runs the steps (forgerl/cores.py)
        self.device = next(model.parameters()).device
        self._decoder = model.base_model
        self._lm_head = model.get_output_embeddings()
        head_dim = getattr(cfg, "head_dim", None) or cfg.hidden_size // cfg.num_attention_heads
        kv_heads = getattr(cfg, "num_key_value_heads", None) or cfg.num_attention_heads
        dtype = next(model.parameters()).dtype
        self._mtp, self.speculative = _speculation(model, speculative)
        # one extra position per slot is scratch space for idle rows inside a decode batch
        self.kv = SlotKVCache(cfg.num_hidden_layers, num_slots, kv_heads, max_context + 1, head_dim, dtype, self.device,
                              hidden_size=cfg.hidden_size if self.speculative else None)
        self.slots = [_Slot(i, draft_lo=[0] * self.speculative, draft_hi=[0] * self.speculative)
                      for i in range(num_slots)]
        # one small cache per MTP depth (its own layers' keys/values and outputs h^k), so each draft
        # round computes only the positions that are new since the last one
        self._draft_caches = [] if not self.speculative or self._mtp is None else [
            SlotKVCache(self._mtp.layers_per_module, num_slots, kv_heads, max_context + 1, head_dim, dtype, self.device,
                        hidden_size=cfg.hidden_size) for _ in range(self.speculative)]
        self._waiting: deque[_Request] = deque()
        self._lock = threading.Lock()  # guards the waiting queue and who runs the scheduler
        self._model_lock = threading.Lock()  # one engine step or one weight update at a time
        self._scheduler_loop: asyncio.AbstractEventLoop | None = None
        self._closed = False
        self._torn: str | None = None  # why the weights are half-written (a copy failed mid-push), or None
        self.stats: dict[str, Any] = {"prompt_tokens": 0, "cached_tokens": 0, "generated_tokens": 0,
                                      "decode_steps": 0, "prefill_forwards": 0}
        if self.speculative:  # cumulative; acceptance at depth k = accepted[k] / proposed[k]
            self.stats["spec"] = {"proposed": [0] * self.speculative, "accepted": [0] * self.speculative,
                                  "row_forwards": 0, "tokens": 0}

    # ------------------------------------------------------------------ public API
    async def generate(self, prompt_ids: list[int], params: SamplingParams, session_id: str | None = None) -> GenerationResult:
        return await final_result(self.stream(prompt_ids, params, session_id, _tokens=False))

    async def stream(
        self, prompt_ids: list[int], params: SamplingParams, session_id: str | None = None, *, _tokens: bool = True
    ) -> AsyncIterator[TokenEvent | GenerationResult]:
        request = self._make_request(list(prompt_ids), params.validate(), session_id)
        request.want_tokens = _tokens
        with self._lock:
            if self._closed:
                raise EngineError("the engine is closed")
            self._waiting.append(request)
            if self._scheduler_loop is None:
                self._start_scheduler(request.loop)
        try:
            while True:
                item = await request.queue.get()
                if isinstance(item, BaseException):
                    raise item
                yield item
                if isinstance(item, GenerationResult):
                    return
        finally:
            request.cancelled = True  # a caller that stops listening frees its slot at the next step

    def update_weights(self, state_dict: Mapping[str, torch.Tensor], version: int) -> None:
        """Load new weights in place between two steps; cached prefixes of idle slots are dropped
        (their keys/values came from the old weights). Running requests continue on the new weights.

        All or nothing: every tensor's name, shape, dtype kind and finiteness is checked before the
        first one is written, so a refused push (EngineError naming the tensor) leaves the weights
        and `policy_version` exactly as they were. Only a failure inside the copy itself (a device
        error) can leave the model half-written; the engine then refuses to sample until a push
        that covers every weight lands."""
        with self._model_lock:
            targets = self._weight_tensors()
            parameters = self._parameter_names()
            check_weight_push(state_dict, targets,
                              may_be_non_finite=lambda n: n not in parameters and not bool(torch.isfinite(targets[n]).all()))
            if self._torn is not None and not _covers_all(state_dict, targets, self.model.state_dict(keep_vars=True)):
                raise EngineError(f"the engine's weights are partly applied ({self._torn}); push a full state dict "
                                  "(every parameter and buffer) to repair it")
            try:
                with torch.no_grad():
                    for name, tensor in state_dict.items():
                        targets[name].copy_(tensor)
            except Exception as exc:
                self._torn = f"a push of version {version} failed while copying: {type(exc).__name__}: {exc}"
                self._fail_all(EngineError(f"weights partly applied: {self._torn}"))
                raise EngineError(f"weights partly applied: {self._torn}; the engine refuses requests until a full "
                                  "push lands") from exc
            self._torn = None
            self.policy_version = version
            for slot in self.slots:
                if slot.request is None:  # (new weights: drafting estimates start over too)
                    slot.tokens, slot.session_id, slot.drafting = [], None, None

    async def aclose(self) -> None:
        self.close()

    def close(self) -> None:
        """Stop serving: requests still waiting or running fail with an EngineError."""
        with self._lock:
            self._closed = True
        with self._model_lock:
            self._fail_all(EngineError("the engine was closed while the request was in flight"))

    # ------------------------------------------------------------------ scheduler
    def _start_scheduler(self, loop: asyncio.AbstractEventLoop) -> None:
        """Run the step loop as a task on `loop` (call with self._lock held).

        The steps run on the caller's event-loop thread rather than a private thread: measured on
        2 CPU cores, the same forward pass took about twice as long on a secondary Python thread.
        Each step is short (one batched forward); the loop serves other coroutines between steps.
        """
        self._scheduler_loop = loop
        loop.call_soon_threadsafe(lambda: loop.create_task(self._schedule()))

    async def _schedule(self) -> None:
        try:
            if self.threads is not None:  # per thread: the trainer's worker thread keeps its own count
                self.threads.apply()
            while True:
                with self._lock:
                    if self._closed or (not self._waiting and not self._running()):
                        return
                if self.threads is not None:  # more threads between trainer steps, if the plan says so
                    self.threads.follow()
                try:
                    with self._model_lock, torch.inference_mode():
                        self._admit()
                        if self._running():
                            if self.speculative:
                                self._speculative_step()
                            else:
                                self._decode_step()
                except Exception as exc:  # an engine bug must not hang callers: fail what is in flight
                    self._fail_all(EngineError(f"engine step failed: {type(exc).__name__}: {exc}"))
                await asyncio.sleep(0)
        finally:
            with self._lock:
                self._scheduler_loop = None
                # this loop is going away (or has no work): hand pending work to a live caller's loop
                pending = [r for r in self._waiting if not r.cancelled] + [s.request for s in self._running()]
                for req in pending:
                    if not self._closed and not req.loop.is_closed():
                        self._start_scheduler(req.loop)
                        break

    def _running(self) -> list[_Slot]:
        return [s for s in self.slots if s.request is not None]

    def _admit(self) -> None:
        """Move waiting requests into free slots and prefill them together in one forward."""
        admitted: list[_Slot] = []
        deferred: list[_Request] = []
        with self._lock:
            while self._waiting:
                if self._waiting[0].cancelled:
                    self._waiting.popleft()
                    continue
                held = self._held_prefixes(self._waiting[0])  # once per request: both checks below read it
                if self._prefix_comes_with(self._waiting[0], admitted, held):
                    deferred.append(self._waiting.popleft())
                    continue
                slot = self._pick_slot(self._waiting[0], held)
                if slot is None:
                    break
                self._claim(slot, self._waiting.popleft())
                admitted.append(slot)
            self._waiting.extendleft(reversed(deferred))
        for start in range(0, len(admitted), self.max_prefill_batch):
            self._prefill(admitted[start:start + self.max_prefill_batch])

    def _held_prefixes(self, request: _Request) -> dict[int, int]:
        """{slot index: how many leading prompt tokens of `request` that slot's cache holds}."""
        return {s.index: common_prefix_len(s.tokens, request.prompt_ids) for s in self.slots}

    def _prefix_comes_with(self, request: _Request, admitted: list[_Slot], held: dict[int, int]) -> bool:
        """True when a request admitted in this step will compute at least MIN_SHARED_PREFILL
        more of `request`'s prompt than any slot holds now (the G rollouts of a group arriving
        together): `request` waits one step and copies that prefix then, instead of computing it too."""
        if not admitted:
            return False
        cached = max(held.values(), default=0)
        coming = max(common_prefix_len(s.request.prompt_ids, request.prompt_ids) for s in admitted)
        return min(coming, len(request.prompt_ids) - 1) - cached >= MIN_SHARED_PREFILL

    def _pick_slot(self, request: _Request, held: dict[int, int]) -> _Slot | None:
        """The free slot whose cached tokens share the longest prefix with the prompt (a slot last
        used by the same session wins ties); otherwise the least recently used free slot."""
        free = [s for s in self.slots if s.request is None]
        if not free:
            return None

        best = max(free, key=lambda s: (held[s.index], int(s.session_id == request.session_id), -s.last_used))
        shared = held[best.index]
        lru = min(free, key=lambda s: (len(s.tokens) > 0, s.last_used, s.index))
        donor = max(self.slots, key=lambda s: held[s.index])
        if held[donor.index] > shared:
            # a running request holds a longer prefix (another rollout of the group): its first
            # positions are final, copy them into the least useful free slot
            shared = held[donor.index]
            self._copy_prefix(donor, lru, shared)
            lru.tokens, lru.session_id = donor.tokens[:shared], None
            return lru
        if shared == 0:
            return lru
        if shared < len(best.tokens) and best.session_id != request.session_id and lru is not best:
            # `best` holds another session's longer context: copy the shared prefix (e.g. the
            # prompt of a group) into a spare slot instead of evicting that context.
            self._copy_prefix(best, lru, shared)
            lru.tokens, lru.session_id = best.tokens[:shared], None
            return lru
        return best

    def _copy_prefix(self, src: _Slot, dst: _Slot, length: int) -> None:
        """Copy the first `length` cached positions of `src` into `dst` (main cache and drafts')."""
        self.kv.copy_slot(src.index, dst.index, length)
        for cache in self._draft_caches:
            cache.copy_slot(src.index, dst.index, length)
        dst.draft_lo = list(src.draft_lo)
        dst.draft_hi = [min(hi, length - k) for k, hi in enumerate(src.draft_hi, start=1)]

    def _claim(self, slot: _Slot, request: _Request) -> None:
        """Give `slot` to `request`, keeping the cached prefix they share (all but the last prompt
        token at most: the last one must be fed to get the next token's logits)."""
        reuse = min(common_prefix_len(slot.tokens, request.prompt_ids), len(request.prompt_ids) - 1)
        # depth k's output at i read token i+k: final only where that token is still in the prefix
        slot.draft_hi = [min(hi, reuse - k) for k, hi in enumerate(slot.draft_hi, start=1)]
        if slot.drafting is not None and request.session_id is not None and slot.session_id == request.session_id:
            request.drafting = slot.drafting  # the session's next turn: what drafting paid so far still holds
        slot.request, slot.session_id, slot.tokens = request, request.session_id, request.prompt_ids[:reuse]
        request.cached_tokens, request.version, request.started = reuse, self.policy_version, time.perf_counter()

    def _prefill(self, slots: list[_Slot]) -> None:
        """Compute the uncached prompt tokens of `slots` and sample each one's first token."""
        t0 = time.perf_counter()
        news = [s.request.prompt_ids[len(s.tokens):] for s in slots]
        width = max(len(n) for n in news)
        kv_len = max(len(s.request.prompt_ids) for s in slots)
        scratch = self.kv.max_len - 1
        positions = torch.full((len(slots), width), scratch, dtype=torch.long)
        ids = torch.zeros((len(slots), width), dtype=torch.long)
        for r, (s, new) in enumerate(zip(slots, news)):
            positions[r, :len(new)] = torch.arange(len(s.tokens), len(s.tokens) + len(new))
            ids[r, :len(new)] = torch.tensor(new)
        positions, ids = positions.to(self.device), ids.to(self.device)
        if len(slots) == 1:  # one row: cache views, no gather
            s = slots[0]
            self.kv.set_plan(WritePlan("prefill", slot=s.index, start=len(s.tokens), length=width, kv_len=kv_len))
        else:
            index = torch.tensor([s.index for s in slots], device=self.device)
            self.kv.set_plan(WritePlan("prefill_many", slots=index, positions=positions, kv_len=kv_len))
        mask = torch.arange(kv_len, device=self.device)[None, None, :] <= positions[:, :, None]  # [rows, q, kv]
        mask[:, :, 0] |= positions == scratch  # padding queries attend one position; output unused
        last = torch.tensor([len(n) - 1 for n in news], device=self.device)
        logits = self._forward(ids, positions.clamp(max=kv_len), mask[:, None], last_index=last)
        elapsed = time.perf_counter() - t0
        self.stats["prefill_forwards"] += 1
        for s in slots:
            s.tokens = list(s.request.prompt_ids)
            s.request.prefill_s = elapsed
            self.stats["prompt_tokens"] += len(s.request.prompt_ids)
            self.stats["cached_tokens"] += s.request.cached_tokens
        self._accept_tokens(slots, logits)

    def _decode_step(self) -> None:
        running = self._running()
        num_rows = max(s.index for s in running) + 1
        scratch = self.kv.max_len - 1
        tokens, positions = [0] * num_rows, [scratch] * num_rows
        for s in running:
            tokens[s.index], positions[s.index] = s.request.completion[-1], len(s.tokens)
        kv_len = max(len(s.tokens) for s in running) + 1
        pos = torch.tensor(positions, device=self.device)
        self.kv.set_plan(WritePlan("decode", num_rows=num_rows, positions=pos, kv_len=kv_len))
        mask = torch.arange(kv_len, device=self.device).unsqueeze(0) <= pos.clamp(max=kv_len - 1).unsqueeze(1)
        idle = pos == scratch
        mask[idle] = False
        mask[idle, 0] = True  # idle rows attend to one position so softmax stays finite; output unused
        ids = torch.tensor(tokens, device=self.device).unsqueeze(1)
        logits = self._forward(ids, pos.unsqueeze(1), mask[:, None, None, :], last_index=None)
        for s in running:
            s.tokens.append(s.request.completion[-1])
        self.stats["decode_steps"] += 1
        self._accept_tokens(running, logits[[s.index for s in running]])

    def _forward(self, ids: torch.Tensor, positions: torch.Tensor, mask: torch.Tensor,
                 last_index: torch.Tensor | None) -> torch.Tensor:
        """Logits [rows, vocab] at `last_index[row]` (default: the last position) of each row."""
        hidden = self._hidden_states(ids, positions, mask)
        hidden = hidden[:, -1] if last_index is None else hidden[torch.arange(hidden.shape[0], device=hidden.device), last_index]
        return self._logits(hidden)

    def _hidden_states(self, ids: torch.Tensor, positions: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """The main model's last hidden states [rows, q_len, H] under the current write plan (kept
        in the cache for the MTP drafts when speculation is on)."""
        out = self._decoder(input_ids=ids, position_ids=positions, attention_mask=mask, past_key_values=self.kv, use_cache=True)
        self.kv.store_hidden(out.last_hidden_state)
        return out.last_hidden_state

    def _logits(self, hidden: torch.Tensor) -> torch.Tensor:
        """The LM head over hidden states [..., H] -> [..., vocab]."""
        if self.fp32_lm_head:  # M1 found train/inference mismatch until the head ran in FP32 (M2_NOTES §1)
            weight = self._lm_head.weight.float()
            bias = None if self._lm_head.bias is None else self._lm_head.bias.float()
            return torch.nn.functional.linear(hidden.float(), weight, bias)
        return self._lm_head(hidden)

    def _accept_tokens(self, slots: list[_Slot], logits: torch.Tensor) -> None:
        requests = [s.request for s in slots]
        toks, lps = sample_rows(logits, [r.params for r in requests], [r.generator for r in requests])
        for slot, req, tok, lp in zip(slots, requests, toks, lps):
            self._emit_token(slot, req, tok, lp)

    def _emit_token(self, slot: _Slot, req: _Request, tok: int, lp: float) -> bool:
        """Record and stream one sampled token; True when it finished the request."""
        req.completion.append(tok)
        req.logprobs.append(lp)
        self.stats["generated_tokens"] += 1
        if req.want_tokens:
            req.emit(TokenEvent(tok, lp))
        finish = self._finish_reason(req, slot)
        if finish is not None or req.cancelled:
            self._complete(slot, req, finish or "abort")
            return True
        return False

    # ------------------------------------------------------------------ speculative decoding
    def _speculative_step(self) -> None:
        """Draft with the MTP heads, verify every row's token + drafts in one main forward, then
        emit the accepted tokens one by one (stops, stop strings and limits checked per token)."""
        running = self._running()
        counts = [min(self._draft_budget(s), s.request.drafting.limit()) for s in running]
        spec = self.stats["spec"]
        spec["row_forwards"] += len(running)
        if not any(counts):  # no row's drafts pay this round: a plain decode step (the drafts' caches catch up later)
            for s in running:
                s.request.drafting.record(0, 0)
            spec["tokens"] += len(running)
            self._decode_step()
            return
        drafts, qs = self._draft(running, counts)
        logits = self._verify(running, drafts)  # [rows, 1 + max drafts, V] float32
        self.stats["decode_steps"] += 1
        # whole-batch argmax and log-softmax, one call each rather than one per row
        best = logits.argmax(dim=-1).tolist() if any(s.request.params.temperature == 0 for s in running) else None
        outcomes = []
        for r, (slot, row_drafts, row_qs) in enumerate(zip(running, drafts, qs)):
            req = slot.request
            m = len(row_drafts)
            emitted, accepted = verify_row(logits[r, :m + 1], row_drafts, row_qs, req.params, req.generator,
                                           best=None if best is None else best[r][:m + 1])
            req.drafting.record(m, accepted)
            for k in range(m):
                spec["proposed"][k] += 1
                spec["accepted"][k] += int(k < accepted)
            outcomes.append(emitted)
        width = logits.shape[1]
        index = torch.tensor([e + [0] * (width - len(e)) for e in outcomes], device=logits.device)
        # the main model's raw logprobs, never the draft's
        lps = torch.log_softmax(logits, dim=-1).gather(-1, index.unsqueeze(-1)).squeeze(-1).tolist()
        for slot, emitted, row_lps, row_drafts in zip(running, outcomes, lps, drafts):
            req, end, sent = slot.request, len(slot.tokens), 0
            for tok, lp in zip(emitted, row_lps):
                slot.tokens.append(req.completion[-1])  # its keys/values were written by the verify forward
                spec["tokens"] += 1
                sent += 1
                if self._emit_token(slot, req, tok, lp):
                    break  # anything after a finish is discarded
            self._keep_accepted_drafts(slot, end, min(len(emitted) - 1, sent), len(row_drafts))

    def _keep_accepted_drafts(self, slot: _Slot, end: int, known: int, depths: int) -> None:
        """Depth k's positions that read drafts are final after all when those drafts were kept.

        This round depth k computed positions up to end-1 (P-1), position i reading token x_{i+k};
        the drafts read as x_{P+1}..x_{P+known} are now the sequence's own tokens, so positions
        up to P+known-k are final and the next round need not compute them again (at full
        acceptance every depth then runs over the new positions only, not k-1 more)."""
        for d in range(depths):
            slot.draft_hi[d] = max(slot.draft_hi[d], end + min(0, known - d))

    def _draft_budget(self, slot: _Slot) -> int:
        """Drafts for this row: the configured number, fewer near max_tokens or the context limit
        (every emitted token but the last must leave the request unfinished)."""
        req = slot.request
        left = req.params.max_tokens - len(req.completion) - 1
        room = self.max_context - len(slot.tokens) - 2
        return max(0, min(self.speculative, left, room))

    def _draft(self, running: list[_Slot], counts: list[int]) -> tuple[list[list[int]], list[list[torch.Tensor | None]]]:
        """Up to `counts[r]` draft tokens per row from the MTP heads, all rows batched per depth.

        Depth k at position i reads the main model's (k=1) or depth k-1's output at i and token
        x_{i+k}, attending over depth k's last `window` positions. For a row with P cached tokens
        and x_P just sampled, depth k runs over the positions from where its cache stops being
        final to P-1; its output at P-1 drafts token P+k (reading drafts d_1..d_{k-1} as tokens).
        Positions up to P-k read only known tokens and stay final; later ones are recomputed next
        round. A cache far behind (a new turn, a fresh slot) restarts (n-k+1) windows before P, so
        everything the last depth reads at P-1 is computed over full windows, as in training."""
        drafts: list[list[int]] = [[] for _ in running]
        qs: list[list[torch.Tensor | None]] = [[] for _ in running]
        heads = self._mtp
        assert heads is not None
        embed = self.model.get_input_embeddings()
        for k in range(1, max(counts, default=0) + 1):
            active = [r for r, c in enumerate(counts) if c >= k]
            # rows catching up (a new turn's tokens) run apart from the steady ones (a few new
            # positions each), so the steady rows are not padded to the catch-up width
            steady = [r for r in active if len(running[r].tokens) - self._draft_start(running[r], k) <= self.speculative + k]
            rows, outputs = [], []
            for group in (steady, [r for r in active if r not in steady]):
                if group:
                    rows += group
                    outputs.append(self._depth_forward(heads, embed, k, [running[r] for r in group],
                                                       [drafts[r] for r in group]))
            hidden = torch.cat(outputs)
            requests = [running[r].request for r in rows]
            toks, row_qs = propose(self._logits(heads.head_input(k, hidden)), [q.params for q in requests],
                                   [q.generator for q in requests], [True] * len(rows))
            for i, r in enumerate(rows):
                drafts[r].append(toks[i])
                qs[r].append(row_qs[i])
        return drafts, qs

    def _draft_start(self, slot: _Slot, k: int) -> int:
        """Where depth k resumes for `slot`: its final frontier, or a restart (n-k+1) windows
        before the slot's end when the cache is further behind than that (or holds nothing there)."""
        assert self._mtp is not None
        d = k - 1
        restart = max(0, len(slot.tokens) - (self.speculative - k + 1) * self._mtp.window)
        if slot.draft_hi[d] < restart or slot.draft_lo[d] > restart:
            slot.draft_lo[d] = slot.draft_hi[d] = restart
        return slot.draft_hi[d]

    def _depth_forward(self, heads: MTPHeads, embed: Any, k: int, slots: list[_Slot],
                       drafts: list[list[int]]) -> torch.Tensor:
        """Depth k over each slot's new positions (see `_draft`); its outputs at P-1 [rows, H].

        Every index tensor is built from Python lists in one call each: at batch 1 a depth's
        layer runs in under a millisecond, so each small tensor op here is a visible share of it."""
        window, cache, d = heads.window, self._draft_caches[k - 1], k - 1
        previous = self.kv.hidden if k == 1 else self._draft_caches[k - 2].hidden
        assert previous is not None and cache.hidden is not None
        scratch = cache.max_len - 1
        spans = []
        for slot in slots:
            start = self._draft_start(slot, k)
            spans.append((start, len(slot.tokens), max(slot.draft_lo[d], start - window + 1)))
        width = max(end - start for start, end, _ in spans)
        keys_width = max(end - first_key for _, end, first_key in spans)
        token_rows, position_rows, key_rows = [], [], []
        for slot, row_drafts, (start, end, first_key) in zip(slots, drafts, spans):
            # x_{i+k} for i in [start, end): cached tokens, then x_P (just sampled), then this round's drafts
            ahead = [slot.request.completion[-1], *row_drafts]
            pad = width - (end - start)
            token_rows.append(slot.tokens[start + k:end] + ahead[max(0, start + k - end):k] + [0] * pad)
            position_rows.append([*range(start, end), *[scratch] * pad])
            key_rows.append([*range(first_key, end), *[scratch] * (keys_width - (end - first_key))])
        device = self.device
        positions = torch.tensor(position_rows, device=device)
        key_positions = torch.tensor(key_rows, device=device)
        index = torch.tensor([s.index for s in slots], device=device)
        padded = any(end - start < width for start, end, _ in spans)
        # a padding query stands at position 0 (its output is never read); gathered keys all lie at
        # or after the slot's draft_lo, and padding keys (the scratch position) after every query
        query = positions.masked_fill(positions == scratch, 0) if padded else positions
        q, kp = query[:, :, None], key_positions[:, None, :]
        mask = (kp <= q) & (kp > q - window)
        if padded:
            mask[:, :, 0] |= (positions == scratch)  # padding queries attend one key so softmax stays finite
        cache.set_plan(WritePlan("window", slots=index, positions=positions, key_positions=key_positions))
        module = heads.depths[k - 1]
        x = module.eh_proj(torch.cat([module.hnorm(previous[index.unsqueeze(1), positions]),
                                      module.enorm(embed(torch.tensor(token_rows, device=device)))], dim=-1))
        pos_emb = heads.position_embeddings(x, query)
        for layer in module.layers:
            out = layer(x, position_embeddings=pos_emb, attention_mask=mask[:, None], past_key_values=cache)
            x = out[0] if isinstance(out, tuple) else out
        cache.store_hidden(x)
        for slot, (_, end, _) in zip(slots, spans):  # positions up to P-k read only known tokens
            slot.draft_hi[d] = max(slot.draft_hi[d], end - k + 1)
        if not padded:
            return x[:, -1]
        last = torch.tensor([end - start - 1 for start, end, _ in spans], device=device)
        return x[torch.arange(len(slots), device=device), last]

    def _verify(self, running: list[_Slot], drafts: list[list[int]]) -> torch.Tensor:
        """One main-model forward over [last sampled token, drafts...] of every running row (slots
        0..n as views, idle rows and padding at the scratch position); logits [running, q, V]."""
        num_rows = max(s.index for s in running) + 1
        width = 1 + max(len(d) for d in drafts)
        scratch = self.kv.max_len - 1
        id_rows, position_rows = [[0] * width for _ in range(num_rows)], [[scratch] * width for _ in range(num_rows)]
        for slot, row in zip(running, drafts):
            start = len(slot.tokens)
            id_rows[slot.index][:len(row) + 1] = [slot.request.completion[-1], *row]
            position_rows[slot.index][:len(row) + 1] = range(start, start + len(row) + 1)
        kv_len = max(len(s.tokens) + len(d) for s, d in zip(running, drafts)) + 1
        positions = torch.tensor(position_rows, device=self.device)
        self.kv.set_plan(WritePlan("verify", num_rows=num_rows, positions=positions, kv_len=kv_len))
        # causal; a padding query stands at position 0, so it attends exactly one key (softmax stays
        # finite; its output is never read) and its rotary position is a valid one
        query = positions.masked_fill(positions == scratch, 0)
        mask = torch.arange(kv_len, device=self.device)[None, None, :] <= query[:, :, None]
        with _gqa_without_copies(self.device):
            hidden = self._hidden_states(torch.tensor(id_rows, device=self.device), query, mask[:, None])
        rows = hidden if len(running) == num_rows else hidden[[s.index for s in running]]
        return self._logits(rows).float()

    def _finish_reason(self, req: _Request, slot: _Slot) -> tuple[str, str | int | None] | None:
        tok = req.completion[-1]
        if tok in req.stop_ids:
            return ("stop", tok)
        if req.params.stop:
            tail = self.tokenizer.decode(req.completion[-16:], skip_special_tokens=False)
            for s in req.params.stop:
                if s in tail:
                    return ("stop", s)
        if len(req.completion) >= req.params.max_tokens or len(slot.tokens) + 1 >= self.max_context:
            return ("length", None)
        return None

    def _complete(self, slot: _Slot, req: _Request, finish: tuple[str, str | int | None] | str) -> None:
        reason, stop_reason = finish if isinstance(finish, tuple) else (finish, None)
        now = time.perf_counter()
        timings = Timings(queued_s=req.started - req.created, prefill_s=req.prefill_s,
                          decode_s=now - req.started - req.prefill_s, total_s=now - req.created)
        req.emit(GenerationResult(
            completion_ids=list(req.completion), logprobs=list(req.logprobs), finish_reason=reason,
            policy_version=req.version, prompt_tokens=len(req.prompt_ids), cached_tokens=req.cached_tokens,
            stop_reason=stop_reason, timings=timings))
        slot.request, slot.last_used, slot.drafting = None, now, req.drafting

    # ------------------------------------------------------------------ helpers
    def _make_request(self, prompt_ids: list[int], params: SamplingParams, session_id: str | None) -> _Request:
        if not prompt_ids:
            raise EngineError("empty prompt: at least one token is needed")
        if self._torn is not None:
            raise EngineError(f"the engine's weights are partly applied ({self._torn}); push a full set of weights")
        if len(prompt_ids) >= self.max_context:
            raise ContextLengthError(
                f"prompt has {len(prompt_ids)} tokens but the context limit is {self.max_context} "
                "(shorten the prompt or start the engine with a larger max_context)")
        vocab = self._lm_head.weight.shape[0]
        if min(prompt_ids) < 0 or max(prompt_ids) >= vocab:
            raise EngineError(f"prompt token ids must lie in [0, {vocab}); got min {min(prompt_ids)}, max {max(prompt_ids)}")
        gen = torch.Generator(device=self.device)
        gen.manual_seed(params.seed if params.seed is not None else int(torch.randint(0, 2**62, (1,))))
        return _Request(prompt_ids=prompt_ids, params=params, session_id=session_id, loop=asyncio.get_running_loop(),
                        queue=asyncio.Queue(), generator=gen, stop_ids=self.default_stop_ids | frozenset(params.stop_token_ids),
                        drafting=DraftDepth(self.speculative) if self.speculative else None)

    def _weight_tensors(self) -> dict[str, torch.Tensor]:
        """Parameters and buffers by state-dict name (buffers such as an MoE router's selection
        bias change during training too). Tied weights answer to every name they have: a state
        dict of a model with tied embeddings (SmolLM2) holds both `embed_tokens.weight` and
        `lm_head.weight`, and both must be accepted."""
        return {**dict(self.model.named_buffers(remove_duplicate=False)),
                **dict(self.model.named_parameters(remove_duplicate=False))}

    def _parameter_names(self) -> set[str]:
        return {name for name, _ in self.model.named_parameters(remove_duplicate=False)}

    def _fail_all(self, exc: EngineError) -> None:
        with self._lock:
            waiting, self._waiting = list(self._waiting), deque()
        for req in waiting:
            req.emit(exc)
        for slot in self.slots:
            if slot.request is not None:
                slot.request.emit(exc)
                slot.request, slot.tokens = None, []


GQA_ENV = "TRANSFORMERS_SDPA_FORCE_GQA"


@contextlib.contextmanager
def _gqa_without_copies(device: torch.device) -> Iterator[None]:
    """On CPU, let SDPA read grouped key/value heads directly during a verify forward.

    Why: with a mask and more than one query token (a verify forward has 1 + drafts per row),
    transformers copies every cached key/value once per query-head group (`repeat_kv`) in each
    layer; at batch 16 over ~1.4k-token agent contexts that copy cost as much as the drafting.
    A single-query decode step avoids it already (`pack_gqa`). SDPA's own `enable_gqa` computes
    the same attention without the copy; transformers takes that path when this variable is set.
    On CUDA it would push masked attention off the fast kernels, so it is left alone there."""
    if device.type != "cpu" or os.environ.get(GQA_ENV) is not None:
        yield
        return
    os.environ[GQA_ENV] = "1"
    try:
        yield
    finally:
        os.environ.pop(GQA_ENV, None)


def _speculation(model: Any, speculative: int | None) -> tuple[MTPHeads | None, int]:
    """(the MTP heads, drafts per round) for the `speculative` option: None = one draft per MTP
    module the model has (0 without heads), 0 = off."""
    heads = get_mtp(model)
    modules = 0 if heads is None else len(heads.depths)
    if speculative is None:
        return heads, modules
    if speculative < 0:
        raise ConfigError(f"speculative must be >= 0 draft tokens (0 = off, unset = one per MTP module), got {speculative}")
    if speculative > 0 and heads is None:
        raise ConfigError(f"speculative = {speculative} needs a policy with MTP heads, and this one has none: add them "
                          "(`forgerl mtp add`) or set speculative = 0")
    if speculative > modules:
        raise ConfigError(f"speculative = {speculative} draft tokens but the policy has {modules} MTP module(s), one "
                          f"per draft depth: use at most {modules} (or expand the heads)")
    return heads, speculative


def _covers_all(state_dict: Mapping[str, Any], targets: Mapping[str, torch.Tensor],
                model_state: Mapping[str, torch.Tensor]) -> bool:
    """True when the push writes every tensor of the model's state dict (non-persistent buffers
    are derived, not pushed; tied names share storage, so one of them is enough)."""
    written = {targets[name].data_ptr() for name in state_dict}
    return all(t.data_ptr() in written for t in model_state.values() if t.numel())
