"""End-of-run report: a markdown table of the main per-step metrics and a PNG of the reward curve,
written into the run directory from what the store holds (so a resumed run reports every step)."""

from __future__ import annotations

from pathlib import Path

from forgerl.store import TrajectoryStore

COLUMNS = ("rollout/reward", "rollout/pass_rate", "rollout/verifier_reward", "rollout/rm_score", "eval/reward", "train/loss", "train/entropy",
           "mismatch/mean_abs_logprob", "loss/clip_frac_high", "mtp/draft_kl", "mtp/accept_depth1", "mtp/tokens_per_forward",
           "time/rollout_s", "time/train_s")


def metric_table(store: TrajectoryStore, run_id: str) -> dict[int, dict[str, float]]:
    """step -> {metric: value}. A step redone after a resume is seen once: the store leaves out
    the values the resume superseded."""
    table: dict[int, dict[str, float]] = {}
    for step, name, value in store.metrics(run_id):
        table.setdefault(step, {})[name] = value
    return dict(sorted(table.items()))


def write_report(run_dir: str | Path) -> Path:
    run_dir = Path(run_dir)
    with TrajectoryStore(run_dir) as store:
        run = store.runs()[-1]
        table = metric_table(store, run.id)
    present = [c for c in COLUMNS if any(c in row for row in table.values())]
    lines = [f"# forgerl run report — {run_dir}", "", f"run id: `{run.id}`", ""]
    lines.append("| step | " + " | ".join(present) + " |")
    lines.append("|---" * (len(present) + 1) + "|")
    for step, row in table.items():
        cells = [f"{row[c]:.4g}" if c in row else "" for c in present]
        lines.append(f"| {step} | " + " | ".join(cells) + " |")
    plot = _plot_rewards(table, run_dir / "reward.png")
    lines += ["", f"![reward curve]({plot.name})" if plot else "(install matplotlib for the reward plot: pip install matplotlib)"]
    out = run_dir / "report.md"
    out.write_text("\n".join(lines) + "\n")
    return out


def _plot_rewards(table: dict[int, dict[str, float]], path: Path) -> Path | None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    fig, ax = plt.subplots(figsize=(7, 4))
    for name, style in (("rollout/reward", "-"), ("eval/reward", "o-")):
        points = [(s, row[name]) for s, row in table.items() if name in row]
        if points:
            ax.plot([p[0] for p in points], [p[1] for p in points], style, label=name)
    ax.set_xlabel("step")
    ax.set_ylabel("mean reward")
    ax.set_ylim(-0.02, 1.02)
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path
