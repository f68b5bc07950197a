"""Issue 8's experiment: a reward model learnt from a scripted expert's labels on real rollouts of
the default policy, then used as a reward component, moves the policy toward the expert's taste.

Three stages (scripts/rm_reward_experiment.py runs them):

1. `collect`: rollouts of the shipped default policy on tool-reasoning (its training difficulty)
   at temperature 1, in groups per task, without training; stored in a run store.
2. `label_and_train`: the grounding expert (forgerl.review.tool_expert) labels them — rubric
   scores and A/B preferences within each task — and the reward model is trained on several
   task splits (held-out pairwise accuracy per split); the first split's model is saved.
3. `compare`: `forgerl.train.loop.train` twice per seed with the same tasks at every step — the
   verifier's reward alone, and blended with the reward model (`[reward_model]`) — and the
   preference metric (fraction of grounded rollouts) per step of each arm.

Both arms of a seed draw the same tasks at every step (task seeds derive from (seed, step)), so the
per-step difference is paired, not between different task mixes.
"""

from __future__ import annotations

import asyncio
import inspect
import json
import statistics
import time
from collections import defaultdict
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from forgerl.review.features import verifier_reward
from forgerl.review.rm import (
    RewardModelConfig,
    TrainResult,
    load_label_data,
    result_dict,
    train_reward_model,
)
from forgerl.review.tool_expert import grounded_fraction, label_with_tool_expert
from forgerl.store import TrajectoryStore
from forgerl.types import Trajectory


def collect(out_dir: str | Path, *, batches: int, groups: int = 8, group_size: int = 4, seed: int = 1,
            model: str = "default") -> list[Trajectory]:
    """`batches` × `groups` tasks × `group_size` rollouts at temperature 1 (the training sampler,
    no optimizer step), stored in `out_dir`'s store. Seed 1 by default: other tasks than a run of
    seed 0 trains on."""
    from forgerl.train.config import TrainConfig
    from forgerl.train.rollouts import collect_groups
    from forgerl.train.run import close_run, open_run

    config = TrainConfig(model=model, run_dir=str(out_dir), groups_per_step=groups, group_size=group_size, seed=seed,
                         steps=1)
    run = open_run(config)
    trajectories: list[Trajectory] = []
    try:
        for batch in range(batches):
            run.step = batch  # only selects the tasks: the weights never change
            groups_ = asyncio.run(collect_groups(run))
            batch_trajs = [t for g in groups_ for t in g]
            run.store.add_trajectories(batch_trajs, run.run_id, step=batch)
            trajectories += batch_trajs
    finally:
        close_run(run)
    return trajectories


def label_and_train(data_dir: str | Path, rm_out: str | Path, *, seeds: tuple[int, ...] = (0, 1, 2),
                    config: RewardModelConfig | None = None, encoder: Any = None,
                    label: bool = True) -> list[TrainResult]:
    """Label the store's trajectories with the grounding expert (unless already labelled), train
    one reward model per split seed, save the first one to `rm_out`."""
    with TrajectoryStore(data_dir) as store:
        if label and not store.labels():
            label_with_tool_expert(store, store.query())
        data = load_label_data(store)
    config = config or RewardModelConfig()
    results = []
    for i, seed in enumerate(seeds):
        model, result = train_reward_model(data, config.model_copy(update={"seed": seed}), encoder=encoder)
        encoder = model.encoder  # embed once: the encoder is frozen and shared
        results.append(result)
        if i == 0:
            model.save(rm_out, result_dict(result))
    return results


@dataclass
class StepRow:
    step: int
    n: int
    grounded: float
    verifier_reward: float
    rm_score: float | None


@dataclass
class ArmResult:
    arm: str
    seed: int
    run_dir: str
    rows: list[StepRow] = field(default_factory=list)
    eval_rewards: list[tuple[int, float]] = field(default_factory=list)
    seconds: float = 0.0


def preference_by_step(run_dir: str | Path) -> list[StepRow]:
    """Per training step: rollouts, fraction grounded, mean verifier reward, mean RM score."""
    with TrajectoryStore(run_dir) as store:
        trajectories = store.query()
    by_step: dict[int, list[Trajectory]] = defaultdict(list)
    for t in trajectories:
        by_step[int(t.metadata.get("step", -1))].append(t)
    rows = []
    for step in sorted(by_step):
        group = by_step[step]
        rewards = [r for r in (verifier_reward(t) for t in group) if r is not None]
        rm = [t.metadata["reward_model"]["score"] for t in group if isinstance(t.metadata.get("reward_model"), dict)]
        rows.append(StepRow(step, len(group), grounded_fraction(group), statistics.fmean(rewards) if rewards else 0.0,
                            statistics.fmean(rm) if rm else None))
    return rows


def _loop_applies_reward_model() -> bool:
    from forgerl.train import loop

    return "apply_reward_model" in inspect.getsource(loop)


def compare(rm_dir: str | Path, out: str | Path, *, steps: int = 10, seeds: tuple[int, ...] = (0,),
            weight: float = 1.0, overrides: dict[str, Any] | None = None,
            arms: tuple[str, ...] = ("verifier", "verifier+rm")) -> list[ArmResult]:
    """Train each seed twice — verifier only, verifier + reward model — and measure the preference."""
    from forgerl.train.config import TrainConfig
    from forgerl.train.loop import train

    if not _loop_applies_reward_model():
        raise RuntimeError("forgerl.train.loop does not call forgerl.review.train_hook.apply_reward_model yet, so "
                           "[reward_model] would be ignored: add the two lines from the issue-8 note to train/loop.py")
    out = Path(out)
    results = []
    for seed in seeds:
        for arm in arms:
            run_dir = out / f"{arm.replace('+', '_')}_seed{seed}"
            settings: dict[str, Any] = {"steps": steps, "seed": seed, "run_dir": str(run_dir),
                                        "eval_every": steps, "checkpoint_every": steps, **(overrides or {})}
            if arm == "verifier+rm":
                settings["reward_model"] = {"path": str(rm_dir), "weight": weight}
            start = time.perf_counter()
            trained = train(TrainConfig.model_validate(settings))
            result = ArmResult(arm, seed, str(run_dir), preference_by_step(run_dir), trained.eval_rewards,
                               time.perf_counter() - start)
            results.append(result)
            (out / f"results_{'_'.join(a.replace('+', '_') for a in arms)}.json").write_text(json.dumps([asdict(r) for r in results], indent=2))
    return results


def table(results: list[ArmResult], window: int = 3) -> str:
    """Markdown: per step, grounded fraction (and verifier reward) of each arm; then first vs last
    `window` steps, averaged over seeds."""
    arms = sorted({r.arm for r in results}, key=["verifier", "verifier+rm"].index)
    steps = sorted({row.step for r in results for row in r.rows})
    lines = ["| step | " + " | ".join(f"{a}: grounded / verifier reward" for a in arms) + " |",
             "|---" * (len(arms) + 1) + "|"]
    for step in steps:
        cells = []
        for arm in arms:
            rows = [row for r in results if r.arm == arm for row in r.rows if row.step == step]
            cells.append(f"{statistics.fmean(x.grounded for x in rows):.2f} / "
                         f"{statistics.fmean(x.verifier_reward for x in rows):.2f}" if rows else "")
        lines.append(f"| {step} | " + " | ".join(cells) + " |")
    header = (f"| arm | grounded, first {window} steps | grounded, last {window} steps | change | "
              "held-out verifier reward (start → end) |")
    lines += ["", header, "|---|---|---|---|---|"]
    for arm in arms:
        runs = [r for r in results if r.arm == arm]
        first = statistics.fmean(row.grounded for r in runs for row in r.rows[:window])
        last = statistics.fmean(row.grounded for r in runs for row in r.rows[-window:])
        evals = "; ".join(" → ".join(f"{v:.2f}" for _, v in r.eval_rewards) for r in runs)
        lines.append(f"| {arm} | {first:.3f} | {last:.3f} | {last - first:+.3f} | {evals} |")
    return "\n".join(lines)


def export_rollouts(trajectories: list[Trajectory], path: str | Path) -> Path:
    """Rollouts as gzipped JSON lines without token ids and tool schemas (what the reward model and
    the expert read): the test fixture tests/review/data/tool_reasoning_rollouts.jsonl.gz."""
    import gzip

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with gzip.open(path, "wt", encoding="utf-8") as f:
        for t in trajectories:
            f.write(t.model_dump_json(exclude={"calls", "tools"}) + "\n")
    return path


def load_rollouts(path: str | Path) -> list[Trajectory]:
    import gzip

    with gzip.open(path, "rt", encoding="utf-8") as f:
        return [Trajectory.model_validate_json(line) for line in f if line.strip()]
