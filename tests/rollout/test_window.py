"""Ordering and staleness guarantees of the windowed FIFO, as hypothesis properties.

A random program interleaves submit / start / finish (at the current version) / bump version /
take; a reference model checks every take against the definition in M2_NOTES §4.
"""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from forgerl.errors import ConfigError
from forgerl.rollout.window import TicketState, WindowedFIFO, default_window

ops = st.lists(
    st.one_of(
        st.just(("submit",)),
        st.tuples(st.just("finish"), st.integers(0, 40)),
        st.just(("bump",)),
        st.tuples(st.just("take"), st.integers(1, 6)),
    ),
    max_size=120,
)


def _run(window, max_staleness, on_stale, program):
    q = WindowedFIFO(window, max_staleness=max_staleness, on_stale=on_stale)
    version = 0
    taken_order: list[int] = []
    closed: set[int] = set()
    for op in program:
        if op[0] == "submit":
            t = q.submit({"n": q.next_index})
            q.start(t.index)
        elif op[0] == "finish":
            running = [t for t in q.tickets.values() if t.state in (TicketState.RUNNING, TicketState.PENDING)]
            if running:
                t = running[op[1] % len(running)]
                if t.state is TicketState.PENDING:  # a re-queued ticket is generated again
                    q.start(t.index)
                q.finish(t.index, f"r{t.index}", version)
        elif op[0] == "bump":
            version += 1
        else:
            head_before = q.head
            finished_before = {i for i, t in q.tickets.items() if t.state is TicketState.FINISHED}
            out = q.take(version, limit=op[1])
            yield_info = (head_before, finished_before, out, version, op[1])
            _check_take(q, window, max_staleness, yield_info, closed)
            taken_order += [t.index for t in out.tickets]
            closed |= {t.index for t in out.tickets} | {t.index for t in out.dropped}
        # invariants after every operation
        assert q.head == min(q.tickets, default=q.next_index)
        assert q.head not in closed
        assert q.counts["submitted"] == q.counts["consumed"] + q.counts["stale_dropped"] + q.counts["dropped"] + len(q.tickets)
    return q, taken_order, version


def _check_take(q, window, max_staleness, info, closed):
    head_before, finished_before, out, version, _ = info
    assert len(out.tickets) == len(out.staleness)
    for ticket, stale in zip(out.tickets, out.staleness):
        assert ticket.index not in closed, "a ticket was taken twice"
        assert ticket.index in finished_before, "an unfinished ticket was taken"
        assert ticket.state is TicketState.CONSUMED
        assert stale == version - ticket.version
        if max_staleness is not None:
            assert stale <= max_staleness, "a rollout beyond the staleness bound was handed out"
    if window is not None:
        # a ticket is taken only once every ticket W or more places before it is closed: it was
        # inside [head, head + W - 1] when taken (the head only moves forward, so checking the
        # open tickets after the call is equivalent)
        for t in out.tickets:
            assert all(i > t.index - window for i in q.tickets), f"ticket {t.index} taken outside the window (W {window})"
    limit = info[4]
    if len(out.tickets) < limit:
        # nothing takeable is left behind: no finished ticket remains inside the window
        assert all(t.state is not TicketState.FINISHED for t in q.in_window())
    if out.requeued:
        assert max_staleness is not None
        for t in out.requeued:
            assert t.state is TicketState.PENDING and t.result is None


@settings(max_examples=300, deadline=None)
@given(program=ops, window=st.integers(1, 8), max_staleness=st.one_of(st.none(), st.integers(0, 3)),
       on_stale=st.sampled_from(["requeue", "drop"]))
def test_windowed_take_respects_window_and_staleness(program, window, max_staleness, on_stale):
    _run(window, max_staleness, on_stale, program)


@settings(max_examples=300, deadline=None)
@given(program=ops, max_staleness=st.one_of(st.none(), st.integers(0, 3)))
def test_strict_fifo_consumes_in_submission_order(program, max_staleness):
    _, order, _ = _run(1, max_staleness, "drop", program)
    assert order == sorted(order)


@settings(max_examples=200, deadline=None)
@given(program=ops)
def test_greedy_takes_every_finished_ticket(program):
    q = WindowedFIFO(None)
    for op in program:
        if op[0] == "submit":
            q.start(q.submit(None).index)
        elif op[0] == "finish":
            running = [t for t in q.tickets.values() if t.state is TicketState.RUNNING]
            if running:
                q.finish(running[op[1] % len(running)].index, None, 0)
        elif op[0] == "take":
            finished = sorted(i for i, t in q.tickets.items() if t.state is TicketState.FINISHED)
            out = q.take(0, limit=op[1])
            assert [t.index for t in out.tickets] == finished[:op[1]]


def test_finished_beyond_window_waits_until_head_moves():
    q = WindowedFIFO(2)
    for _ in range(4):
        q.start(q.submit(None).index)
    q.finish(2, "c", 0)
    q.finish(3, "d", 0)
    assert q.take(0).tickets == []  # 2 and 3 are done but outside [0, 1]
    q.finish(1, "b", 0)
    assert [t.index for t in q.take(0).tickets] == [1]  # inside the window, out of order
    assert q.head == 0
    q.finish(0, "a", 0)
    # head 0 consumed -> window [2, 3] -> both taken in the same call
    assert [t.index for t in q.take(0).tickets] == [0, 2, 3]
    assert q.head == 4


def test_stale_requeue_keeps_the_ticket_place_and_drop_moves_the_window():
    q = WindowedFIFO(1, max_staleness=1, on_stale="requeue")
    q.start(q.submit("a").index)
    q.finish(0, "old", 0)
    out = q.take(2)
    assert out.tickets == [] and [t.index for t in out.requeued] == [0]
    assert q.head == 0 and q.tickets[0].state is TicketState.PENDING
    q.start(0)
    q.finish(0, "fresh", 2)
    out = q.take(2)
    assert [t.result for t in out.tickets] == ["fresh"] and out.staleness == [0]
    assert q.counts["stale_requeued"] == 1

    d = WindowedFIFO(1, max_staleness=0, on_stale="drop")
    for _ in range(2):
        d.start(d.submit(None).index)
    d.finish(0, "x", 0)
    d.finish(1, "y", 1)
    out = d.take(1)
    assert [t.index for t in out.dropped] == [0] and [t.index for t in out.tickets] == [1]
    assert d.counts["stale_dropped"] == 1 and d.head == 2


def test_bad_configuration_is_rejected_with_a_reason():
    with pytest.raises(ConfigError, match="window must be >= 1"):
        WindowedFIFO(0)
    with pytest.raises(ConfigError, match="max_staleness"):
        WindowedFIFO(3, max_staleness=-1)
    with pytest.raises(ConfigError, match="on_stale"):
        WindowedFIFO(3, on_stale="ignore")  # type: ignore[arg-type]


def test_default_window_is_three_tenths_of_n():
    assert default_window(32) == 10
    assert default_window(1) == 1
