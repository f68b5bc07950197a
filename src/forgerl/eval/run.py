"""Evaluation: run the white-box agent on held-out tasks of a family and report pass rates with
Wilson confidence intervals, overall and per group, keeping every trajectory in a store.

Episodes go through the same agent loop as training (agent/loop.py `run_episode`) and held-out
tasks come from the same seed range the trainer evaluates on (train/rollouts.py
HELD_OUT_SEED_BASE), except where a family lists its eval split itself (bfcl: `make_tasks`).

A pass is a scored episode whose verifier outcome is 1.0 (reward shaping does not change it).
Infrastructure failures (status FAILED: engine, verifier crash) have no outcome and are kept out
of the denominator, counted apart (DESIGN.md contract 4).

Grouping is by a key of `trajectory.metadata` (`group_by`): `category` (a BFCL category, a
reasoning-gym generator, else the family) and `difficulty` are stamped on every trajectory here;
another dimension (e.g. the scaffold an episode ran in) only needs to be stamped into the metadata
by whoever runs the episode, and `summarize(trajectories, group_by="scaffold")` reports it.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from forgerl.agent.tools import DEFAULT_TOOL_TIMEOUT_S
from forgerl.chat import get_format
from forgerl.engine import load_engine
from forgerl.engine.base import SamplingParams
from forgerl.envs.appdev.verifier_config import set_app_verifier
from forgerl.envs.base import EpisodeLimits, Task, family_info, make_env, sample_task
from forgerl.envs.bfcl import data as bfcl_data
from forgerl.envs.bfcl import make_tasks
from forgerl.envs.reasoning_gym import parse_mix, register_mix
from forgerl.envs.suites import HELD_OUT_SEED_BASE
from forgerl.errors import ConfigError
from forgerl.eval.settings import resolve_settings, settings_line
from forgerl.rollout.appdev_verifier import open_app_verifier
from forgerl.rollout.episode import run_episode_for
from forgerl.stats import wilson_interval
from forgerl.store import TrajectoryStore
from forgerl.types import Trajectory, TrajectoryStatus

if TYPE_CHECKING:
    from rich.console import Console

    from forgerl.chat.base import ChatFormat
    from forgerl.engine.base import Engine



@dataclass
class GroupStats:
    group: str
    episodes: int = 0  # scored episodes (the denominator)
    passed: int = 0
    failed_infra: int = 0  # FAILED episodes, not in the denominator
    reward_sum: float = 0.0

    @property
    def pass_rate(self) -> float:
        return self.passed / self.episodes if self.episodes else 0.0

    @property
    def ci(self) -> tuple[float, float]:
        return wilson_interval(self.passed, self.episodes)

    @property
    def reward_mean(self) -> float:
        return self.reward_sum / self.episodes if self.episodes else 0.0

    def as_dict(self) -> dict[str, Any]:
        low, high = self.ci
        return {**asdict(self), "pass_rate": self.pass_rate, "ci_low": low, "ci_high": high,
                "reward_mean": self.reward_mean}


@dataclass
class EvalReport:
    env: str
    model: str
    group_by: str
    overall: GroupStats
    groups: list[GroupStats] = field(default_factory=list)
    store: str | None = None
    run_id: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return {"env": self.env, "model": self.model, "group_by": self.group_by, "overall": self.overall.as_dict(),
                "groups": [g.as_dict() for g in self.groups], "store": self.store, "run_id": self.run_id}


def summarize(trajectories: Sequence[Trajectory], group_by: str = "category", *, env: str = "", model: str = "") -> EvalReport:
    """Pass rates overall and per value of `group_by`: a typed field (family, difficulty...) or a
    metadata key (category); missing: "-"."""
    overall, groups = GroupStats("all"), {}
    for traj in trajectories:
        value = traj.value_of(group_by)
        key = "-" if value is None else str(value)
        for stats in (overall, groups.setdefault(key, GroupStats(key))):
            if traj.status == TrajectoryStatus.FAILED:
                stats.failed_infra += 1
                continue
            stats.episodes += 1
            stats.passed += traj.passed
            stats.reward_sum += traj.reward or 0.0
    return EvalReport(env=env, model=model, group_by=group_by, overall=overall,
                      groups=[groups[k] for k in sorted(groups)])


def resolve_env(name: str) -> str:
    """A registered family name; `reasoning-gym:SPEC` (or `reasoning-gym-tools:SPEC`, which adds a
    calculator) registers that mix first. SPEC = generator[:difficulty][*weight],..."""
    prefix, _, spec = name.partition(":")
    if spec and prefix in ("reasoning-gym", "reasoning-gym-tools"):
        register_mix(name, parse_mix(spec, tools=("calculator",) if prefix.endswith("-tools") else ()))
    return name


def held_out_tasks(env: str, n: int, *, seed: int = 0, difficulty: int | None = None, split: str = "eval") -> list[Task]:
    """`n` evaluation tasks of family `env`. bfcl lists its eval split (cycled through the
    difficulty's categories in turn, so every category is represented); other families draw from
    the held-out seed range the trainer evaluates on."""

    if n < 1:
        raise ConfigError(f"-n must be >= 1, got {n}")
    fam = family_info(resolve_env(env))
    if env == "bfcl":
        return _bfcl_tasks(n, seed, difficulty, split)
    if split != "eval":
        raise ConfigError(f"--split applies to bfcl only; {env} draws eval tasks from the held-out seed range")
    levels = [difficulty] if difficulty is not None else list(fam.difficulties)
    return [sample_task(env, HELD_OUT_SEED_BASE + seed * 100_003 + i, levels[i % len(levels)] if fam.generate else None)
            for i in range(n)]


def _bfcl_tasks(n: int, seed: int, difficulty: int | None, split: str) -> list[Task]:
    import random

    categories = [c for c, level in bfcl_data.CATEGORIES.items() if difficulty is None or level == difficulty]
    per_category = [make_tasks(split, [c]) for c in categories]
    for tasks in per_category:
        random.Random(f"bfcl-eval:{seed}").shuffle(tasks)
    chosen: list[Task] = []
    while len(chosen) < n and any(per_category):
        for tasks in per_category:
            if tasks and len(chosen) < n:
                chosen.append(tasks.pop(0))
    return chosen


def _category(task: Task) -> str:
    return str(task.data.get("category") or task.family)


async def run_tasks(
    engine: Engine, chat_format: ChatFormat, env: str, tasks: Sequence[Task], *, sampling: SamplingParams,
    max_turns: int, max_total_tokens: int, concurrency: int = 16, metadata: dict[str, Any] | None = None,
    tool_timeout_s: float | None = None, on_done: Callable[[], None] | None = None, config: Any = None,
) -> list[Trajectory]:
    """One episode per task, `concurrency` at a time on the shared engine, run the way training's
    held-out evaluation runs it (rollout/episode.py `run_episode_for`: the family's own episode
    runner for a multi-agent family — its first trajectory, the coordinator's, carries the outcome —
    and `config`'s held-out context manager, `[eval.context]` or `[context]`, when a TrainConfig is
    given). Each trajectory gets `category`, `difficulty`, `eval_index` and `metadata` in its
    metadata. `tool_timeout_s` caps each tool call (None: agent/tools.py's DEFAULT_TOOL_TIMEOUT_S).
    Closing an environment never raises here: a failed cleanup is noted on its trajectory, the
    others are kept. `on_done()` is called after each episode (a progress bar)."""
    import dataclasses

    timeout = DEFAULT_TOOL_TIMEOUT_S if tool_timeout_s is None else tool_timeout_s
    limits = EpisodeLimits(max_turns=max_turns, max_total_tokens=max_total_tokens, tool_timeout_s=timeout)
    view = _EvalRun(config=config, engine=engine, fmt=chat_format)
    gate = asyncio.Semaphore(max(1, concurrency))

    async def one(index: int, task: Task) -> Trajectory:
        async with gate:
            params = sampling if sampling.seed is None else dataclasses.replace(sampling, seed=sampling.seed + 7919 * index)
            traj = (await run_episode_for(view, task, make_env(env, index), params, perturbations=None, family=env,
                                          limits=limits, evaluation=True))[0]
        traj.metadata.update(metadata or {})
        traj.difficulty = task.difficulty
        traj.metadata.update(category=_category(task), eval_index=index)
        if on_done is not None:
            on_done()
        return traj

    return list(await asyncio.gather(*(one(i, t) for i, t in enumerate(tasks))))


@dataclass
class _EvalRun:
    """What `run_episode_for` reads of a run (rollout/run_view.py), for an evaluation outside one.
    `config`: a TrainConfig or None (no context manager)."""

    config: Any
    engine: Any
    fmt: Any


@contextlib.contextmanager
def _app_verifier(config: Any) -> Iterator[None]:
    """A config's `[verifier] kind = "model"` judges appdev episodes for the evaluation's duration,
    as it does in the run (training.py `default_source`); the rubric executor otherwise."""
    if config is None or config.verifier.kind != "model":
        yield
        return
    set_app_verifier(open_app_verifier(config.verifier))
    try:
        yield
    finally:
        set_app_verifier(None)


def run_eval(
    env: str | None = None, model: str | None = None, n: int | None = None, *, difficulty: int | str | None = None,
    split: str = "eval", seed: int | None = None, chat_format: str | None = None, max_turns: int | None = None,
    max_tokens: int | None = None, temperature: float | None = None,
    concurrency: int = 16, group_by: str = "category", out_dir: str | Path | None = None,
    engine: Engine | None = None, console: Console | None = None, config: Any = None,
) -> EvalReport:
    """Evaluate `model` on `n` held-out tasks of `env`; `engine` replaces the loaded one (tests).
    Every setting left None is training's held-out evaluation's (`held_out_settings`) — of `config`
    (a TrainConfig: `forgerl eval --config`) when given, whose `[eval.context]`/`[context]` manager
    and `[verifier]` then apply as in the run's own held-out evaluation."""
    from rich.console import Console

    console = console or Console()
    if env is not None:
        env = resolve_env(env)
    used, training = resolve_settings(env, model, n, difficulty, seed, chat_format, max_turns, max_tokens, temperature,
                                      config=config)
    env, model, n, seed, chat_format = used.env, used.model, used.n, used.seed, used.chat_format
    max_turns, max_tokens, temperature, difficulty = used.max_turns, used.max_tokens, used.temperature, used.difficulty
    tasks = held_out_tasks(env, n, seed=seed, difficulty=difficulty, split=split)  # fails fast, before the model
    fmt = get_format(chat_format)
    console.print(settings_line(used, training), highlight=False, soft_wrap=True)
    if engine is None:
        with console.status(f"loading {model} ..."):
            engine = load_engine(model, chat_format=chat_format, seed=seed, max_context=used.max_context)
    sampling = SamplingParams(max_tokens=max_tokens, temperature=temperature, seed=seed * 1000)  # top_p 1, as training
    record = {"kind": "eval", "env": env, "model": model, "n": len(tasks), "difficulty": difficulty, "split": split,
              "seed": seed, "chat_format": chat_format, "max_turns": max_turns, "max_tokens": max_tokens,
              "temperature": temperature}
    if config is not None:
        context = config.eval.context or config.context
        record["context_manager"] = context.manager
        record["verifier"] = config.verifier.kind

    async def main() -> list:
        from forgerl.rollout.progress import step_progress  # heavy: rich progress, only when evaluating

        try:
            with step_progress(f"eval {env}", len(tasks)) as advance, _app_verifier(config):
                return await run_tasks(engine, fmt, env, tasks, sampling=sampling, max_turns=max_turns,
                                       max_total_tokens=min(used.max_context, engine.max_context),
                                       concurrency=concurrency, metadata={"eval_model": model}, on_done=advance,
                                       config=config)
        finally:
            await engine.aclose()

    start = time.perf_counter()
    trajectories = asyncio.run(main())
    report = summarize(trajectories, group_by, env=env, model=model)
    if out_dir is not None:
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        with TrajectoryStore(out) as store:
            run_id = store.add_run(record)
            store.add_trajectories(trajectories, run_id)
            store.set_run_status(run_id, "completed")
        report.store, report.run_id = str(out), run_id
        (out / "eval_report.json").write_text(json.dumps(report.as_dict(), indent=2), encoding="utf-8")
    print_report(console, report, time.perf_counter() - start)
    return report


def print_report(console: Console, report: EvalReport, elapsed_s: float | None = None) -> None:
    from rich.table import Table
    from rich.text import Text

    table = Table(title=f"eval: {report.model} on {report.env} (pass = verifier outcome 1; 95% Wilson CI)")
    for column in (report.group_by, "episodes", "passed", "pass rate", "95% CI", "reward mean", "infra failed"):
        table.add_column(column)

    def add(stats, style: str = "") -> None:
        low, high = stats.ci
        table.add_row(Text(stats.group, style=style), str(stats.episodes), str(stats.passed), f"{stats.pass_rate:.3f}",
                      f"[{low:.3f}, {high:.3f}]", f"{stats.reward_mean:.3f}", str(stats.failed_infra))

    for stats in report.groups:
        add(stats)
    add(report.overall, "bold")
    console.print(table)
    if elapsed_s is not None:
        console.print(f"{report.overall.episodes + report.overall.failed_infra} episodes in {elapsed_s:.1f} s")
    if report.store:
        console.print(f"trajectories: {report.store} (run {report.run_id}); report: {report.store}/eval_report.json")
