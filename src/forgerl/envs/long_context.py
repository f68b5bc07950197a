"""`tool-reasoning-long`: tool-reasoning whose tool results are too long to keep (issue 24 item 4).

Every non-submit result starts with the answer, as in `tool-reasoning`, and then carries a long
audit trail the task never needs (seeded per task and call). From difficulty 2 on, the gold path
played with everything kept overflows the main job's 2,048-token context (seeds 0-19, minimax_m2
format: 20 of 20 at difficulties 2, 4 and 5, 16 of 20 at 3, where two-item baskets still fit),
while the largest single round still fits next to a context tool's description — so an agent that
keeps everything is truncated before it can answer, and one that manages its context (dropping old
results after noting their values in its thinking) finishes: the gold path with a fixed
`drop_old_rounds` or with the policy's own `context_drop_tool_outputs` calls scores 1 on all of
them. Trail lengths per difficulty (`TRAIL_LINES`) were set by that measurement. This is the
long-horizon setting in which context management must be learnt rather than bolted on at
inference (M2_NOTES §4, "context rot").
"""

from __future__ import annotations

import random

from forgerl.envs import tool_reasoning as base
from forgerl.envs.base import Family, Task, register_family, submit_nothing
from forgerl.types import Message, ToolCall

FAMILY = "tool-reasoning-long"
TRAIL_LINES = {1: 5, 2: 11, 3: 12, 4: 6, 5: 3}
"""Audit-trail lines per tool result (about 27 tokens each with the default tokenizer)."""
NOTICE = (" Every tool result begins with the answer; the audit trail after it is never needed. Results are "
          "long, so keep the values you need in your thinking.")


def generate_task(seed: int, difficulty: int) -> Task:
    """The tool-reasoning task of (seed, difficulty), with long results."""
    task = base.generate_task(seed, difficulty)
    return task.model_copy(update={
        "id": task.id.replace(base.FAMILY, FAMILY, 1), "family": FAMILY,
        "data": {**task.data, "trail_lines": TRAIL_LINES[difficulty]},
    })


def sample_task(seed: int) -> Task:
    task = base.sample_task(seed)
    return generate_task(seed, task.difficulty)


def audit_trail(task_id: str, call_number: int, lines: int) -> str:
    """Deterministic filler: ledger rows with codes and counts, no item names (the solver and the
    reader must take the answer from the first line)."""
    rng = random.Random(f"{FAMILY}:{task_id}:{call_number}")
    start = rng.randrange(1000, 9000)
    rows = [f"ledger row {start + i} batch {rng.randrange(100, 999)} checked by clerk {rng.choice('KLMNPRSTVW')}"
            for i in range(lines)]
    return "\n".join(["--- audit trail (not needed) ---", *rows])


class LongToolReasoningEnv(base.ToolReasoningEnv):
    family = FAMILY

    def reset(self, task: Task) -> list[Message]:
        messages = super().reset(task)
        self._results = 0
        return [messages[0].model_copy(update={"content": messages[0].content + NOTICE}), *messages[1:]]

    def run(self, call: ToolCall) -> str:
        output = super().run(call)
        if call.name == "submit_answer" or self.task is None:
            return output
        self._results += 1
        return f"{output}\n{audit_trail(self.task.id, self._results, int(self.task.data['trail_lines']))}"


register_family(Family(
    name=FAMILY,
    make_env=LongToolReasoningEnv,
    sample_task=sample_task,
    description="tool-reasoning with long audit trails after every result: keeping all of them overflows the context.",
    difficulties=base.DIFFICULTIES,
    generate=generate_task,
    noop=submit_nothing("submit_answer", answer=""),
))
