"""Asynchronous rollouts for the trainer: workers keep generating while the trainer trains.

    scheduler = RolloutScheduler(produce, specs, SchedulerConfig(mode="windowed", capacity=32,
                                 batch_size=8, max_staleness=4), current_version=lambda: run.version)
    async for batch in scheduler.batches():
        await asyncio.to_thread(train_step, batch.results)   # rollouts continue meanwhile
        run.push_weights()                                   # version + 1
        batch.ack(step)                                      # durable: these were trained on

`produce(spec)` is any coroutine that runs one rollout (a Trajectory, or a group of them) from a
task spec; `specs` is the ordered task stream. Up to `capacity` tickets (N) are open at once —
running, or finished and waiting — and each window of the windowed FIFO (`window.py`) decides
what the trainer may take. Modes, for comparison (M2_NOTES §4, AReaL):

* `windowed`: W = `window` (default 0.3 N);  `fifo`: W = 1;  `greedy`: W = N (first finished);
* `sync`: no generation during training — a batch is submitted when asked for, awaited whole and
  handed over (N = W = batch size, staleness 0). Only the oldest batch's tickets run, so after a
  restart that re-opened several batches' tickets the later ones wait for their own step.

Everything here runs on the caller's event loop, as the built-in engine's scheduler does; a
synchronous training step must therefore run in a thread (`asyncio.to_thread`) or the rollouts
stop while it runs.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from forgerl.rollout.window import StalePolicy, Ticket, WindowedFIFO, default_window

log = logging.getLogger(__name__)

Mode = Literal["windowed", "fifo", "greedy", "sync"]


class RolloutConfig(BaseModel):
    """How rollouts are collected: the training config's `[rollout]` table (M2_NOTES §4; a ticket
    is one group). `sync` is on-policy (collect a batch, train on it, repeat); in the other modes
    rollouts keep generating while the trainer trains. The batch size is not here: training takes
    it from `groups_per_step` (`scheduler(batch_size)`). Strict types, as the rest of the config."""

    model_config = ConfigDict(extra="forbid", use_attribute_docstrings=True, validate_assignment=True, strict=True)

    mode: Mode = "sync"
    """sync (on-policy), windowed FIFO (M2's Forge), strict fifo (W = 1) or greedy first-finished."""
    capacity: int | None = Field(None, ge=1)
    """N: tickets (groups) open at once (running, or finished and not yet trained on). Default 4 x the
    batch size; sync: the batch size."""
    window: int | None = Field(None, ge=1)
    """W of the windowed mode: the trainer may take any finished ticket among the W oldest open ones
    (default ceil(0.3 N), M2). Only valid with mode = 'windowed'."""
    max_staleness: int | None = Field(None, ge=0)
    """Most policy versions a trained-on rollout may lag the trainer (None: unbounded)."""
    on_stale: StalePolicy = "requeue"
    """A rollout beyond max_staleness is generated again in its place, or dropped."""
    max_attempts: int = Field(3, ge=1)
    """Generations a ticket may start (failures and re-queues) before it is dropped."""

    def scheduler(self, batch_size: int) -> SchedulerConfig:
        """The scheduler's config for batches of `batch_size` tickets (checked when built)."""
        return SchedulerConfig(batch_size=batch_size, **self.model_dump())


class SchedulerConfig(RolloutConfig):
    """A RolloutConfig with its batch size: what the scheduler runs on; checked when built.
    Built directly (benchmarks, tests) its mode defaults to windowed FIFO."""

    mode: Mode = "windowed"
    """windowed FIFO (M2), strict fifo, greedy first-finished, or synchronous."""
    batch_size: int = Field(8, ge=1)
    """Rollouts (tickets) per batch handed to the trainer."""

    @model_validator(mode="after")
    def _check(self) -> SchedulerConfig:
        if self.window is not None and self.mode != "windowed":
            raise ValueError(f"window is only used by mode='windowed' (mode={self.mode!r} fixes its own)")
        if self.mode == "sync" and self.capacity not in (None, self.batch_size):
            raise ValueError("mode='sync' generates exactly one batch at a time: leave capacity unset")
        if self.capacity is not None and self.capacity < self.batch_size:
            raise ValueError(f"capacity ({self.capacity}) must be >= batch_size ({self.batch_size}), "
                             "or a batch could never fill")
        span = self.reorder_span
        if self.max_staleness is not None and span is not None and self.max_staleness * self.batch_size < span - 1:
            raise ValueError(
                f"max_staleness={self.max_staleness} cannot be guaranteed with mode={self.mode!r}: rollouts can be "
                f"taken up to {self.reorder_span - 1} places out of order, more than max_staleness x batch_size = "
                f"{self.max_staleness * self.batch_size}; raise max_staleness or narrow the window / capacity")
        return self

    @property
    def reorder_span(self) -> int | None:
        """How far out of submission order a ticket can be taken: W (1 when synchronous); None
        when greedy — a slow rollout can be overtaken without limit, so only the take-time
        check (re-queue or drop) bounds its staleness."""
        return 1 if self.mode == "sync" else self.w

    @property
    def n(self) -> int:
        if self.mode == "sync":
            return self.batch_size
        return self.capacity if self.capacity is not None else 4 * self.batch_size

    @property
    def w(self) -> int | None:
        """The effective window (None = unbounded)."""
        return {"fifo": 1, "greedy": None, "sync": self.batch_size}.get(self.mode, self.window or default_window(self.n))


@dataclass
class Batch:
    """Rollouts handed to the trainer at once, in ticket order."""

    results: list[Any]
    tickets: list[int]
    specs: list[Any]
    staleness: list[int]  # per result: trainer version at take time - oldest sampling version
    version: int  # trainer policy version when taken
    wait_s: float  # how long the trainer waited for this batch (its idle time)
    _ack: Callable[[Batch, int], None] | None = field(default=None, repr=False)

    def ack(self, step: int) -> None:
        """Record that this batch was trained on at `step` (with a ledger: durably). Until then a
        restart offers it again."""
        if self._ack is not None:
            self._ack(self, step)


def oldest_version(result: Any) -> int | None:
    """The oldest policy version behind a Trajectory, or a list of them (None: no LLM call)."""
    items = result if isinstance(result, (list, tuple)) else [result]
    versions = [c.policy_version for t in items for c in getattr(t, "calls", [])]
    return min(versions) if versions else None


class RolloutScheduler:
    def __init__(
        self,
        produce: Callable[[Any], Awaitable[Any]],
        specs: Iterable[Any],
        config: SchedulerConfig,
        *,
        current_version: Callable[[], int],
        version_of: Callable[[Any], int | None] = oldest_version,
        ledger: Any = None,
    ) -> None:
        self.config = config
        self.queue = WindowedFIFO(config.w, max_staleness=config.max_staleness, on_stale=config.on_stale)
        self._produce = produce
        self._specs: Iterator[Any] = iter(specs)
        self._specs_done = False
        self._current_version = current_version
        self._version_of = version_of
        self._ledger = ledger
        self._tasks: dict[int, asyncio.Task[None]] = {}
        self._start_version: dict[int, int] = {}
        self._changed: asyncio.Event | None = None
        self.stats: dict[str, float] = {"failed_attempts": 0, "batches": 0, "wait_s": 0.0}
        self.restored: list[Ticket] = []
        self._version_at_start = current_version()
        self._submitted_here = 0
        if ledger is not None:
            self._restore(ledger.load())

    # -- the trainer's side --------------------------------------------------------------
    async def batches(self, max_batches: int | None = None) -> AsyncIterator[Batch]:
        """Batches of `batch_size` rollouts until the task stream and the queue run dry (a last
        partial batch is handed over) or `max_batches` were given. Cancels in-flight rollouts on exit."""
        self._changed = asyncio.Event()
        given = 0
        try:
            while max_batches is None or given < max_batches:
                t0 = time.perf_counter()
                batch = await self._next_batch()
                if batch is None:
                    return
                batch.wait_s = time.perf_counter() - t0
                self.stats["wait_s"] += batch.wait_s
                self.stats["batches"] += 1
                given += 1
                yield batch
        finally:
            await self.aclose()

    async def aclose(self) -> None:
        tasks = list(self._tasks.values())
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self._tasks.clear()

    @property
    def counts(self) -> dict[str, int]:
        return dict(self.queue.counts)

    # -- internals -----------------------------------------------------------------------
    async def _next_batch(self) -> Batch | None:
        assert self._changed is not None
        size = self.config.batch_size
        results: list[Ticket] = []
        staleness: list[int] = []
        while len(results) < size:
            if self.config.mode != "sync":
                self._refill()
            elif self.queue.open_count() == 0:  # sync: exactly what this batch still lacks
                self._refill(limit=size - len(results))
            self._launch()
            taken = self.queue.take(self._current_version(), limit=size - len(results))
            if taken.requeued or taken.dropped:
                self._record_stale(taken)
            results += taken.tickets
            staleness += taken.staleness
            if taken.requeued or taken.dropped or taken.tickets:
                continue  # the window may have moved: look again before waiting
            if self.queue.open_count() == 0 and self._specs_done:
                break
            self._changed.clear()
            await self._changed.wait()
        if self.config.mode != "sync":  # keep generating while the trainer trains on this batch
            self._refill()
            self._launch()
        if not results:
            return None
        order = sorted(range(len(results)), key=lambda i: results[i].index)
        tickets = [results[i] for i in order]
        return Batch(results=[t.result for t in tickets], tickets=[t.index for t in tickets],
                     specs=[t.spec for t in tickets], staleness=[staleness[i] for i in order],
                     version=self._current_version(), wait_s=0.0, _ack=self._ack)

    def _refill(self, limit: int | None = None) -> None:
        """Submit new tickets up to capacity N (a sync batch: exactly one batch), at most `limit`.

        With a staleness bound s, submission also waits for the trainer, so that the bound holds
        by construction instead of by re-queueing (which would hit mostly long, hard rollouts —
        biasing the mix — and stall the window on a regenerated head). While ticket i is open,
        at most i + W - 1 tickets can be closed (everything before the head, and the window), so
        the trainer is at most floor((i + W - 1) / B) versions past the start when i is taken.
        Submitting i only at a version v with i + W - 1 < (v + s + 1) B therefore keeps its
        staleness <= s (AReaL's admission rule, widened by the window). The take-time check
        stays as the safety net (greedy mode, which has no window; an engine whose weights lag
        the trainer's; restored tickets).
        """
        cfg = self.config
        submitted = 0
        while not self._specs_done and self.queue.open_count() < cfg.n and (limit is None or submitted < limit):
            if cfg.max_staleness is not None and cfg.mode != "sync":
                elapsed = self._current_version() - self._version_at_start
                span = cfg.reorder_span or 1
                if self._submitted_here + span - 1 >= (elapsed + cfg.max_staleness + 1) * cfg.batch_size:
                    break
            try:
                spec = next(self._specs)
            except StopIteration:
                self._specs_done = True
                break
            ticket = self.queue.submit(spec)
            self._submitted_here += 1
            submitted += 1
            if self._ledger is not None:
                self._ledger.record_submitted(ticket.index, spec)

    def _launch(self) -> None:
        pending = self.queue.pending()
        if self.config.mode == "sync":  # only the batch being collected: later ones at their own version
            window = {t.index for t in self.queue.in_window()}
            pending = [t for t in pending if t.index in window]
        for ticket in pending:
            if ticket.attempts >= self.config.max_attempts:
                log.warning("rollout ticket %d dropped after %d attempts", ticket.index, ticket.attempts)
                self.queue.drop(ticket.index)
                if self._ledger is not None:
                    self._ledger.record_dropped([ticket.index])
                continue
            self.queue.start(ticket.index)
            self._start_version[ticket.index] = self._current_version()
            self._tasks[ticket.index] = asyncio.get_running_loop().create_task(self._run(ticket))

    async def _run(self, ticket: Ticket) -> None:
        try:
            result = await self._produce(ticket.spec)
        except asyncio.CancelledError:
            raise
        except Exception:  # a bad rollout must not stop the others: retried, then dropped
            log.exception("rollout ticket %d failed (attempt %d)", ticket.index, ticket.attempts)
            self.stats["failed_attempts"] += 1
            self.queue.retry(ticket.index)
        else:
            version = self._version_of(result)
            if version is None:
                version = self._start_version.get(ticket.index, self._current_version())
            if self._ledger is not None:  # durable before the trainer can see it
                await asyncio.to_thread(self._ledger.record_finished, ticket.index, result)
            self.queue.finish(ticket.index, result, version)
        finally:
            self._tasks.pop(ticket.index, None)
            if self._changed is not None:
                self._changed.set()
        if self.config.mode != "sync":
            self._launch()  # a failed attempt is retried at once, not when the trainer next asks

    def _record_stale(self, taken: Any) -> None:
        if self._ledger is None:
            return
        if taken.dropped:
            self._ledger.record_dropped([t.index for t in taken.dropped])
        if taken.requeued:
            self._ledger.record_requeued([t.index for t in taken.requeued])

    def _ack(self, batch: Batch, step: int) -> None:
        if self._ledger is not None:
            self._ledger.record_consumed(batch.tickets, batch.results, step)

    def _restore(self, state: Any) -> None:
        """Re-open what a crashed run left: finished-but-untrained tickets are offered again as
        they are; submitted-but-unfinished ones are generated again; order is kept."""
        self.queue.next_index = state.next_index
        self.queue.head = min(state.open, default=state.next_index)
        for index in sorted(state.open):
            spec = state.open[index]
            ticket = self.queue.submit(spec, index=index)
            self.queue.counts["submitted"] -= 1
            if index in state.finished:
                result = state.finished[index]
                version = self._version_of(result)
                self.queue.finish(index, result, version if version is not None else self._current_version())
            self.restored.append(ticket)
        self.queue.head = min(self.queue.tickets, default=self.queue.next_index)
        for _ in range(state.next_index):  # the task stream resumes after the last spec submitted
            next(self._specs, None)


__all__ = ["Batch", "Mode", "RolloutScheduler", "SchedulerConfig", "oldest_version"]
