"""The windowed FIFO: which finished rollouts the trainer may take, and when (M2_NOTES §4).

Rollouts get tickets 0, 1, 2, ... in submission order. The *head* is the oldest ticket not yet
consumed or dropped. The trainer may take any *finished* ticket in [head, head + W - 1]; a finished
ticket beyond the window waits even though it is done, and the window moves only as the head is
consumed. W = 1 is strict FIFO (head-of-line blocking: one slow rollout stalls everything), W = inf
is greedy first-finished (batches skew to short, easy tasks early and hard ones late); MiniMax uses
W = 0.3 N. Positions inside the window stay counted after they are taken out of order, so a
ticket is never more than W - 1 places ahead of the oldest unconsumed one.

Staleness: a rollout sampled at policy version v and taken at version c is c - v versions stale
(DESIGN contract 6; v is the oldest version any of its calls used). Beyond `max_staleness` it is
either *re-queued* (it keeps its ticket, so its place in the order, and is generated again) or
*dropped* (the ticket is closed and the window moves past it); both are counted.

This module is pure bookkeeping (no asyncio, no clock) so the guarantees can be property-tested
directly; `scheduler.py` drives it with real concurrent rollouts.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from enum import Enum
from typing import Any, Literal

from forgerl.errors import ConfigError

StalePolicy = Literal["requeue", "drop"]


class TicketState(str, Enum):
    PENDING = "pending"  # submitted, waiting to be (re)generated
    RUNNING = "running"
    FINISHED = "finished"  # result available, not taken yet
    CONSUMED = "consumed"
    DROPPED = "dropped"


@dataclass
class Ticket:
    index: int
    spec: Any
    state: TicketState = TicketState.PENDING
    result: Any = None
    version: int | None = None  # oldest policy version that produced `result`
    attempts: int = 0  # generations started (re-queues and retries add one each)

    @property
    def closed(self) -> bool:
        return self.state in (TicketState.CONSUMED, TicketState.DROPPED)


@dataclass
class Taken:
    """What one `take` did: the tickets handed out (in ticket order) and the stale ones handled."""

    tickets: list[Ticket] = field(default_factory=list)
    staleness: list[int] = field(default_factory=list)  # per taken ticket, at take time
    requeued: list[Ticket] = field(default_factory=list)
    dropped: list[Ticket] = field(default_factory=list)


class WindowedFIFO:
    """Bookkeeping of submitted rollouts: submit -> start -> finish -> take (or re-queue / drop).

    window: W >= 1, or None for unbounded (greedy). max_staleness: None for unbounded.
    """

    def __init__(self, window: int | None, *, max_staleness: int | None = None,
                 on_stale: StalePolicy = "requeue") -> None:
        if window is not None and window < 1:
            raise ConfigError(f"window must be >= 1 (1 = strict FIFO) or None (greedy), got {window}")
        if max_staleness is not None and max_staleness < 0:
            raise ConfigError(f"max_staleness must be >= 0 or None (unbounded), got {max_staleness}")
        if on_stale not in ("requeue", "drop"):
            raise ConfigError(f"on_stale must be 'requeue' or 'drop', got {on_stale!r}")
        self.window = window
        self.max_staleness = max_staleness
        self.on_stale: StalePolicy = on_stale
        self.tickets: dict[int, Ticket] = {}  # open tickets only (closed ones are forgotten)
        self.next_index = 0
        self.head = 0
        self.counts = {"submitted": 0, "consumed": 0, "stale_requeued": 0, "stale_dropped": 0, "dropped": 0}

    # -- lifecycle -----------------------------------------------------------------------
    def submit(self, spec: Any, *, index: int | None = None) -> Ticket:
        """A new ticket at the end of the order (or at `index` when restoring a crashed run)."""
        index = self.next_index if index is None else index
        if index in self.tickets or index < self.head:
            raise ValueError(f"ticket {index} is already known (head {self.head})")
        ticket = Ticket(index, spec)
        self.tickets[index] = ticket
        self.next_index = max(self.next_index, index + 1)
        self.counts["submitted"] += 1
        return ticket

    def start(self, index: int) -> Ticket:
        ticket = self._open(index, TicketState.PENDING)
        ticket.state, ticket.attempts = TicketState.RUNNING, ticket.attempts + 1
        return ticket

    def finish(self, index: int, result: Any, version: int) -> Ticket:
        ticket = self._open(index, TicketState.RUNNING, TicketState.PENDING)
        ticket.state, ticket.result, ticket.version = TicketState.FINISHED, result, version
        return ticket

    def retry(self, index: int) -> Ticket:
        """A running rollout that must be generated again (its worker failed)."""
        ticket = self._open(index, TicketState.RUNNING)
        ticket.state = TicketState.PENDING
        return ticket

    def drop(self, index: int) -> Ticket:
        """Close a ticket without training on it (e.g. it failed too often)."""
        ticket = self._open(index, *TicketState)
        self._close(ticket, TicketState.DROPPED)
        self.counts["dropped"] += 1
        return ticket

    # -- what the trainer sees -----------------------------------------------------------
    def window_end(self) -> int:
        """One past the last ticket index the trainer may take now."""
        return self.next_index if self.window is None else self.head + self.window

    def in_window(self) -> list[Ticket]:
        end = self.window_end()
        return [self.tickets[i] for i in sorted(self.tickets) if i < end]

    def take(self, current_version: int, limit: int | None = None) -> Taken:
        """Hand out up to `limit` finished tickets from the window, oldest first, within the
        staleness bound; stale ones met on the way are re-queued or dropped. Repeats while the
        window moves (a dropped or taken head makes room for more)."""
        out = Taken()
        while limit is None or len(out.tickets) < limit:
            progressed = False
            for ticket in self.in_window():
                if limit is not None and len(out.tickets) >= limit:
                    break
                if ticket.state is not TicketState.FINISHED:
                    continue
                stale = current_version - (ticket.version if ticket.version is not None else current_version)
                if self.max_staleness is not None and stale > self.max_staleness:
                    if self.on_stale == "drop":
                        self._close(ticket, TicketState.DROPPED)
                        self.counts["stale_dropped"] += 1
                        out.dropped.append(ticket)
                    else:
                        ticket.state, ticket.result, ticket.version = TicketState.PENDING, None, None
                        self.counts["stale_requeued"] += 1
                        out.requeued.append(ticket)
                    progressed = True
                    continue
                self._close(ticket, TicketState.CONSUMED)
                self.counts["consumed"] += 1
                out.tickets.append(ticket)
                out.staleness.append(stale)
                progressed = True
            if not progressed:
                break
        out.tickets.sort(key=lambda t: t.index)
        return out

    def pending(self) -> list[Ticket]:
        return [self.tickets[i] for i in sorted(self.tickets) if self.tickets[i].state is TicketState.PENDING]

    def open_count(self) -> int:
        return len(self.tickets)

    # -- internals -----------------------------------------------------------------------
    def _open(self, index: int, *states: TicketState) -> Ticket:
        ticket = self.tickets.get(index)
        if ticket is None:
            raise KeyError(f"ticket {index} is not open (already consumed, dropped, or never submitted)")
        if ticket.state not in states:
            raise ValueError(f"ticket {index} is {ticket.state.value}, expected {' or '.join(s.value for s in states)}")
        return ticket

    def _close(self, ticket: Ticket, state: TicketState) -> None:
        ticket.state = state
        del self.tickets[ticket.index]
        if ticket.index == self.head:
            self.head = min(self.tickets, default=self.next_index)


def default_window(capacity: int) -> int:
    """M2's W = 0.3 N, at least 1."""
    return max(1, math.ceil(0.3 * capacity))
