"""Two task domains carved out of tool-reasoning for the negative-transfer experiment
(docs/curriculum-experiment.md): the shipped default policy was bootstrapped on tool-reasoning only
(arithmetic, the other family measured: 0/16 greedy), so the domains used are tool-reasoning's two
task shapes, registered here as families of their own:

- `tr-items`: look up items (with counts and a unit conversion): tool-reasoning levels 1-2;
- `tr-baskets`: fetch a person's basket, look up each item, total (or difference) in a converted
  unit: tool-reasoning levels 3-4.

Same tools, environment, verifier and reward as tool-reasoning; only the task shape differs.
Loaded by the configs beside it (`plugins = [...]`) or `--plugin` on the command line.
"""

from __future__ import annotations

from forgerl.envs.base import Family, Task, list_families, register_family, submit_nothing
from forgerl.envs.tool_reasoning import ToolReasoningEnv, generate_task

DOMAINS = {"tr-items": (1, 2), "tr-baskets": (3, 4)}


def _family(name: str, levels: tuple[int, ...]) -> Family:
    def generate(seed: int, difficulty: int) -> Task:
        if difficulty not in levels:
            raise ValueError(f"{name} difficulty must be one of {list(levels)}, got {difficulty}")
        return generate_task(seed, difficulty).model_copy(update={"family": name})  # trajectories say which domain

    env = type(f"ToolReasoningEnv[{name}]", (ToolReasoningEnv,), {"family": name})  # accepts this domain's tasks
    return Family(name=name, make_env=env, sample_task=lambda seed: generate(seed, levels[0]),
                  description=f"tool-reasoning's task shape at levels {list(levels)} (the transfer experiment)",
                  difficulties=levels, generate=generate, noop=submit_nothing("submit_answer", answer=""))


for _name, _levels in DOMAINS.items():
    if _name not in list_families():
        register_family(_family(_name, _levels))
