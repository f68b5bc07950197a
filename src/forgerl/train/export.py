"""`forgerl export RUN[:best|:step_N] --out DIR`: a clean Hugging Face model directory from a
training run, with a model card.

Why: a checkpoint also holds the trainer's state (optimizer, RNG, step), which a user of the model
does not want; the export keeps only what `AutoModelForCausalLM` / `AutoTokenizer.from_pretrained`
read (plus the LoRA adapter where the run had one, and `mtp.safetensors` where the policy has MTP
heads: `load_policy` attaches them, transformers ignores the file), with normal file modes, and a
README.md that says how the model was made: the base model, the training config, the data, the
held-out curve.
The checkpoint is verified against its checksums before anything is copied.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

from forgerl.errors import ConfigError
from forgerl.store import TrajectoryStore
from forgerl.train.checkpoint import (
    ADAPTER_DIRNAME,
    CHECKSUMS_FILENAME,
    LORA_POLICY_FILENAME,
    OPTIMIZER_FILENAME,
    RNG_FILENAME,
    STATE_FILENAME,
    CheckpointError,
    normal_file_mode,
    read_best_pointer,
    resolve_model_reference,
)

TRAINER_FILES = {CHECKSUMS_FILENAME, LORA_POLICY_FILENAME, OPTIMIZER_FILENAME, RNG_FILENAME, STATE_FILENAME}
"""Checkpoint files that are trainer state, not model: left out of an export."""


def export_model(reference: str, out: str | Path) -> Path:
    """Write the model `reference` names (RUN, RUN:best, RUN:step_N) into `out` (which must not
    exist or be empty); returns `out`."""
    try:
        checkpoint = resolve_model_reference(reference)
    except CheckpointError as exc:
        raise ConfigError(str(exc)) from None
    if checkpoint is None:
        raise ConfigError(f"{reference!r} is not a training run or checkpoint: give RUN, RUN:best or RUN:step_N "
                          "(a run directory of `forgerl train`)")
    out = Path(out)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise ConfigError(f"--out {out} already exists and is not an empty directory: choose a new one")
    tmp = out.with_name(out.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    shutil.copytree(checkpoint, tmp, ignore=lambda d, names: [n for n in names if Path(d) == checkpoint and n in TRAINER_FILES])
    for path in tmp.rglob("*"):
        if path.is_file():
            normal_file_mode(path)
    run_dir = checkpoint.parent.parent
    (tmp / "README.md").write_text(model_card(run_dir, checkpoint), encoding="utf-8")
    normal_file_mode(tmp / "README.md")
    if out.exists():
        out.rmdir()
    tmp.replace(out)
    return out


def model_card(run_dir: Path, checkpoint: Path) -> str:
    """A README.md: what the model is, how it was trained and how well it did on held-out tasks."""
    config, curve, status = _run_record(run_dir)
    step = json.loads((checkpoint / STATE_FILENAME).read_text(encoding="utf-8")).get("step") \
        if (checkpoint / STATE_FILENAME).is_file() else None
    best = _best_or_none(run_dir)
    lines = ["---", "library_name: transformers", "tags: [forgerl, reinforcement-learning, agent]", "---", "",
             f"# {run_dir.name} (step {step})", "",
             f"Trained with forgerl RL from base model `{config.get('model', 'unknown')}` on the "
             f"`{config.get('env', 'unknown')}` task family (difficulty {config.get('difficulty', 'unknown')}).", "",
             f"- checkpoint: `{checkpoint.name}` of run `{run_dir}` (run status: {status})",
             f"- held-out reward at this step: {_fmt(dict(curve).get(step))}"]
    if best is not None:
        lines.append(f"- best checkpoint of the run: step {best['step']} (held-out reward {_fmt(best.get('eval_reward'))})")
    if (checkpoint / ADAPTER_DIRNAME).is_dir():
        lines.append(f"- LoRA: the weights here are merged; the adapter alone is in `{ADAPTER_DIRNAME}/`")
    lines += ["", "## Data", "",
              f"Episodes of the `{config.get('env')}` environment, {config.get('groups_per_step')} tasks x "
              f"{config.get('group_size')} rollouts per step, chat format `{config.get('chat_format')}`, "
              f"seed {config.get('seed')}; held-out evaluation on {_eval_tasks(config)} tasks from a seed "
              "range training never draws from.", "",
              "## Held-out reward", "", "| step | mean held-out reward |", "|---|---|"]
    lines += [f"| {s} | {_fmt(v)} |" for s, v in curve]
    lines += ["", "## Training config", "", "```json", json.dumps(config, indent=1, sort_keys=True, default=str), "```", ""]
    return "\n".join(lines)


def _run_record(run_dir: Path) -> tuple[dict[str, Any], list[tuple[int, float]], str]:
    if not (run_dir / "store.sqlite").is_file():
        return {}, [], "unknown"

    with TrajectoryStore(run_dir) as store:
        runs = store.runs()
        if not runs:
            return {}, [], "unknown"
        run = runs[-1]
        curve = [(step, value) for step, _, value in store.metrics(run.id, "eval/reward")]
        return run.config, sorted(curve), run.status


def _best_or_none(run_dir: Path) -> dict[str, Any] | None:
    try:
        return read_best_pointer(run_dir)
    except CheckpointError:
        return None


def _fmt(value: Any) -> str:
    return f"{value:.4f}" if isinstance(value, (int, float)) else "n/a"


__all__ = ["export_model", "model_card"]


def _eval_tasks(config: dict[str, Any]) -> object:
    """Held-out tasks per evaluation from a run's recorded config: `eval.tasks`, or `eval_tasks` in
    runs recorded before the config was grouped (the store keeps each run's config as it was)."""
    grouped = config.get("eval")
    return grouped.get("tasks") if isinstance(grouped, dict) else config.get("eval_tasks")
