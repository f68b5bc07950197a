"""`tool-reasoning-long`: tool-reasoning whose tool results are too long to keep (issue 24 item 4).

Every non-submit result starts with the answer, as in `tool-reasoning`, and then carries a long
audit trail the task never needs (seeded per task and call). Played with the scripted solver's own
turns (its thinking notes each value it read; up to ~270 tokens a turn) in the main job's 2,048-token
context, the path kept whole is truncated, while the harness's `keep_last_turns(turns=1)` or the
solver's own `context_keep_last_turns` calls let it finish and score 1 — so an agent that keeps
everything cannot answer and one that manages its context can. `TRAIL_LINES` was set by that
measurement (`python scripts/long_context_fit.py`, seeds 500-539, 320-token turns; finished /
40: kept whole, harness-managed, policy-managed):

    difficulty 1 (5 lines)    40 / 40 / 40   fits whole: nothing to manage
    difficulty 2 (11 lines)    0 / 40 / 40
    difficulty 3 (4 lines)    10 / 40 / 40   two-item baskets without a conversion still fit
    difficulty 4-5             0 / 7 / 0 and 0 / 0 / 0: a round of 6-9 parallel lookups and their
                               results does not fit 2,048 tokens however the rest is managed

This is the long-horizon setting in which context management must be learnt rather than bolted on
at inference (M2_NOTES §4, "context rot"; the experiment: docs/context-rot-experiment.md).
"""

from __future__ import annotations

import random

from forgerl.envs import tool_reasoning as base
from forgerl.envs.base import Family, Task, register_family, submit_nothing
from forgerl.types import Message, ToolCall

FAMILY = "tool-reasoning-long"
TRAIL_LINES = {1: 5, 2: 11, 3: 4, 4: 4, 5: 3}
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

    def gold_messages(self, task: Task, *, inject_error: bool = False, seed: int = 0, varied: bool = False) -> list[Message]:
        """tool-reasoning's scripted conversation with this family's prompt and long results: the
        solver's thinking is the same (it reads only the first line), the tool messages carry the
        trails `run` appends (numbered as `run` counts them: results that did not fail)."""
        short = task.model_copy(update={"family": base.FAMILY})
        gold = super().gold_messages(short, inject_error=inject_error, seed=seed, varied=varied)
        opening = LongToolReasoningEnv().reset(task)
        out, results = [*opening, *gold[len(opening):]], 0
        for i, message in enumerate(out):
            if i < len(opening) or message.role != "tool" or message.name == "submit_answer":
                continue
            if (message.content or "").startswith("Error:"):
                continue
            results += 1
            trail = audit_trail(task.id, results, int(task.data["trail_lines"]))
            out[i] = message.model_copy(update={"content": f"{message.content}\n{trail}"})
        return out

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
