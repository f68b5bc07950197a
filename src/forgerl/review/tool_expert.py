"""A scripted expert for real `tool-reasoning` rollouts of the default policy.

Why this preference: at temperature 1 the shipped default policy is sharp — within a group of
rollouts on one task the plan, the parallel lookup round and the thinking are the same token for
token (measured: 64 of 64 rollouts made their lookups in one parallel round; thinking differs only
between tasks). What does vary inside a group is the arithmetic: on "6 kiwis and 5 mangos" it
writes `6*5+3*1`, `6*5+5*1`, `6*5+2*1`… Some of those numbers were never in the question or in any
tool result — the agent invented them. An expert cares about that beyond the answer: a wrong
number copied from the question is a slip, an invented one is a hallucination, and the verifier
scores both 0 (and 83% of rollouts at difficulty 2 fail, so it cannot tell most of them apart).
Measured on 64 rollouts (16 tasks × 4): 29 passed an invented number to a tool, 15 of 16 groups
were mixed; on the test fixture (tests/review/data: 384 rollouts of 96 tasks from the default
policy and its first five verifier-only RL updates) 45% are grounded.

Version 2 of the preference (issue 8): version 1 ("no invented number") was met by passing no
number at all. A run with its reward model as reward collapsed into unparsable tool markup — no
parsed call, so nothing invented — which the model scored 0.88-0.95 while the verifier reward fell
to 0. An expert never prefers an episode that did not do the task, so the rule now starts there.

The preference (documented; what `forgerl rm` must recover):
  worked   = the episode is well formed (every output parsed, none cut off, the agent ended it:
             forgerl.review.features.well_formed), it made at least one parsed tool call besides the
             final answer (every task of this family needs lookups) and it submitted an answer
  grounded = worked, and every number the agent passes to a tool, except its final answer,
             appears in the user's question or in an earlier tool result (features.unseen_numbers)
  Between two trajectories of one task the expert prefers, in this order, the one that worked,
  then the grounded one, then the one the verifier passed; if all three agree it gives no
  preference. So broken markup, a run out of budget or a guessed answer without tools is below
  every episode that worked, whatever it did or did not pass to tools.
Rubric scores: correctness = 5 if the verifier passed else 1; process = 5 if grounded, 2 if it
only worked, 1 otherwise; communication = 3 if it worked else 1 (unparsable markup is not a
message anyone can read); each +1 with probability 0.2, clipped.
"""

from __future__ import annotations

import itertools
import random
from collections.abc import Sequence

from forgerl.review.features import (
    FINAL_TOOLS,
    submitted,
    unseen_numbers,
    verifier_reward,
    well_formed,
)
from forgerl.review.labels import record_preference, record_rubric
from forgerl.review.rubric import DEFAULT_RUBRIC, Rubric
from forgerl.store import TrajectoryStore
from forgerl.types import Trajectory, TrajectoryStatus

TOOL_EXPERT = "scripted-grounding-expert"
REASON = "scripted v2: did the task through parsed tool calls, then no invented numbers, then the verified answer"


def worked(traj: Trajectory) -> bool:
    """Well formed, used a tool before answering, and submitted an answer."""
    return (well_formed(traj) and submitted(traj)
            and any(c.name not in FINAL_TOOLS for m in traj.messages if m.role == "assistant" for c in m.tool_calls))


def grounded(traj: Trajectory) -> bool:
    """Worked, and no number passed to a tool (other than the final answer) was invented."""
    return worked(traj) and not unseen_numbers(traj)[0]


def passed(traj: Trajectory) -> bool:
    reward = verifier_reward(traj)
    return reward is not None and reward >= 0.5


def preference(a: Trajectory, b: Trajectory) -> str | None:
    """The expert's choice between two trajectories of one task (None: no preference)."""
    key_a, key_b = (worked(a), grounded(a), passed(a)), (worked(b), grounded(b), passed(b))
    if key_a == key_b:
        return None
    return a.id if key_a > key_b else b.id


def rubric_scores(traj: Trajectory, rng: random.Random, rubric: Rubric = DEFAULT_RUBRIC) -> dict[str, int]:
    ok = worked(traj)
    base = {"correctness": 5 if passed(traj) else 1, "process": 5 if grounded(traj) else (2 if ok else 1),
            "communication": 3 if ok else 1}
    return {i.name: min(rubric.scale_max, max(rubric.scale_min, base.get(i.name, 3) + (rng.random() < 0.2)))
            for i in rubric.items}


def labellable(traj: Trajectory) -> bool:
    """Scored and not an infrastructure failure. Episodes without a single parsed tool call are
    judged too (version 1 skipped them, so its reward model never saw the collapse it then
    rewarded): they are the bottom of the preference."""
    return traj.status != TrajectoryStatus.FAILED and verifier_reward(traj) is not None


def label_with_tool_expert(store: TrajectoryStore, trajectories: Sequence[Trajectory], *, seed: int = 0,
                           rubric: Rubric = DEFAULT_RUBRIC, expert: str = TOOL_EXPERT) -> tuple[int, int]:
    """Rubric-score every labellable trajectory and state a preference on every pair of the same
    task where the expert has one. Returns (rubric labels, preference labels) written."""

    rng = random.Random(seed)
    by_task: dict[str, list[Trajectory]] = {}
    n_rubric = n_pref = 0
    for traj in trajectories:
        if not labellable(traj):
            continue
        record_rubric(store, traj.id, expert, rubric, rubric_scores(traj, rng, rubric))
        n_rubric += 1
        by_task.setdefault(traj.task_id, []).append(traj)
    for group in by_task.values():
        for a, b in itertools.combinations(group, 2):
            winner = preference(a, b)
            if winner is not None:
                record_preference(store, a.id, b.id, expert, winner, REASON, rubric.version)
                n_pref += 1
    return n_rubric, n_pref


def grounded_fraction(trajectories: Sequence[Trajectory]) -> float:
    """The preference metric: the fraction of labellable trajectories that are grounded (so an
    episode that did not do the task counts against it)."""
    judged = [t for t in trajectories if labellable(t)]
    return sum(grounded(t) for t in judged) / len(judged) if judged else float("nan")


def worked_fraction(trajectories: Sequence[Trajectory]) -> float:
    """The fraction of labellable trajectories that did the task through parsed tool calls."""
    judged = [t for t in trajectories if labellable(t)]
    return sum(worked(t) for t in judged) / len(judged) if judged else float("nan")
