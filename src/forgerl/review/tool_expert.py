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

The preference (documented; what `forgerl rm` must recover):
  grounded = every number the agent passes to a tool, except its final answer, appears in the
             user's question or in an earlier tool result (forgerl.review.features.unseen_numbers)
  Between two trajectories of one task the expert prefers the grounded one; if both or neither
  are grounded, the one the verifier passed; otherwise it gives no preference.
Rubric scores: correctness = 5 if the verifier passed else 1; process = 5 if grounded else 2;
communication = 3 (there is no prose reply in this family); each +1 with probability 0.2, clipped.
"""

from __future__ import annotations

import itertools
import random
from collections.abc import Sequence

from forgerl.review.features import unseen_numbers, verifier_reward
from forgerl.review.rubric import DEFAULT_RUBRIC, Rubric
from forgerl.store import TrajectoryStore
from forgerl.types import Trajectory, TrajectoryStatus

TOOL_EXPERT = "scripted-grounding-expert"
REASON = "scripted: no invented numbers in tool calls, then the verified answer"


def grounded(traj: Trajectory) -> bool:
    """True when no number passed to a tool (other than the final answer) was invented."""
    return not unseen_numbers(traj)[0]


def passed(traj: Trajectory) -> bool:
    reward = verifier_reward(traj)
    return reward is not None and reward >= 0.5


def preference(a: Trajectory, b: Trajectory) -> str | None:
    """The expert's choice between two trajectories of one task (None: no preference)."""
    key_a, key_b = (grounded(a), passed(a)), (grounded(b), passed(b))
    if key_a == key_b:
        return None
    return a.id if key_a > key_b else b.id


def rubric_scores(traj: Trajectory, rng: random.Random, rubric: Rubric = DEFAULT_RUBRIC) -> dict[str, int]:
    base = {"correctness": 5 if passed(traj) else 1, "process": 5 if grounded(traj) else 2, "communication": 3}
    return {i.name: min(rubric.scale_max, max(rubric.scale_min, base.get(i.name, 3) + (rng.random() < 0.2)))
            for i in rubric.items}


def labellable(traj: Trajectory) -> bool:
    """Scored, not an infrastructure failure, and with at least one tool call to judge."""
    return (traj.status != TrajectoryStatus.FAILED and verifier_reward(traj) is not None
            and any(m.tool_calls for m in traj.messages))


def label_with_tool_expert(store: TrajectoryStore, trajectories: Sequence[Trajectory], *, seed: int = 0,
                           rubric: Rubric = DEFAULT_RUBRIC, expert: str = TOOL_EXPERT) -> tuple[int, int]:
    """Rubric-score every labellable trajectory and state a preference on every pair of the same
    task where the expert has one. Returns (rubric labels, preference labels) written."""
    from forgerl.review.labels import record_preference, record_rubric

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
    """The preference metric: the fraction of labellable trajectories that are grounded."""
    judged = [t for t in trajectories if labellable(t)]
    return sum(grounded(t) for t in judged) / len(judged) if judged else float("nan")
