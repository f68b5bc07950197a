"""End-of-run report: a markdown table of the main per-step metrics and a PNG of the reward curve,
written into the run directory from what the store holds (so a resumed run reports every step)."""

from __future__ import annotations

from pathlib import Path

from forgerl.doctor.live import read_doctor_log
from forgerl.doctor.text import format_finding
from forgerl.store import TrajectoryStore

COLUMNS = ("rollout/reward", "rollout/pass_rate", "rollout/verifier_reward", "rollout/rm_score", "eval/reward", "heldout/pass_rate", "heldout/truncated_rate", "train/loss", "train/entropy",
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
    if any("curriculum/stage" in row for row in table.values()):
        lines += _domain_section(table, run_dir)
    lines += _doctor_section(run_dir)
    out = run_dir / "report.md"
    out.write_text("\n".join(lines) + "\n")
    return out


def _doctor_section(run_dir: Path) -> list[str]:
    """The warnings the run doctor raised while the run trained (doctor.jsonl), one line each."""
    live = read_doctor_log(run_dir)
    if not live:
        return []
    lines = ["", "## Run doctor", "", f"Warnings raised during training (`forgerl doctor {run_dir}` for the full diagnosis):", ""]
    return lines + [f"- step {step}: {format_finding(finding, evidence=False)}" for step, finding in live]


def domain_names(table: dict[int, dict[str, float]]) -> list[str]:
    """The families a curriculum run logged (`domain/<family>/...` or `eval/<family>`), in order."""
    names: dict[str, None] = {}
    for row in table.values():
        for key in row:
            if key.startswith("domain/"):
                names[key.split("/")[1]] = None
            elif key.startswith("eval/") and key != "eval/reward":
                names[key.removeprefix("eval/")] = None
    return list(names)


def stage_starts(table: dict[int, dict[str, float]]) -> list[tuple[int, int]]:
    """(stage, first step logged in it) for each stage the run entered."""
    starts: list[tuple[int, int]] = []
    for step, row in table.items():
        stage = row.get("curriculum/stage")
        if stage is not None and (not starts or starts[-1][0] != int(stage)):
            starts.append((int(stage), step))
    return starts


def _domain_section(table: dict[int, dict[str, float]], run_dir: Path) -> list[str]:
    """A curriculum run's per-domain table (rollout reward / pass rate / groups, held-out reward)
    with its stage column, the stage boundaries, and per-domain curves."""
    families = domain_names(table)
    columns = [(f"domain/{f}/{m}", f"{f} {m}") for f in families for m in ("reward", "pass_rate", "groups")]
    columns += [(f"eval/{f}", f"eval {f}") for f in families]
    columns += [(f"domain/{f}/eval_pass_rate", f"eval {f} pass_rate") for f in families]
    columns = [(key, label) for key, label in columns if any(key in row for row in table.values())]
    lines = ["", "## Per domain (curriculum)", "",
             "stages: " + ", ".join(f"stage {stage} from step {step}" for stage, step in stage_starts(table)), "",
             "| step | stage | " + " | ".join(label for _, label in columns) + " |",
             "|---" * (len(columns) + 2) + "|"]
    for step, row in table.items():
        stage = f"{row['curriculum/stage']:.0f}" if "curriculum/stage" in row else ""
        cells = [f"{row[key]:.4g}" if key in row else "" for key, _ in columns]
        lines.append(f"| {step} | {stage} | " + " | ".join(cells) + " |")
    plot = _plot_domains(table, families, run_dir / "domains.png")
    if plot:
        lines += ["", f"![per-domain reward]({plot.name})"]
    return lines


def _plot_domains(table: dict[int, dict[str, float]], families: list[str], path: Path) -> Path | None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    fig, ax = plt.subplots(figsize=(7, 4))
    for i, family in enumerate(families):
        for key, style in ((f"domain/{family}/reward", ".-"), (f"eval/{family}", "o--")):
            points = [(s, row[key]) for s, row in table.items() if key in row]
            if points:
                ax.plot([p[0] for p in points], [p[1] for p in points], style, color=f"C{i}",
                        label=f"{family} ({'rollout' if key.startswith('domain') else 'held-out'})")
    for stage, step in stage_starts(table)[1:]:
        ax.axvline(step - 0.5, color="grey", linestyle=":")
        ax.text(step - 0.5, 1.0, f" stage {stage}", fontsize=8, va="top")
    ax.set_xlabel("step")
    ax.set_ylabel("mean reward")
    ax.set_ylim(-0.02, 1.02)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


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
