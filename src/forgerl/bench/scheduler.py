"""`forgerl bench scheduler`: synchronous vs strict-FIFO vs greedy vs windowed FIFO, same workload.

The workload is seeded and long-tailed, like agentic RL: each task has a difficulty 1..4; harder
tasks take more turns and longer completions, and every tool call waits on an environment whose
latency is log-normal (a few calls take 10x the median). Each LLM call goes through a
`ScriptedEngine` — real token ids, stamped with the engine's policy version — and takes
`tokens x per_token_s` of generation time (a simulated engine with unlimited batch). The trainer
step is a fixed-cost sleep followed by a weight push (version + 1). Every mode sees the same task
sequence and the same per-task latencies, so the differences are the scheduler's alone.

Printed per mode: trajectories per second consumed by the trainer, trainer idle fraction (time
waiting for a batch / wall time), staleness mean/max (versions), stale re-queues, and how far each
batch's difficulty mix is from the task distribution (mean total-variation distance; a batch of B
random tasks is not exactly the distribution either, so the synchronous mode's figure — batches
that *are* the submitted tasks in order — is the noise floor).

The simulation leaves out what co-located rollouts and training cost each other on real cores;
`--real` (bench/scheduler_real.py) runs the actual main job instead.
"""

from __future__ import annotations

import asyncio
import math
import random
import time
from collections import Counter
from dataclasses import dataclass
from typing import Any

from forgerl.engine.base import SamplingParams
from forgerl.engine.scripted import ScriptedEngine
from forgerl.rollout.scheduler import RolloutScheduler, SchedulerConfig
from forgerl.types import LLMCall, Trajectory

DIFFICULTIES = (1, 2, 3, 4)
MODES = ("sync", "fifo", "greedy", "windowed")


class _ByteTokenizer:
    """One token per character: enough for the scripted engine's encode/decode."""

    eos_token_id = None

    def encode(self, text: str, add_special_tokens: bool = False) -> list[int]:
        return [ord(c) % 256 for c in text]

    def decode(self, ids: list[int], skip_special_tokens: bool = False) -> str:
        return "".join(chr(i) for i in ids)


@dataclass(frozen=True)
class Workload:
    tasks: int = 256
    batch_size: int = 16
    capacity: int = 64
    max_staleness: int = 8
    train_s: float = 0.12
    per_token_s: float = 0.0002
    seed: int = 0
    scale: float = 1.0  # multiplies every latency (smaller: a faster, noisier benchmark)


def task_plan(w: Workload, index: int) -> dict[str, Any]:
    """Seeded task `index`: difficulty, and per turn the completion length and the env latency."""
    rng = random.Random(w.seed * 1_000_003 + index)
    d = rng.choice(DIFFICULTIES)
    turns = d + 1
    return {"i": index, "difficulty": d,
            "tokens": [max(4, int(rng.lognormvariate(math.log(40 * d), 0.5))) for _ in range(turns)],
            "env_s": [rng.lognormvariate(math.log(0.008 * d), 1.0) * w.scale for _ in range(turns)]}


async def _rollout(engine: ScriptedEngine, w: Workload, plan: dict[str, Any]) -> Trajectory:
    traj = Trajectory(task_id=f"bench-{plan['i']}", difficulty=plan["difficulty"])
    prompt = [1, 2, 3]
    for n_tokens, env_s in zip(plan["tokens"], plan["env_s"]):
        version = engine.policy_version  # the version this call samples with
        result = await engine.generate(prompt, SamplingParams(max_tokens=n_tokens))
        await asyncio.sleep(len(result.completion_ids) * w.per_token_s * w.scale)
        traj.calls.append(LLMCall(prompt_ids=prompt, completion_ids=result.completion_ids,
                                  completion_logprobs=result.logprobs, loss_mask=[1] * len(result.completion_ids),
                                  policy_version=min(version, result.policy_version), finish_reason=result.finish_reason))
        await asyncio.sleep(env_s)  # the tool call
    traj.reward = 1.0
    return traj


async def run_mode(mode: str, w: Workload, window: int | None = None) -> dict[str, float]:
    engine = ScriptedEngine(_ByteTokenizer(), [lambda _p: "x" * 4096], cycle=True, max_context=1 << 20)
    cfg = SchedulerConfig(mode=mode, batch_size=w.batch_size, capacity=None if mode == "sync" else w.capacity,
                          window=window if mode == "windowed" else None,
                          max_staleness=None if mode == "sync" else w.max_staleness)
    plans = [task_plan(w, i) for i in range(w.tasks)]
    sched = RolloutScheduler(lambda p: _rollout(engine, w, p), plans, cfg, current_version=lambda: engine.policy_version)
    dist = Counter(p["difficulty"] for p in plans)
    staleness: list[int] = []
    tv: list[float] = []
    mean_difficulty: list[float] = []
    consumed = 0
    start = time.perf_counter()
    async for batch in sched.batches():
        consumed += len(batch.results)
        staleness += batch.staleness
        tv.append(_tv(Counter(t.difficulty for t in batch.results), dist))
        mean_difficulty.append(sum(t.difficulty for t in batch.results) / len(batch.results))
        await asyncio.sleep(w.train_s)  # the training step
        engine.update_weights({}, engine.policy_version + 1)
    wall = time.perf_counter() - start
    return {"traj_per_s": consumed / wall, "idle_frac": sched.stats["wait_s"] / wall,
            "stale_mean": sum(staleness) / max(1, len(staleness)), "stale_max": float(max(staleness, default=0)),
            "requeued": float(sched.counts["stale_requeued"]), "mix_tv": sum(tv) / max(1, len(tv)),
            "wall_s": wall, "difficulty_first": _mean(mean_difficulty[: max(1, len(mean_difficulty) // 4)]),
            "difficulty_last": _mean(mean_difficulty[-max(1, len(mean_difficulty) // 4):]), "window": float(cfg.w or 0),
            "consumed": float(consumed)}


def _mean(values: list[float]) -> float:
    return sum(values) / max(1, len(values))


def _tv(batch: Counter[int], dist: Counter[int]) -> float:
    nb, nd = sum(batch.values()), sum(dist.values())
    return 0.5 * sum(abs(batch[d] / nb - dist[d] / nd) for d in DIFFICULTIES)


def run_scheduler_bench(w: Workload = Workload(), modes: tuple[str, ...] = MODES, window: int | None = None) -> dict[str, dict[str, float]]:
    """Run every mode on the same workload; print the table and the goals; return the figures."""
    from rich.console import Console
    from rich.table import Table

    results = {mode: asyncio.run(run_mode(mode, w, window)) for mode in modes}
    table = Table(title=f"scheduler modes: {w.tasks} tasks, batch {w.batch_size}, N {w.capacity}, "
                        f"max staleness {w.max_staleness}, train step {w.train_s:.3f}s")
    for col in ("mode", "W", "traj/s", "idle", "stale mean", "stale max", "requeued", "mix TV", "difficulty first/last"):
        table.add_column(col, justify="right")
    for mode, r in results.items():
        table.add_row(mode, "-" if mode == "sync" else ("inf" if r["window"] == 0 else f"{r['window']:.0f}"),
                      f"{r['traj_per_s']:.1f}", f"{r['idle_frac']:.0%}", f"{r['stale_mean']:.2f}",
                      f"{r['stale_max']:.0f}", f"{r['requeued']:.0f}", f"{r['mix_tv']:.3f}",
                      f"{r['difficulty_first']:.2f} / {r['difficulty_last']:.2f}")
    console = Console(width=max(120, Console().width))
    console.print(table)
    if "sync" in results and "windowed" in results:
        sync, win = results["sync"], results["windowed"]
        ratio = win["traj_per_s"] / sync["traj_per_s"]
        console.print(f"windowed / synchronous throughput: {ratio:.2f}x (goal >= 2.5x) "
                      f"{'OK' if ratio >= 2.5 else 'MISSED'}")
        console.print(f"windowed max staleness {win['stale_max']:.0f} <= bound {w.max_staleness}: "
                      f"{'OK' if win['stale_max'] <= w.max_staleness else 'MISSED'}")
        if "greedy" in results:
            console.print(f"difficulty mix (mean TV to the task distribution; sync = noise floor "
                          f"{sync['mix_tv']:.3f}): windowed {win['mix_tv']:.3f} vs greedy {results['greedy']['mix_tv']:.3f}; "
                          f"task mean difficulty {_mean([float(d) for d in DIFFICULTIES]):.2f}")
    return results
