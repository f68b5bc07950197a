"""Random batches of agent trajectories for the prefix-tree tests.

A batch has groups of G rollouts sharing a prompt; each rollout makes T calls whose prompts extend
the previous prompt + completion + a tool result; some calls follow a context-manager rewrite (the
chain breaks: a new root); some groups add sub-agent trajectories that share only the system
prompt (multi-agent); completions drawn from a tiny vocabulary make sibling rollouts share their
first sampled tokens, so one tree node can hold targets of several samples.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from forgerl.types import LLMCall, Trajectory


@dataclass(frozen=True)
class Shape:
    groups: int = 2
    group_size: int = 3
    turns: int = 3
    prompt_len: int = 12
    max_completion: int = 6
    max_tool: int = 5
    rewrite_prob: float = 0.2
    subagents: int = 1
    collide_prob: float = 0.3


def random_batch(seed: int, shape: Shape = Shape(), vocab: int = 300) -> list[list[Trajectory]]:
    rng = random.Random(seed)
    system = [rng.randrange(1, vocab) for _ in range(shape.prompt_len // 2)]  # shared by every group (tools)

    def rollout(prompt: list[int], turns: int, agent: str) -> Trajectory:
        ctx, calls = list(prompt), []
        for _ in range(turns):
            if calls and rng.random() < shape.rewrite_prob:
                ctx = ctx[: len(system)] + [rng.randrange(1, vocab) for _ in range(rng.randrange(1, 4))]  # summary
            small = rng.random() < shape.collide_prob
            comp = [rng.randrange(1, 4) if small else rng.randrange(1, vocab) for _ in range(rng.randrange(1, shape.max_completion + 1))]
            mask = [1] * len(comp)
            if len(comp) > 2 and rng.random() < 0.3:
                mask[-1] = 0  # e.g. a forced stop token that is not trained on
            calls.append(LLMCall(prompt_ids=list(ctx), completion_ids=comp,
                                 completion_logprobs=[-rng.uniform(0.1, 3.0) for _ in comp], loss_mask=mask,
                                 policy_version=0, finish_reason="stop"))
            ctx = ctx + comp + [rng.randrange(1, vocab) for _ in range(rng.randrange(1, shape.max_tool + 1))]
        return Trajectory(calls=calls, agent_id=agent, reward=float(rng.random() < 0.5))

    groups = []
    for _ in range(shape.groups):
        prompt = system + [rng.randrange(1, vocab) for _ in range(shape.prompt_len - len(system))]
        group = [rollout(prompt, rng.randrange(1, shape.turns + 1), "main") for _ in range(shape.group_size)]
        for k in range(shape.subagents):
            sub_prompt = system + [rng.randrange(1, vocab) for _ in range(3)]
            group.append(rollout(sub_prompt, rng.randrange(1, shape.turns + 1), f"sub{k}"))
        groups.append(group)
    return groups
