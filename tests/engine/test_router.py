"""The router's policy (engine/router.py) with fake engines: sticky sessions, group-level
scheduling, the cost-aware pick, a dead engine, re-admission after weights, the version barrier."""

from __future__ import annotations

import asyncio
import time

import pytest

from forgerl.engine.base import (
    EngineDown,
    EngineUnreachable,
    GenerationResult,
    SamplingParams,
    TokenEvent,
    group_of,
    session_key,
)
from forgerl.engine.router import EngineRouter, RouterMember
from forgerl.errors import ContextLengthError, EngineError
from forgerl.types import Timings

PARAMS = SamplingParams(max_tokens=4)


class FakeEngine:
    """An engine that records its calls; `alive`, `accepts_weights` and `hold` script its failures."""

    def __init__(self, name: str, version: int = 0) -> None:
        self.name, self.model_name, self.tokenizer, self.max_context = name, "fake", None, 4096
        self.policy_version = version
        self.alive, self.accepts_weights, self.fail_in_flight = True, True, False
        self.hold: asyncio.Event | None = None
        self.calls: list[tuple[str | None, list[int]]] = []
        self.restarts = 0
        self.push_s = 0.0

    async def generate(self, prompt_ids, params, session_id=None):
        if not self.alive:
            raise EngineUnreachable(f"{self.name} refused the connection")
        self.calls.append((session_id, list(prompt_ids)))
        if len(prompt_ids) > self.max_context:
            raise ContextLengthError(f"prompt has {len(prompt_ids)} tokens, the context is {self.max_context}")
        if self.hold is not None:
            await self.hold.wait()
        if self.fail_in_flight:
            raise EngineDown(f"{self.name}: connection reset mid-request")
        return GenerationResult([7, 8], [-0.5, -0.5], "stop", self.policy_version, len(prompt_ids),
                                timings=Timings(total_s=0.01))

    async def stream(self, prompt_ids, params, session_id=None):
        if not self.alive:
            raise EngineUnreachable(f"{self.name} refused the connection")
        self.calls.append((session_id, list(prompt_ids)))
        yield TokenEvent(7, -0.5)
        if self.fail_in_flight:
            raise EngineDown(f"{self.name}: connection reset mid-stream")
        yield GenerationResult([7], [-0.5], "stop", self.policy_version, len(prompt_ids), timings=Timings(total_s=0.01))

    def update_weights(self, state_dict, version):
        time.sleep(self.push_s)
        if self.alive and self.accepts_weights:
            self.policy_version = version

    def healthy(self) -> bool:
        return self.alive

    def readmit(self, version: int) -> bool:
        self.update_weights({}, version)
        return self.policy_version == version

    async def aclose(self) -> None:
        pass


def make(n: int = 2, **kwargs) -> tuple[EngineRouter, list[FakeEngine]]:
    engines = [FakeEngine(f"e{i}") for i in range(n)]
    return EngineRouter([RouterMember(e, name=e.name) for e in engines], recheck_s=0.01, **kwargs), engines


def served_by(engines: list[FakeEngine], session: str) -> set[str]:
    return {e.name for e in engines for s, _ in e.calls if s == session}


def test_session_keys_carry_the_group():
    assert session_key("traj_1", "task3") == "task3/traj_1" and group_of("task3/traj_1") == "task3"
    assert session_key("traj_1", None) == "traj_1" and group_of("traj_1") is None and group_of(None) is None


def test_every_call_of_a_trajectory_goes_to_the_engine_holding_its_prefix():
    router, engines = make(3)

    async def main():
        for turn in range(4):  # sessions interleaved; each one's context grows turn by turn
            for s in range(6):
                await router.generate(list(range(10 * s, 10 * s + 5 + turn)), PARAMS, session_id=f"s{s}")

    asyncio.run(main())
    assert all(len(served_by(engines, f"s{s}")) == 1 for s in range(6))
    assert len({next(iter(served_by(engines, f"s{s}"))) for s in range(6)}) > 1  # not everything on one engine
    assert router.stats["sticky"] == 18


def test_the_rollouts_of_a_group_share_one_engine_and_groups_spread_by_cost():
    router, engines = make(2)
    for e in engines:
        e.hold = asyncio.Event()

    async def main():
        calls = [asyncio.create_task(router.generate([1] * 50 + [g], PARAMS, session_id=session_key(f"t{g}{i}", f"g{g}")))
                 for g in range(2) for i in range(4)]
        await asyncio.sleep(0.05)  # all eight are queued, none answered: the first group's load steers the second
        for e in engines:
            e.hold.set()
        return await asyncio.gather(*calls)

    asyncio.run(main())
    for g in range(2):
        assert len(set().union(*(served_by(engines, f"g{g}/t{g}{i}") for i in range(4)))) == 1
    assert all(len(e.calls) == 4 for e in engines)
    assert router.stats["group"] == 6 and router.stats["cost"] == 2


def test_the_cost_pick_prefers_an_idle_engine_and_then_a_cached_prefix():
    router, engines = make(2)
    engines[0].hold = asyncio.Event()

    async def busy_then_free():
        long = asyncio.create_task(router.generate([5] * 400, SamplingParams(max_tokens=200)))  # e0 gets this work
        await asyncio.sleep(0.01)
        await router.generate([9] * 20, PARAMS)  # e0 has ~600 tokens queued: e1
        engines[0].hold.set()
        await long

    asyncio.run(busy_then_free())
    assert [len(e.calls) for e in engines] == [1, 1]

    async def shared_prefix():  # both idle; e0 served [5]*400 lately, so a prompt extending it is cheaper there
        await router.generate([5] * 400 + [1, 2], PARAMS)

    asyncio.run(shared_prefix())
    assert len(engines[0].calls) == 2


def test_a_dead_engine_is_routed_around_and_its_sessions_re_pinned():
    router, engines = make(2)

    async def main():
        first = await router.generate([1, 2, 3], PARAMS, session_id="s")
        owner = next(e for e in engines if e.calls)
        owner.alive = False  # killed between two calls of the session: the next call was never sent to it
        second = await router.generate([1, 2, 3, 7, 8, 4], PARAMS, session_id="s")
        third = await router.generate([1, 2, 3, 7, 8, 4, 7, 8, 5], PARAMS, session_id="s")
        return owner, first, second, third

    owner, *results = asyncio.run(main())
    other = next(e for e in engines if e is not owner)
    assert len(owner.calls) == 1 and len(other.calls) == 2
    assert all(r.finish_reason == "stop" for r in results)
    assert router.stats["rerouted"] == 1 and not router.members[engines.index(owner)].up


def test_an_in_flight_call_on_a_dying_engine_fails_as_an_engine_error_and_the_next_one_goes_elsewhere():
    router, engines = make(2)
    engines[0].fail_in_flight = True

    async def main():
        with pytest.raises(EngineError, match="connection reset"):
            await router.generate([1, 2, 3], PARAMS, session_id="s")  # ties break to e0
        return await router.generate([1, 2, 3], PARAMS, session_id="s")

    result = asyncio.run(main())
    assert result.finish_reason == "stop" and len(engines[1].calls) == 1
    assert router.report()["e0"]["failures"] == 1 and router.members[0].queued_tokens == 0


def test_a_dead_engine_is_re_admitted_only_after_loading_the_current_weights():
    router, engines = make(2)
    engines[0].alive = False

    async def main():
        await router.generate([1], PARAMS)  # e0 refuses: marked down, the call goes to e1
        router.update_weights({}, 1)  # e0 is dead: it stays at version 0
        assert engines[0].policy_version == 0 and [m.name for m in router.available()] == ["e1"]
        await router.generate([2], PARAMS)
        engines[0].alive = True  # back (restarted), still at its own version 0
        for _ in range(100):
            await asyncio.sleep(0.02)
            router._probe_down_members()
            if router.members[0].up:
                break

    asyncio.run(main())
    assert router.members[0].up and engines[0].policy_version == 1  # the probe loaded version 1 first
    assert len(engines[0].calls) == 0 and router.report()["e0"]["readmissions"] == 1


def test_the_version_barrier_keeps_an_engine_out_until_it_serves_the_current_version():
    router, engines = make(2)
    engines[1].accepts_weights = False  # answers, but its push fails

    async def main():
        router.update_weights({}, 3)
        results = [await router.generate([i], PARAMS, session_id=f"s{i}") for i in range(6)]
        assert {r.policy_version for r in results} == {3} and not engines[1].calls
        engines[1].accepts_weights = True
        for _ in range(100):
            await asyncio.sleep(0.02)
            router._probe_down_members()
            if router.members[1].up:
                break
        return [await router.generate([100 + i], PARAMS) for i in range(4)]

    later = asyncio.run(main())
    assert engines[1].calls and {r.policy_version for r in later} == {3}


def test_without_an_available_engine_a_call_fails_naming_each_engine():
    router, engines = make(2, wait_s=0.2)
    for e in engines:
        e.alive = False

    async def main():
        await router.generate([1], PARAMS)

    with pytest.raises(EngineError, match="no engine can take the call") as info:
        asyncio.run(main())
    assert "e0" in str(info.value) and "e1" in str(info.value)


def test_a_dead_replica_is_restarted_once_per_outage():
    engines = [FakeEngine("e0"), FakeEngine("e1")]
    restarts: list[int] = []
    router = EngineRouter([RouterMember(engines[0], name="e0", restart=lambda: restarts.append(0)),
                           RouterMember(engines[1], name="e1")], recheck_s=0.0)
    engines[0].alive = False
    router._mark_down(router.members[0], "killed")
    assert not router.readmit(router.members[0]) and not router.readmit(router.members[0])
    assert restarts == [0]
    engines[0].alive = True
    assert router.readmit(router.members[0])


def test_streams_are_routed_like_calls_and_a_refused_stream_goes_elsewhere():
    router, engines = make(2)

    async def collect(session: str) -> list:
        return [event async for event in router.stream([1, 2, 3], PARAMS, session_id=session)]

    async def main():
        first = await collect("s")
        owner = next(e for e in engines if e.calls)
        owner.alive = False
        second = await collect("s")
        other = next(e for e in engines if e is not owner)
        other.fail_in_flight = True  # dies after the first token: the caller saw tokens, so no retry
        with pytest.raises(EngineError, match="mid-stream"):
            await collect("s")
        return first, second, owner, other

    first, second, owner, other = asyncio.run(main())
    assert isinstance(first[-1], GenerationResult) and isinstance(second[-1], GenerationResult)
    assert len(owner.calls) == 1 and len(other.calls) == 2 and router.stats["rerouted"] == 1
    assert all(m.queued_tokens == 0 and m.in_flight == 0 for m in router.members)


def test_a_hung_push_does_not_stall_the_trainer_and_the_engine_returns_once_it_lands():
    router, engines = make(2, push_timeout_s=0.2)
    engines[1].push_s = 1.0
    start = time.monotonic()
    router.update_weights({}, 1)
    assert time.monotonic() - start < 0.9 and [m.name for m in router.available()] == ["e0"]
    time.sleep(1.0)  # the push lands late

    async def main():
        for _ in range(100):
            router._probe_down_members()
            await asyncio.sleep(0.02)
            if router.members[1].up:
                return

    asyncio.run(main())
    assert router.members[1].up and engines[1].policy_version == 1


def test_a_refused_request_reaches_the_caller_and_leaves_the_engine_in():
    router, engines = make(1)

    async def main():
        with pytest.raises(ContextLengthError):
            await router.generate([1] * 5000, PARAMS, session_id="s")
        return await router.generate([1, 2], PARAMS, session_id="s")

    assert asyncio.run(main()).finish_reason == "stop"
    assert router.members[0].up and router.report()["e0"]["failures"] == 0 and router.members[0].in_flight == 0
