"""Process features of a trajectory: how the agent worked, as a few numbers next to the text.

Why: a frozen sentence encoder reads *what* was written — a destructive command, a curt reply —
but not relations across the episode: how many rounds it took, how many calls ran in parallel,
whether a number passed to a tool was ever seen before. Experts judge exactly such things
("reliable and pleasant to work with", M2_NOTES §5), and with a few hundred labels a small head
cannot learn to count or to compare numbers from embeddings. These statistics are cheap, generic
(any tool-using family has them) and scaled to about [0, 1] so they sit beside unit-norm embeddings.

`unseen_numbers` is the hallucination signal: numbers an agent passes to a tool (other than its
final answer) that appear neither in the user's messages nor in an earlier tool result — invented
rather than copied or computed by a tool.

`well_formed` is the precondition of every other judgement: the agent's outputs all parsed and it
ended the episode itself. Without it "passed no invented number" is met by passing nothing at all —
issue 8's first RM run rewarded exactly that, and the policy collapsed into unparsable tool markup
(no parsed call, so no invented number) that the reward model scored 0.88-0.95.
"""

from __future__ import annotations

import math
import re
from typing import Any

from forgerl.envs.rewards import verifier_reward  # re-exported: the RM's features read the verifier's own reward
from forgerl.types import Boundary, Trajectory, TrajectoryStatus

PROCESS_FEATURES = (
    "llm_calls", "tool_calls", "max_parallel_calls", "thinking_chars", "parse_errors", "tool_errors",
    "unseen_numbers", "seen_number_fraction", "markup_in_text", "verifier_passed", "well_formed", "submitted",
)
"""Names, in order, of the values `process_features` returns. New names are appended, never inserted:
a saved reward model records how many it was trained with and reads that prefix."""

FINAL_TOOLS = frozenset({"submit_answer"})
"""Tools whose arguments are the deliverable itself, not a step towards it: not checked for unseen numbers."""

_NUMBER = re.compile(r"(?<![\w.])-?\d+(?:\.\d+)?")
_MARKUP = re.compile(r"<\s*/?\s*(?:think|invoke|parameter|minimax:tool_call)\b|\]~[b!]\]|\[e~\[")


def numbers_in(value: Any) -> list[float]:
    """Every number in a tool argument value: JSON numbers, and numbers written inside strings
    (an arithmetic expression, a command line). Booleans are not numbers."""
    if isinstance(value, bool) or value is None:
        return []
    if isinstance(value, int | float):
        return [float(value)] if math.isfinite(value) else []
    if isinstance(value, str):
        return [float(m) for m in _NUMBER.findall(value)]
    if isinstance(value, dict):
        return [n for v in value.values() for n in numbers_in(v)]
    if isinstance(value, list | tuple):
        return [n for v in value for n in numbers_in(v)]
    return []


def unseen_numbers(traj: Trajectory) -> tuple[list[float], int]:
    """(numbers passed to tools that the agent had not seen, count of all numbers passed to tools).

    Seen = in a user message or in an earlier tool result. Calls of FINAL_TOOLS are skipped."""
    seen: set[float] = set()
    unseen: list[float] = []
    total = 0
    for message in traj.messages:
        if message.role in ("user", "tool"):
            seen.update(numbers_in(message.content or ""))
        elif message.role == "assistant":
            for call in message.tool_calls:
                if call.name in FINAL_TOOLS:
                    continue
                values = numbers_in(call.arguments)
                total += len(values)
                unseen += [v for v in values if v not in seen]
    return unseen, total


def parse_failures(traj: Trajectory) -> int:
    """Outputs the agent loop could not act on: unparsable tool markup, or cut off at the token
    limit (forgerl.agent.loop records both at the PARSE boundary)."""
    return sum(e.boundary == Boundary.PARSE for e in traj.errors)


def submitted(traj: Trajectory) -> bool:
    """The agent delivered through a final tool (FINAL_TOOLS) whose call parsed."""
    return any(c.name in FINAL_TOOLS for m in traj.messages if m.role == "assistant" for c in m.tool_calls)


def well_formed(traj: Trajectory) -> bool:
    """Every output of the agent parsed and was acted on, and the agent ended the episode itself
    (status COMPLETED, not cut off by a turn, token or context budget). Family-independent: this is
    the reward model's gate in training (forgerl.review.train_hook) and the floor of the scripted
    expert's preference (forgerl.review.tool_expert)."""
    return traj.status == TrajectoryStatus.COMPLETED and parse_failures(traj) == 0


def process_features(traj: Trajectory) -> tuple[float, ...]:
    """The PROCESS_FEATURES of one trajectory, each scaled to about [0, 1]."""
    assistant = [m for m in traj.messages if m.role == "assistant"]
    llm_calls = len(assistant)  # one per LLM call; also for exports without token ids
    tool_calls = sum(len(m.tool_calls) for m in assistant)
    thinking = sum(len(m.reasoning or "") for m in assistant)
    unseen, total = unseen_numbers(traj)
    markup = any(_MARKUP.search(m.reasoning or "") or _MARKUP.search(m.content or "") for m in assistant)
    verifier = verifier_reward(traj)
    passed = verifier is not None and verifier >= 0.5
    return (
        min(llm_calls, 20) / 10,
        min(tool_calls, 20) / 10,
        min(max((len(m.tool_calls) for m in assistant), default=0), 10) / 5,
        math.log1p(thinking) / 8,
        min(parse_failures(traj), 3) / 3,
        min(sum(e.boundary == Boundary.TOOL for e in traj.errors), 3) / 3,
        min(len(unseen), 3) / 3,
        1.0 - len(unseen) / total if total else 0.0,  # nothing passed is no evidence of grounding
        float(markup),
        float(passed),
        float(well_formed(traj)),
        float(submitted(traj)),
    )
