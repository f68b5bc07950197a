"""The core plan: how many threads, on which cores, for each co-located part of a run on one host.

Why a plan at all: every PyTorch thread that runs an op sizes its OpenMP team to every core of the
machine. On one host forgerl co-locates several such threads and processes — the trainer's optimizer
(a worker thread; one per torchrun rank), the built-in engine (the event-loop thread) and locally
launched engine processes. Left alone they oversubscribe: two teams of N threads on N cores, and
every parallel region ends at a barrier that waits for whichever thread the kernel preempted. On
the 2-core CI machine (2026-12-06, docs/benchmarks.md) the built-in engine fell from 2,353 to
76 tok/s (3%) next to two busy torch processes; with one thread it kept 573 tok/s, and 1,207 of
2,282 (53%) when those processes ran on the plan too.

What the platform offers, measured with this project's torch 2.13 CPU build (GNU OpenMP):
- `torch.set_num_threads` is *per thread*: it sizes the calling thread's OpenMP team only (the
  engine's thread keeps its count when the trainer's thread changes its own); a thread that never
  calls it starts from the last value any thread set. So each role sets its own count in the thread
  that runs it: `Share.apply`/`follow` in the engine's step loop, `CorePlan.in_trainer` around
  `optimize`. Being per thread and cheap, it can change at every engine step: a split plan's engine
  takes every core between the trainer's steps and its share during them (`Share.alone`).
- `os.sched_setaffinity(0, cpus)` binds the calling *thread* (Linux); OpenMP threads it creates
  afterwards inherit the binding, a team created before does not move. Pinning is therefore opt-in
  (`[cores] pin = true`) and exact only for roles whose team is created after it.
- For processes forgerl launches: OMP_NUM_THREADS / MKL_NUM_THREADS size their teams, and
  OMP_WAIT_POLICY=PASSIVE makes idle team threads sleep instead of spinning on a shared core
  (`Share.subprocess_env`). KMP_BLOCKTIME is Intel OpenMP's knob; this build links libgomp, where
  it does nothing. The wait policy is read once when OpenMP loads, so in-process it cannot change.

The default (`plan = "auto"`): when rollouts overlap training (the asynchronous rollout modes) and
an engine runs on this host, the engine and the trainer get disjoint cores (`split`); when they
take turns (`sync`), each phase may use every core (`shared`). torchrun ranks on one host
(LOCAL_WORLD_SIZE) always run together, so they always divide the trainer's cores.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Literal, ParamSpec, TypeVar

from pydantic import BaseModel, ConfigDict, Field, model_validator

from forgerl.errors import ConfigError

P = ParamSpec("P")
R = TypeVar("R")

PlanKind = Literal["auto", "split", "shared", "off"]


def _process_cpus() -> tuple[int, ...]:
    """The cores this process may run on (taskset, cgroups, torchrun all narrow it)."""
    try:
        return tuple(sorted(os.sched_getaffinity(0)))
    except AttributeError:  # not Linux: no affinity API, every core
        return tuple(range(os.cpu_count() or 1))


# Taken once, when forgerl first loads this module: a pinned thread later sees only its own cores
# through sched_getaffinity, and the plan must stay the same whichever thread computes it.
HOST_CPUS: tuple[int, ...] = _process_cpus()


class CoresConfig(BaseModel):
    """The training config's `[cores]` table: how this host's cores are shared between the trainer
    (each torchrun rank) and the engines that run on it (forgerl/cores.py says why)."""

    model_config = ConfigDict(extra="forbid", use_attribute_docstrings=True, validate_assignment=True, strict=True)

    plan: PlanKind = "auto"
    """auto: split when rollouts overlap training (async rollout modes) and the engine runs on this
    host, shared otherwise. split: the engine and the trainer get disjoint cores. shared: each phase
    uses every core (right when they take turns). off: leave PyTorch's thread counts alone."""
    engine_cores: int = Field(0, ge=0)
    """split: cores reserved for the engine(s) on this host (0 = half of them, at least one)."""
    pin: bool = False
    """Also bind each role's thread to its cores (os.sched_setaffinity; Linux). Off by default:
    thread counts alone remove the oversubscription, and a binding only holds for OpenMP threads
    created after it."""

    @model_validator(mode="after")
    def _check(self) -> CoresConfig:
        if self.engine_cores and self.plan in ("shared", "off"):
            raise ValueError(f"cores.engine_cores only applies to a split plan (cores.plan is {self.plan!r}): "
                             "set cores.plan = 'split' (or 'auto') or remove engine_cores")
        if self.pin and self.plan == "off":
            raise ValueError("cores.pin needs a plan to pin to (cores.plan is 'off'): set cores.plan or remove pin")
        return self

    def plan_for(self, *, overlapped: bool, engine_in_process: bool, engine_processes: int = 0,
                 local_rank: int | None = None, local_world_size: int | None = None,
                 cpus: Sequence[int] | None = None) -> CorePlan:
        """This process's plan. Ranks default to torchrun's LOCAL_RANK / LOCAL_WORLD_SIZE."""
        ranks = local_world_size if local_world_size is not None else _env_int("LOCAL_WORLD_SIZE", 1)
        rank = local_rank if local_rank is not None else _env_int("LOCAL_RANK", 0)
        return make_plan(self, overlapped=overlapped, engine_in_process=engine_in_process,
                         engine_processes=engine_processes, local_rank=rank, local_world_size=ranks,
                         cpus=tuple(cpus) if cpus is not None else HOST_CPUS)


@dataclass(frozen=True)
class Share:
    """One role's share: its OpenMP team size and the cores it may run on."""

    threads: int
    cpus: tuple[int, ...]
    pin: bool = False
    alone: int = 0
    """Threads while no trainer step runs in this process (0: always `threads`). A split plan's
    in-process engine takes every core between the trainer's steps (evaluation, a trainer waiting
    for its batch) and its own share while a step runs; `follow` switches at each engine step."""

    def wanted_threads(self) -> int:
        return self.alone if self.alone and not trainer_running() else self.threads

    def apply(self) -> tuple[int, set[int] | None]:
        """Give the *calling thread* this share; returns what it had, for `restore`."""
        import torch

        before = (torch.get_num_threads(), _thread_affinity() if self.pin else None)
        torch.set_num_threads(self.wanted_threads())
        if self.pin and hasattr(os, "sched_setaffinity"):
            os.sched_setaffinity(0, self.cpus)
        return before

    def follow(self) -> None:
        """The team size for this moment (see `alone`), in the calling thread; set only on a change."""
        import torch

        want = self.wanted_threads()
        if torch.get_num_threads() != want:
            torch.set_num_threads(want)

    @staticmethod
    def restore(before: tuple[int, set[int] | None]) -> None:
        import torch

        threads, cpus = before
        torch.set_num_threads(threads)
        if cpus is not None:
            os.sched_setaffinity(0, cpus)

    def subprocess_env(self) -> dict[str, str]:
        """Environment for a process launched with this share: team sizes, and idle OpenMP threads
        that sleep rather than spin on cores another process needs. Add `preexec_fn=share.pin_child`
        (or os.sched_setaffinity(pid, ...)) to bind it."""
        return thread_env(self.threads)

    def pin_child(self) -> None:
        """A `preexec_fn` binding the child to this share's cores (when pinning is on)."""
        if self.pin and hasattr(os, "sched_setaffinity"):
            os.sched_setaffinity(0, self.cpus)


def thread_env(threads: int) -> dict[str, str]:
    """Environment sizing a launched process's thread teams to `threads`, with idle OpenMP threads
    sleeping instead of spinning (every process forgerl launches on a shared host: engine replicas,
    subprocess shares)."""
    n = str(threads)
    return {"OMP_NUM_THREADS": n, "MKL_NUM_THREADS": n, "OPENBLAS_NUM_THREADS": n, "OMP_WAIT_POLICY": "PASSIVE"}


@dataclass(frozen=True)
class CorePlan:
    """Who runs with how many threads where: `trainer` is this rank's share, `engine` the
    in-process engine's (None without one), `engine_processes` one share per local engine process.
    `kind` is what was decided ("split", "shared" or "off"; off shares are None: nothing is set)."""

    kind: Literal["split", "shared", "off"]
    trainer: Share | None
    engine: Share | None
    engine_processes: tuple[Share, ...] = ()
    note: str = ""

    def in_trainer(self, fn: Callable[P, R]) -> Callable[P, R]:
        """`fn` run with the trainer's share in whichever thread calls it (the loop's worker thread),
        that thread's previous setting restored afterwards."""
        share = self.trainer
        if share is None:
            return fn

        def call(*args: P.args, **kwargs: P.kwargs) -> R:
            global _trainer_steps
            with _trainer_lock:
                _trainer_steps += 1
            try:
                with applied(share):
                    return fn(*args, **kwargs)
            finally:
                with _trainer_lock:
                    _trainer_steps -= 1

        return call

    def describe(self) -> str:
        """One line for logs and benchmark headers."""
        if self.kind == "off":
            return "core plan off (PyTorch's default thread counts)"
        parts = [f"core plan {self.kind}"]
        if self.trainer is None and self.engine is None and not self.engine_processes:
            parts.append("every role with PyTorch's default thread count")
        if self.trainer is not None:
            parts.append(f"trainer {self.trainer.threads} thread(s) on {_cpu_list(self.trainer.cpus)}")
        if self.engine is not None:
            alone = f" ({self.engine.alone} between trainer steps)" if self.engine.alone else ""
            parts.append(f"engine {self.engine.threads} on {_cpu_list(self.engine.cpus)}{alone}")
        for i, share in enumerate(self.engine_processes):
            parts.append(f"engine process {i} {share.threads} on {_cpu_list(share.cpus)}")
        pinned = any(s.pin for s in (self.trainer, self.engine, *self.engine_processes) if s is not None)
        return ", ".join(parts) + (" (pinned)" if pinned else "") + (f"; {self.note}" if self.note else "")


_trainer_steps = 0  # trainer steps running in this process now (in `CorePlan.in_trainer`)
_trainer_lock = threading.Lock()


def trainer_running() -> bool:
    """Whether a trainer step (`CorePlan.in_trainer`) is running in this process right now."""
    return _trainer_steps > 0


@contextmanager
def applied(share: Share | None) -> Iterator[None]:
    """The calling thread runs the block with `share` (nothing changes for None)."""
    if share is None:
        yield
        return
    before = share.apply()
    try:
        yield
    finally:
        Share.restore(before)


def make_plan(config: CoresConfig, *, overlapped: bool, engine_in_process: bool, engine_processes: int,
              local_rank: int, local_world_size: int, cpus: Sequence[int]) -> CorePlan:
    """The partition itself (a pure function of its arguments, so tests can give any host).

    split: the engine side takes `engine_cores` (default half, at least one) of the host's cores,
    highest-numbered first (core 0 keeps the trainer and the OS); the trainer's ranks divide the
    rest into contiguous slices, rank r taking slice r; engine processes divide the engine side.
    shared: the trainer's ranks still divide every core (they always run together); the engine and
    each engine process may use all of them. One rank, unpinned: nothing is set (PyTorch's default
    team size, which counts physical cores, is already "every core"), so the default synchronous
    run is exactly what it was before the plan existed."""
    cpus = tuple(cpus)
    n, ranks = len(cpus), max(1, local_world_size)
    if not 0 <= local_rank < ranks:
        raise ConfigError(f"LOCAL_RANK {local_rank} is outside LOCAL_WORLD_SIZE {ranks}",
                          hint="launch ranks with torchrun, which sets both")
    if config.plan == "off":
        return CorePlan("off", None, None, ())
    has_engine = engine_in_process or engine_processes > 0
    kind = config.plan
    note = ""
    if kind == "auto":
        kind = "split" if overlapped and has_engine else "shared"
        if kind == "split" and n < ranks + 1:
            kind, note = "shared", f"too few cores to split ({n} for {ranks} rank(s) + an engine)"
    if kind == "split" and has_engine:
        engine_n = config.engine_cores or max(1, n // 2)
        if engine_n + ranks > n:
            raise ConfigError(
                f"cores.plan 'split' cannot give the engine {engine_n} core(s) and each of {ranks} trainer rank(s) "
                f"one: this process may use {n} core(s) ({_cpu_list(cpus)})",
                hint="lower [cores] engine_cores, run fewer ranks per host, or set [cores] plan = 'shared'")
        engine_cpus, trainer_cpus = cpus[n - engine_n:], cpus[:n - engine_n]
        mine = _slices(trainer_cpus, ranks)[local_rank]
        trainer = Share(len(mine), mine, config.pin)
        alone = 0 if config.pin or ranks > 1 else n  # one trainer, unpinned: the engine may take every core between steps
        engine = Share(len(engine_cpus), engine_cpus, config.pin, alone) if engine_in_process and local_rank == 0 else None
        procs = tuple(Share(len(s), s, config.pin) for s in _slices(engine_cpus, engine_processes)) \
            if engine_processes else ()
        return CorePlan("split", trainer, engine, procs, note)
    each = max(1, n // engine_processes) if engine_processes else 0
    procs = tuple(Share(each, cpus, False) for _ in range(engine_processes))
    if ranks == 1 and not config.pin:  # one trainer, phases taking turns: PyTorch's own default is the plan
        return CorePlan("shared", None, None, procs, note)
    mine = _slices(cpus, ranks)[local_rank]
    trainer = Share(len(mine), mine, config.pin)
    engine = Share(n, cpus, config.pin) if engine_in_process and local_rank == 0 else None
    return CorePlan("shared", trainer, engine, procs, note)


def _slices(cpus: tuple[int, ...], parts: int) -> list[tuple[int, ...]]:
    """`cpus` in `parts` contiguous slices as equal as possible; with fewer cores than parts, the
    slices share cores round-robin (one core each)."""
    if parts <= len(cpus):
        base, extra = divmod(len(cpus), parts)
        out, start = [], 0
        for i in range(parts):
            size = base + (1 if i < extra else 0)
            out.append(cpus[start:start + size])
            start += size
        return out
    return [(cpus[i % len(cpus)],) for i in range(parts)]


def _cpu_list(cpus: Sequence[int]) -> str:
    """0-3,6 style, as taskset prints it."""
    out: list[str] = []
    for c in sorted(cpus):
        if out and "-" not in out[-1] and int(out[-1]) == c - 1:
            out[-1] = f"{out[-1]}-{c}"
        elif out and "-" in out[-1] and int(out[-1].split("-")[1]) == c - 1:
            out[-1] = f"{out[-1].split('-')[0]}-{c}"
        else:
            out.append(str(c))
    return "cores " + ",".join(out)


def _thread_affinity() -> set[int] | None:
    return set(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None


def _env_int(name: str, default: int) -> int:
    raw = os.environ.get(name)
    if raw is None or raw == "":
        return default
    try:
        return int(raw)
    except ValueError:
        raise ConfigError(f"${name} is {raw!r}, not an integer", hint="torchrun sets it; unset it otherwise") from None


__all__ = ["HOST_CPUS", "CorePlan", "CoresConfig", "Share", "applied", "make_plan"]
