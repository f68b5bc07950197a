"""Train the default policy with CISPO where every rollout is a black-box agent
(examples/openai_agent.py, which only knows the `openai` client) talking to a forgerl gateway.

    .venv/bin/python examples/train_through_gateway.py --steps 20 --run-dir runs/gateway-demo

Each step opens groups x group-size gateway sessions, runs the agent in each (in threads), ends
the sessions (the environment scores them, the store keeps them) and takes one optimizer step on
the recorded token ids; the engine gets the new weights before the next step.
"""

from __future__ import annotations

import argparse
import functools
import importlib.util
from pathlib import Path

from forgerl.gateway.train import train_through_gateway
from forgerl.train.config import TrainConfig


def _agent_module():
    spec = importlib.util.spec_from_file_location("openai_agent", Path(__file__).with_name("openai_agent.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="default")
    parser.add_argument("--env", default="tool-reasoning")
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--groups", type=int, default=8)
    parser.add_argument("--group-size", type=int, default=4)
    parser.add_argument("--max-turns", type=int, default=8)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--run-dir", default="runs/gateway-demo")
    args = parser.parse_args()
    config = TrainConfig(model=args.model, env=args.env, steps=args.steps, groups_per_step=args.groups,
                         group_size=args.group_size, max_turns=args.max_turns, seed=args.seed, run_dir=args.run_dir)
    agent = functools.partial(_agent_module().run_agent, max_turns=config.max_turns, max_tokens=config.max_tokens,
                              temperature=config.temperature)
    keys = ("rollout/reward", "rollout/pass_rate", "train/samples", "gateway/new_roots_per_episode",
            "mismatch/mean_abs_logprob")

    def show(step: int, metrics: dict[str, float]) -> None:
        print(f"step {step:3d}  " + "  ".join(f"{k}={metrics[k]:.3f}" for k in keys if k in metrics), flush=True)

    out = train_through_gateway(config, agent, on_step=show)
    print(f"done: {out['steps']} steps, run directory {out['run_dir']}")


if __name__ == "__main__":
    main()
