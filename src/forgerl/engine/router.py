"""Many engines behind one: sticky sessions, group-level scheduling, a cost-aware pick, health, and a
version barrier. `EngineRouter` is itself an Engine (engine/base.py), so the agent loop, the gateway
and the trainer do not know there are K engines behind it.

Why these rules (M2's Forge router, the brief of issue 19):
  - a trajectory's next call extends its previous context, whose KV cache lives on the engine that
    served it: send it back there (sticky), or the engine recomputes the whole context;
  - the G rollouts of a group share their prompt: send them to one engine and it computes the
    prompt once (group-level scheduling; the group is read from the session id, base.session_key);
  - anything else goes to the engine with the least estimated work: the tokens it already has
    queued plus the prompt tokens it would have to compute (minus what its cache probably holds),
    divided by its measured speed, so a slow engine gets less.

An engine is *available* when it is up and serves the router's current policy version (the version
barrier: an engine that did not load the newest push gets no new rollout until it has). A call the
engine never received (EngineUnreachable: it is down) goes to another engine; one it lost
(EngineDown: connection reset, timeout, 5xx) marks the engine down and reaches the caller, which
records the rollout as an infrastructure failure (never a zero reward). A refused request (any
other EngineError: a 4xx, a prompt too long) reaches the caller and leaves the engine in.
Sessions pinned to a down engine are re-pinned at their next call.
A down engine is probed in the background every `recheck_s`: once it answers, the newest weights
are loaded into it (`readmit`) and it is admitted again only if it then reports the current version.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import OrderedDict, deque
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from typing import Any

from forgerl.engine.base import (
    EngineDown,
    EngineUnreachable,
    GenerationResult,
    SamplingParams,
    TokenEvent,
    common_prefix_len,
    group_of,
)
from forgerl.errors import ConfigError, EngineError

log = logging.getLogger(__name__)

MAX_PINS = 200_000  # sticky entries kept (least recently used dropped): one per trajectory and group


@dataclass
class RouterMember:
    """One engine behind the router. `restart`, when given, starts the engine's process again (a
    locally launched replica); it is called once per outage by the background probe."""

    engine: Any
    name: str = ""
    restart: Callable[[], Any] | None = None
    up: bool = True
    reason: str = ""  # why it is down
    queued_tokens: int = 0  # estimated tokens of work sent and not yet answered
    in_flight: int = 0
    tokens_per_s: float = 0.0  # measured speed (moving average); 0 until the first answer
    recent: deque[list[int]] = field(default_factory=lambda: deque(maxlen=32))  # prompts it served lately
    next_check: float = 0.0
    checking: bool = False
    restarted: bool = False
    stats: dict[str, int] = field(default_factory=lambda: {"calls": 0, "prompt_tokens": 0, "cached_tokens": 0,
                                                             "failures": 0, "readmissions": 0})

    def expected_hit(self, prompt: Sequence[int]) -> int:
        """Prompt tokens this engine's cache probably holds: the longest prefix shared with a prompt it served lately."""
        return max((common_prefix_len(prompt, p) for p in self.recent), default=0)


class EngineRouter:
    """An Engine over K engines (see the module docstring). `recheck_s`: how often a down engine is
    probed; `wait_s`: how long a call waits for an available engine before failing;
    `push_timeout_s`: how long `update_weights` waits for the engines (a hung one must not stall
    the trainer: it stays out of the rotation until it reports the version)."""

    def __init__(self, members: Sequence[RouterMember | Any], *, policy_version: int | None = None,
                 recheck_s: float = 1.0, wait_s: float = 60.0, push_timeout_s: float = 180.0,
                 close_engines: Callable[[], None] | None = None) -> None:
        if not members:
            raise ConfigError("the engine router needs at least one engine")
        self.members = [m if isinstance(m, RouterMember) else RouterMember(m) for m in members]
        for i, m in enumerate(self.members):
            m.name = m.name or str(getattr(m.engine, "base_url", f"engine{i}"))
        first = self.members[0].engine
        self.model_name, self.tokenizer, self.max_context = first.model_name, first.tokenizer, first.max_context
        self.policy_version = first.policy_version if policy_version is None else policy_version
        self.recheck_s, self.wait_s, self.push_timeout_s = recheck_s, wait_s, push_timeout_s
        self._close_engines = close_engines
        self.replicas: Any = None  # engine/pool.py's LocalReplicas when the engines were launched here
        self._sessions: OrderedDict[str, RouterMember] = OrderedDict()
        self._groups: OrderedDict[str, RouterMember] = OrderedDict()
        self._probes: set[asyncio.Task[None]] = set()
        self.stats = {"sticky": 0, "group": 0, "cost": 0, "rerouted": 0}

    # ------------------------------------------------------------------ the Engine protocol
    async def generate(self, prompt_ids: list[int], params: SamplingParams, session_id: str | None = None) -> GenerationResult:
        tried: set[int] = set()
        while True:
            member = await self._pick(prompt_ids, params, session_id, tried)
            work = self._dispatch(member, prompt_ids, params)
            try:
                result = await member.engine.generate(prompt_ids, params, session_id=session_id)
            except EngineUnreachable as exc:
                self._settle(member, work)
                self._mark_down(member, str(exc))
                tried.add(id(member))
                self.stats["rerouted"] += 1
                continue
            except EngineDown as exc:
                self._settle(member, work)
                self._mark_down(member, str(exc))
                raise
            except BaseException:  # a refused request (EngineError: 4xx, prompt too long) leaves the engine in
                self._settle(member, work)
                raise
            self._settle(member, work, result, prompt_ids)
            return result

    async def stream(self, prompt_ids: list[int], params: SamplingParams, session_id: str | None = None
                     ) -> AsyncIterator[TokenEvent | GenerationResult]:
        tried: set[int] = set()
        while True:
            member = await self._pick(prompt_ids, params, session_id, tried)
            work = self._dispatch(member, prompt_ids, params)
            emitted = False
            try:
                async for event in member.engine.stream(prompt_ids, params, session_id=session_id):
                    if isinstance(event, GenerationResult):
                        self._settle(member, work, event, prompt_ids)
                        work = None
                    emitted = True
                    yield event
                return
            except EngineDown as exc:
                self._mark_down(member, str(exc))
                if emitted or not isinstance(exc, EngineUnreachable):
                    raise
                tried.add(id(member))
                self.stats["rerouted"] += 1
            finally:
                if work is not None:
                    self._settle(member, work)

    def update_weights(self, state_dict: Mapping[str, Any], version: int) -> None:
        """Push `version` to every engine at once (a down one too: it may be back, and its failed push
        feeds its own stale-weights alarm). From now on only engines that report `version` are routed
        to; the others are down until the probe has loaded it into them."""
        def push(member: RouterMember) -> None:
            try:
                member.engine.update_weights(state_dict, version)
            except Exception as exc:  # noqa: BLE001 — one engine's failure must not stop the others
                log.error("weight push of version %d to %s failed: %s", version, member.name, exc)

        pool = ThreadPoolExecutor(max_workers=len(self.members), thread_name_prefix="router-push")
        _, late = wait([pool.submit(push, m) for m in self.members], timeout=self.push_timeout_s)
        pool.shutdown(wait=False)  # a hung engine's push finishes (or fails) on its own; the trainer goes on
        if late:
            log.error("%d engine(s) did not confirm policy version %d within %.0fs; they serve no rollouts until "
                      "they do", len(late), version, self.push_timeout_s)
        self.policy_version = version
        for m in self.members:
            if m.engine.policy_version != version:
                self._mark_down(m, f"did not load policy version {version} (it serves {m.engine.policy_version})")
            elif not m.up and self._healthy(m):
                self._admit(m)

    async def aclose(self) -> None:
        for task in list(self._probes):
            task.cancel()
        for m in self.members:
            await m.engine.aclose()
        self.close()

    def close(self) -> None:
        for m in self.members:
            close = getattr(m.engine, "close", None)
            if close is not None:
                close()
        if self._close_engines is not None:
            self._close_engines()

    # ------------------------------------------------------------------ routing
    def available(self) -> list[RouterMember]:
        """Engines a new call may go to: up and serving the current policy version."""
        return [m for m in self.members if m.up and m.engine.policy_version == self.policy_version]

    async def _pick(self, prompt: list[int], params: SamplingParams, session_id: str | None, tried: set[int]) -> RouterMember:
        deadline = time.monotonic() + self.wait_s
        while True:
            self._probe_down_members()
            candidates = [m for m in self.available() if id(m) not in tried]
            if candidates:
                return self._choose(candidates, prompt, params, session_id)
            if time.monotonic() > deadline:
                why = "; ".join(f"{m.name}: {m.reason or 'tried'}" for m in self.members)
                raise EngineError(f"no engine can take the call (policy version {self.policy_version}) after "
                                  f"{self.wait_s:.0f}s: {why}")
            await asyncio.sleep(min(0.05, self.recheck_s))

    def _choose(self, candidates: list[RouterMember], prompt: list[int], params: SamplingParams,
                session_id: str | None) -> RouterMember:
        group = group_of(session_id)
        pinned = self._sessions.get(session_id) if session_id else None
        if pinned in candidates:
            self.stats["sticky"] += 1
            choice = pinned
        elif group is not None and self._groups.get(group) in candidates:
            self.stats["group"] += 1
            choice = self._groups[group]
        else:
            self.stats["cost"] += 1
            costs = {id(m): self._cost(m, prompt, params, candidates) for m in candidates}
            best = min(costs.values())
            # near-ties (within 10%) go to the engine with the least work pinned to it: new sessions spread
            close = [m for m in candidates if costs[id(m)] <= best * 1.1 + 1e-9]
            choice = min(close, key=lambda m: (m.in_flight, m.stats["calls"], costs[id(m)]))
        if session_id:
            _pin(self._sessions, session_id, choice)
        if group is not None:
            _pin(self._groups, group, choice)
        return choice

    def _cost(self, m: RouterMember, prompt: list[int], params: SamplingParams, candidates: list[RouterMember]) -> float:
        """Seconds of work before this call would finish there: queued + uncached prompt + new tokens, over speed."""
        measured = [c.tokens_per_s for c in candidates if c.tokens_per_s > 0]
        speed = m.tokens_per_s or (sum(measured) / len(measured) if measured else 1.0)
        return (m.queued_tokens + len(prompt) - m.expected_hit(prompt) + params.max_tokens) / speed

    def _dispatch(self, m: RouterMember, prompt: list[int], params: SamplingParams) -> int:
        work = len(prompt) - m.expected_hit(prompt) + params.max_tokens
        m.queued_tokens += work
        m.in_flight += 1
        return work

    def _settle(self, m: RouterMember, work: int | None, result: GenerationResult | None = None,
                prompt: list[int] | None = None) -> None:
        if work is not None:
            m.queued_tokens -= work
            m.in_flight -= 1
        if result is None:
            return
        m.stats["calls"] += 1
        m.stats["prompt_tokens"] += result.prompt_tokens
        m.stats["cached_tokens"] += result.cached_tokens
        done = result.prompt_tokens - result.cached_tokens + len(result.completion_ids)
        if result.timings.total_s > 0 and done > 0:
            rate = done / result.timings.total_s
            m.tokens_per_s = rate if m.tokens_per_s == 0 else 0.8 * m.tokens_per_s + 0.2 * rate
        if prompt is not None:
            m.recent.append(list(prompt) + list(result.completion_ids))

    # ------------------------------------------------------------------ health
    def _mark_down(self, m: RouterMember, reason: str) -> None:
        if m.up:
            log.warning("engine %s is out of the rotation: %s", m.name, reason)
            m.stats["failures"] += 1
        m.up, m.reason, m.restarted = False, reason, False
        m.next_check = time.monotonic() + self.recheck_s

    def _admit(self, m: RouterMember) -> None:
        log.warning("engine %s is back in the rotation at policy version %d", m.name, self.policy_version)
        m.up, m.reason = True, ""
        m.queued_tokens, m.in_flight, m.tokens_per_s = 0, 0, 0.0
        m.recent.clear()  # a restarted engine's cache is empty
        m.stats["readmissions"] += 1

    def _probe_down_members(self) -> None:
        now = time.monotonic()
        for m in self.members:
            if not m.up and not m.checking and now >= m.next_check:
                m.checking = True
                task = asyncio.get_running_loop().create_task(self._probe(m))
                self._probes.add(task)
                task.add_done_callback(self._probes.discard)

    async def _probe(self, m: RouterMember) -> None:
        try:
            if await asyncio.to_thread(self.readmit, m):
                self._admit(m)
        finally:
            m.checking = False
            m.next_check = time.monotonic() + self.recheck_s

    def readmit(self, m: RouterMember) -> bool:
        """Blocking health check of a down engine: restart it if we launched it and it is gone, load
        the current weights into it if it serves another version; True when it may serve again."""
        if not self._healthy(m):
            if m.restart is not None and not m.restarted:
                m.restarted = True
                log.warning("restarting engine %s", m.name)
                try:
                    m.restart()
                except Exception as exc:  # noqa: BLE001 — the next probe tries again
                    m.reason, m.restarted = f"restart failed: {exc}", False
            return False
        load = getattr(m.engine, "readmit", None)
        try:
            ok = load(self.policy_version) if load is not None else m.engine.policy_version == self.policy_version
        except Exception as exc:  # noqa: BLE001
            m.reason = f"loading policy version {self.policy_version} failed: {exc}"
            return False
        if not ok:
            m.reason = f"answers, but did not load policy version {self.policy_version}"
        return bool(ok) and m.engine.policy_version == self.policy_version

    @staticmethod
    def _healthy(m: RouterMember) -> bool:
        check = getattr(m.engine, "healthy", None)
        return True if check is None else bool(check())

    def report(self) -> dict[str, Any]:
        """Per engine: up, version, calls, cached fraction of prompt tokens, failures, readmissions."""
        return {m.name: {"up": m.up, "policy_version": m.engine.policy_version, "reason": m.reason, **m.stats}
                for m in self.members}


def _pin(table: OrderedDict[str, RouterMember], key: str, member: RouterMember) -> None:
    table[key] = member
    table.move_to_end(key)
    while len(table) > MAX_PINS:
        table.popitem(last=False)


__all__ = ["EngineRouter", "EngineUnreachable", "RouterMember"]
