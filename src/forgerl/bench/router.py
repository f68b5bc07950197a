"""`forgerl bench router`: K engine replicas behind the router, sticky + group routing vs round-robin,
and K replicas vs one at equal total threads — ratios from one run.

Workload (the agent workload, in token ids): `groups` groups of `group_size` rollouts; a rollout's
first prompt is a system prompt shared by everyone + its group's task (shared by the group), and
each of its `turns` turns appends the sampled tokens plus a tool result of its own, so turn t's
prompt extends turn t-1's. All rollouts run concurrently, as the rollout scheduler runs them.

Columns (each on a fresh workload, so no cache carries over from the one before):
  - `round-robin`: every call to the next replica in turn, whatever it holds;
  - `sticky + group`: engine/router.py (a trajectory's calls where its prefix is, a group on one
    replica, otherwise the cheapest);
  - `1 replica x K threads`: the sticky + group workload again on one `forgerl serve` with all K
    threads, for throughput at equal total threads;
  - `1 replica x 1 thread`: and on one with one thread (what K replicas gain over one, per thread:
    on a CPU shared with other processes, K OpenMP threads in one process can be far slower than
    K one-thread processes).

Cache hit = prompt tokens the server reused from its KV cache (its `cached_tokens`) over all prompt
tokens sent. Sampling is seeded, so every column samples the same tokens from the same weights.
"""

from __future__ import annotations

import asyncio
import itertools
import random
import time
from dataclasses import dataclass
from typing import Any

from forgerl.engine.base import SamplingParams, session_key
from forgerl.engine.pool import LocalReplicas
from forgerl.engine.remote import RemoteEngine
from forgerl.engine.router import EngineRouter, RouterMember
from forgerl.errors import ConfigError

VOCAB = 500  # ids 10..VOCAB-1 lie inside every built-in model's vocabulary


@dataclass
class Workload:
    groups: int
    group_size: int
    turns: int
    new_tokens: int
    system: list[int]
    tasks: list[list[int]]  # per group
    tool_results: list[list[list[int]]]  # per rollout, per turn

    @property
    def rollouts(self) -> int:
        return self.groups * self.group_size


def make_workload(groups: int, group_size: int, turns: int, new_tokens: int, *, seed: int, system_tokens: int = 160,
                  task_tokens: int = 48, tool_tokens: int = 24) -> Workload:
    rng = random.Random(seed)

    def ids(n: int) -> list[int]:
        return [rng.randrange(10, VOCAB) for _ in range(n)]

    return Workload(groups, group_size, turns, new_tokens, ids(system_tokens), [ids(task_tokens) for _ in range(groups)],
                    [[ids(tool_tokens) for _ in range(turns)] for _ in range(groups * group_size)])


class RoundRobin:
    """The baseline: call k goes to engine k mod K."""

    def __init__(self, engines: list[Any]) -> None:
        self.engines = engines
        self._next = itertools.cycle(engines)

    async def generate(self, prompt_ids: list[int], params: SamplingParams, session_id: str | None = None) -> Any:
        return await next(self._next).generate(prompt_ids, params, session_id=session_id)


@dataclass
class Measured:
    prompt_tokens: int = 0
    cached_tokens: int = 0
    generated_tokens: int = 0
    wall_s: float = 0.0

    @property
    def hit_rate(self) -> float:
        return self.cached_tokens / max(1, self.prompt_tokens)

    @property
    def tokens_per_s(self) -> float:
        return (self.prompt_tokens - self.cached_tokens + self.generated_tokens) / max(self.wall_s, 1e-9)


def run_workload(engine: Any, w: Workload) -> Measured:
    """Every rollout of `w` concurrently through `engine`; token counts from the server's answers."""
    out = Measured()

    async def rollout(r: int) -> None:
        g = r // w.group_size
        context = w.system + w.tasks[g]
        for turn in range(w.turns):
            params = SamplingParams(max_tokens=w.new_tokens, temperature=1.0, seed=1000 * r + turn)
            result = await engine.generate(list(context), params, session_id=session_key(f"r{r}", f"g{g}"))
            out.prompt_tokens += result.prompt_tokens
            out.cached_tokens += result.cached_tokens
            out.generated_tokens += len(result.completion_ids)
            context = context + result.completion_ids + w.tool_results[r][turn]

    async def main() -> None:
        await asyncio.gather(*(rollout(r) for r in range(w.rollouts)))

    start = time.perf_counter()
    asyncio.run(main())
    out.wall_s = time.perf_counter() - start
    return out


def _clients(urls: list[str], max_context: int) -> list[RemoteEngine]:
    return [RemoteEngine(u, None, model_name="tiny-random", max_context=max_context, timeout_s=300) for u in urls]


def _warm_up(engines: list[RemoteEngine]) -> None:
    """One short call per replica: the first forward pays one-off costs no column should carry."""
    async def main() -> None:
        await asyncio.gather(*(e.generate([11, 12, 13], SamplingParams(max_tokens=2, seed=0)) for e in engines))
    asyncio.run(main())


def run_router_bench(*, replicas: int = 2, groups: int = 4, group_size: int = 4, turns: int = 6, new_tokens: int = 16,
                     model: str = "tiny-random", seed: int = 0, quiet: bool = False) -> dict[str, float]:
    """Run the three columns and print them side by side; returns the figures (hit rates, ratios)."""
    if replicas < 2:
        raise ConfigError(f"--replicas must be >= 2 (routing between one engine is no routing), got {replicas}")
    if min(groups, group_size, turns, new_tokens) < 1:
        raise ConfigError("--groups, --group-size, --turns and --new-tokens must all be >= 1")
    context = 160 + 48 + turns * (new_tokens + 24) + 8
    results: dict[str, Measured] = {}
    token = "bench-router"
    many = LocalReplicas(replicas, model=model, admin_token=token, threads=1)
    try:
        engines = _clients(many.start(), context)
        _warm_up(engines)
        results["round-robin"] = run_workload(RoundRobin(engines), make_workload(groups, group_size, turns, new_tokens,
                                                                                 seed=seed + 1))
        router = EngineRouter([RouterMember(e, name=e.base_url) for e in engines])
        sticky_work = make_workload(groups, group_size, turns, new_tokens, seed=seed + 2)
        results["sticky + group"] = run_workload(router, sticky_work)
    finally:
        many.stop()
    # equal total threads; and one thread, to tell threads from replicas. Both start together (an idle
    # server takes no CPU) and serve one after the other.
    singles = {threads: LocalReplicas(1, model=model, admin_token=token, threads=threads) for threads in (replicas, 1)}
    try:
        for one in singles.values():
            one.launch(0)
        for threads, one in singles.items():
            single = _clients(one.start(), context)
            _warm_up(single)
            results[f"1 replica x {threads} thread{'s' if threads > 1 else ''}"] = run_workload(single[0], sticky_work)
    finally:
        for one in singles.values():
            one.stop()
    figures = _figures(results, replicas)
    if not quiet:
        _print(results, figures, replicas, groups, group_size, turns, new_tokens, model)
    return figures


def _figures(results: dict[str, Measured], replicas: int) -> dict[str, float]:
    sticky, rr = results["sticky + group"], results["round-robin"]
    single = results[f"1 replica x {replicas} threads"]
    return {"sticky_hit_rate": sticky.hit_rate, "round_robin_hit_rate": rr.hit_rate,
            "single_hit_rate": single.hit_rate, "throughput_ratio": single.wall_s / sticky.wall_s,
            "one_thread_ratio": results["1 replica x 1 thread"].wall_s / sticky.wall_s,
            "round_robin_wall_ratio": rr.wall_s / sticky.wall_s}


def _print(results: dict[str, Measured], figures: dict[str, float], replicas: int, groups: int, group_size: int,
           turns: int, new_tokens: int, model: str) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console(width=120)
    console.print(f"[bold]forgerl bench router[/]: {replicas} replicas of {model} (1 thread each), {groups} groups x "
                  f"{group_size} rollouts x {turns} turns, {new_tokens} new tokens per turn")
    table = Table("", *results)
    table.add_row("prompt tokens from cache", *(f"{m.hit_rate:.1%}" for m in results.values()))
    table.add_row("prompt tokens sent", *(str(m.prompt_tokens) for m in results.values()))
    table.add_row("tokens computed", *(str(m.prompt_tokens - m.cached_tokens + m.generated_tokens) for m in results.values()))
    base = results["sticky + group"].wall_s
    table.add_row("wall time vs sticky + group", *(f"{m.wall_s / base:.2f}x" for m in results.values()))
    console.print(table)
    console.print(f"sticky + group serves {figures['sticky_hit_rate']:.1%} of prompt tokens from cache "
                  f"(round-robin {figures['round_robin_hit_rate']:.1%}); {replicas} replicas x 1 thread finish "
                  f"{figures['throughput_ratio']:.2f}x as fast as 1 replica x {replicas} threads "
                  f"({figures['one_thread_ratio']:.2f}x as fast as 1 replica x 1 thread)")


__all__ = ["RoundRobin", "Workload", "make_workload", "run_router_bench", "run_workload"]
