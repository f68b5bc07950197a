"""A stored trajectory turned into what the review pages show: steps in order, each with its
thinking, tool calls (arguments pretty-printed) and observations, the deliverable (the submitted
answer or the final reply, labelled as which), the reward breakdown, the verifier's evidence (an
AppDev verifier's as a per-item table: evidence.py) and (optionally) per-token data of every LLM call.

Everything here stays plain text: escaping happens once, in the templates (Jinja2 autoescape), and
nothing is ever rendered as Markdown or HTML — model output is untrusted.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any, Literal

from forgerl.review.evidence import AppEvidenceView, appdev_view
from forgerl.review.features import process_features, verifier_reward
from forgerl.types import Message, ToolCall, Trajectory


@dataclass
class ToolCallView:
    id: str
    name: str
    arguments: str  # pretty JSON
    observation: str | None = None


@dataclass
class StepView:
    index: int  # position in trajectory.messages (what comments refer to)
    role: str
    content: str
    reasoning: str | None
    tool_calls: list[ToolCallView] = field(default_factory=list)


REWARD_NAME_CHARS = 36
"""Longer reward component names are shortened in the middle (the distinguishing end of
`..._component_07` stays visible); the full name is the tooltip."""


@dataclass(frozen=True)
class RewardPart:
    """One reward component as the strip shows it: `label` and `shown` are short, `name` and
    `full` (the exact value) go into the tooltips."""

    name: str
    label: str
    shown: str
    full: str


def short_number(x: float, decimals: int = 3) -> str:
    """`decimals` places in the usual range; 3 significant digits in exponent form for huge or tiny
    numbers, so a reward of 1e300 cannot print 300 digits into the page."""
    if x != x or x in (float("inf"), float("-inf")):
        return str(x)
    return f"{x:.{decimals}f}" if x == 0 or 1e-3 <= abs(x) < 1e6 else f"{x:.3g}"


def _middle_elide(text: str, limit: int = REWARD_NAME_CHARS) -> str:
    if len(text) <= limit:
        return text
    head = (limit - 1) // 2
    return f"{text[:head]}…{text[-(limit - 1 - head):]}"


def reward_parts(breakdown: dict[str, float]) -> list[RewardPart]:
    return [RewardPart(k, _middle_elide(k), short_number(x), repr(x)) for k, x in breakdown.items()]


@dataclass
class FinalView:
    """What the episode delivered, labelled for what it is (the expert judges this first).

    kind: "submitted" (the episode ended in a submit tool call: `text` is its arguments),
    "reply" (it ended in a text reply), "last_text" (it ended without either: `text` is the last
    text the agent wrote, so nobody mistakes it for an answer), "none" (no text at all)."""

    kind: Literal["submitted", "reply", "last_text", "none"]
    heading: str
    text: str | None
    tool: str | None = None  # the submit call's name
    note: str | None = None  # text the agent wrote in the same message as the submit call
    observation: str | None = None  # what the environment answered the submit call


@dataclass
class TrajectoryView:
    id: str
    task_id: str
    family: str | None
    status: str
    reward: float | None
    breakdown: list[RewardPart]
    steps: list[StepView]
    final: FinalView
    diff: str | None
    evidence: str | None
    appdev: AppEvidenceView | None  # the AppDev verifier's per-item verdicts, when the evidence is one
    failure: str | None
    errors: list[str]
    perturbation: str | None
    calls: list[dict[str, Any]]  # per LLM call: policy_version, tokens [(id, logprob, mask)]


def _pretty(value: Any) -> str:
    return json.dumps(value, indent=2, sort_keys=True, ensure_ascii=False, default=str)


def _find_diff(*sources: Any) -> str | None:
    """A unified diff the environment recorded (key `diff` or `patch`), if any."""
    for source in sources:
        if isinstance(source, dict):
            for key in ("diff", "patch"):
                if isinstance(source.get(key), str) and source[key].strip():
                    return source[key]
    return None


ENV_DONE_REASON = "environment done"
"""`Trajectory.end_reason` of an episode the environment ended (forgerl.agent.loop): a tool
call of its last turn finished it."""


def _name_words(name: str) -> list[str]:
    """'submit_answer' / 'submitAnswer' / 'Submit-Answer' -> ['submit', 'answer']."""
    return [w for w in re.split(r"[^a-z0-9]+", re.sub(r"(?<=[a-z0-9])(?=[A-Z])", "_", name).lower()) if w]


def _submit_call(msg: Message, end_reason: Any) -> ToolCall | None:
    """The call of the episode's last assistant turn that submitted the work: one named submit-something,
    else — when the environment ended the episode on this turn — its last call (perturbed episodes
    rename tools, so the name alone cannot be relied on)."""
    named = [c for c in msg.tool_calls if "submit" in _name_words(c.name)]
    if named:
        return named[-1]
    if end_reason == ENV_DONE_REASON and msg.tool_calls:
        return msg.tool_calls[-1]
    return None


def _submitted_text(arguments: dict[str, Any]) -> str:
    """One argument shows as its value (a string unquoted); several as pretty JSON."""
    if not arguments:
        return "(submitted with no arguments: the work itself is what was submitted)"
    if len(arguments) == 1:
        (value,) = arguments.values()
        return value if isinstance(value, str) else _pretty(value)
    return _pretty(arguments)


def final_view(traj: Trajectory, observations: dict[str, str]) -> FinalView:
    """The submitted answer if the last assistant turn submitted, else its text reply, else the
    last text the agent wrote (labelled as not being a reply)."""
    said = [(i, m) for i, m in enumerate(traj.messages) if m.role == "assistant"]
    if not said:
        return FinalView("none", "Final reply", None)
    _, last = said[-1]
    if not last.tool_calls:
        return FinalView("reply", "Final reply", last.content if last.content.strip() else "(the final reply was empty)")
    call = _submit_call(last, traj.end_reason)
    if call is not None:
        return FinalView("submitted", "Submitted answer", _submitted_text(call.arguments), tool=call.name,
                         note=last.content or None, observation=observations.get(call.id))
    index, wrote = next(((i, m) for i, m in reversed(said) if m.content.strip()), (None, None))
    if wrote is None:
        return FinalView("none", "Final reply", None)
    return FinalView("last_text", f"Last text (no final reply: the episode ended mid-work) · message {index}",
                     wrote.content)


def trajectory_view(traj: Trajectory) -> TrajectoryView:
    observations = {m.tool_call_id: m.content for m in traj.messages if m.role == "tool" and m.tool_call_id}
    steps: list[StepView] = []
    for index, msg in enumerate(traj.messages):
        if msg.role == "tool" and msg.tool_call_id in observations and any(
                tc.id == msg.tool_call_id for s in steps for tc in s.tool_calls):
            continue  # shown under the call that produced it
        calls = [ToolCallView(tc.id, tc.name, _pretty(tc.arguments), observations.get(tc.id)) for tc in msg.tool_calls]
        steps.append(StepView(index, msg.role, msg.content, msg.reasoning, calls))
    evidence = traj.metadata.get("reward_evidence")
    calls = [{"policy_version": c.policy_version, "finish_reason": c.finish_reason,
              "tokens": list(zip(c.completion_ids, c.completion_logprobs, c.loss_mask, strict=False))}
             for c in traj.calls]
    return TrajectoryView(
        id=traj.id, task_id=traj.task_id, family=traj.family, status=traj.status.value,
        reward=traj.reward, breakdown=reward_parts(traj.reward_breakdown), steps=steps, final=final_view(traj, observations),
        diff=_find_diff(evidence, traj.metadata), evidence=None if evidence is None else _pretty(evidence),
        appdev=appdev_view(evidence),
        failure=None if traj.failure is None else f"{traj.failure.boundary.value}: {traj.failure.message}",
        errors=[f"{e.boundary.value}: {e.message}" for e in traj.errors],
        perturbation=None if traj.perturbations is None else _pretty(traj.perturbations), calls=calls)


@dataclass(frozen=True)
class Segments:
    """What the reward model's encoder reads, one short text per part an expert judges: the
    verifier's verdict with the final reply, and each tool call (name and arguments). Short parts
    embed sharply; one long text would blur a single destructive call into the rest."""

    reply: str
    calls: tuple[str, ...]
    process: tuple[float, ...] = ()  # forgerl.review.features.process_features; () = unknown (zeros)


def trajectory_segments(traj: Trajectory) -> Segments:
    final = next((m.content for m in reversed(traj.messages) if m.role == "assistant" and not m.tool_calls), "")
    reward = verifier_reward(traj)  # the verifier's verdict, also after a reward model was blended in
    verdict = "unscored" if reward is None else ("passed" if reward >= 0.5 else "failed")
    calls = tuple(f"{tc.name}: {json.dumps(tc.arguments, ensure_ascii=False)[:400]}"
                  for m in traj.messages for tc in m.tool_calls)
    return Segments(f"verifier {verdict}. reply: {final[:1000]}", calls, process_features(traj))
