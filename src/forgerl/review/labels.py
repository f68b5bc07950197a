"""Expert labels on top of the store: typed payloads, re-labelling, agreement and the label queue.

The store keeps labels append-only; here a label *kind* gets its payload shape and the rule for
what "re-labelling" means: an expert's new rubric score for a trajectory supersedes their previous
one, a new preference on the same pair supersedes theirs on that pair, comments accumulate. Only an
expert's own labels are ever superseded (the store refuses anything else).
"""

from __future__ import annotations

import itertools
import math
import statistics
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from pydantic import BaseModel, Field

from forgerl.review.rubric import Rubric
from forgerl.store import LabelRecord, TrajectoryStore

MAX_TEXT = 4000  # characters of a reason or comment


class RubricPayload(BaseModel):
    scores: dict[str, int]
    note: str = Field(default="", max_length=MAX_TEXT)


class PreferencePayload(BaseModel):
    preferred: str
    """The id of the preferred trajectory: the label's trajectory_id or its other_trajectory_id."""
    reason: str = Field(min_length=1, max_length=MAX_TEXT)


class CommentPayload(BaseModel):
    message_index: int = Field(ge=0)
    """Which message of the trajectory (its position in `messages`) the comment is about."""
    text: str = Field(min_length=1, max_length=MAX_TEXT)


def record_rubric(store: TrajectoryStore, trajectory_id: str, expert: str, rubric: Rubric,
                  scores: Mapping[str, int], note: str = "") -> int:
    payload = RubricPayload(scores=rubric.validate_scores(dict(scores)), note=note)
    previous = store.labels(trajectory_id, expert=expert, kind="rubric", current_only=True)
    previous = [lab for lab in previous if lab.trajectory_id == trajectory_id]
    return store.add_label(trajectory_id, expert, payload.model_dump(), rubric_version=rubric.version,
                           kind="rubric", supersedes=previous[-1].id if previous else None)


def record_preference(store: TrajectoryStore, a: str, b: str, expert: str, preferred: str, reason: str,
                      rubric_version: str) -> int:
    if preferred not in (a, b):
        raise ValueError(f"the preferred trajectory must be one of the pair ({a!r}, {b!r}), got {preferred!r}")
    payload = PreferencePayload(preferred=preferred, reason=reason)
    previous = [lab for lab in store.labels(a, expert=expert, kind="preference", current_only=True)
                if {lab.trajectory_id, lab.other_trajectory_id} == {a, b}]
    return store.add_label(a, expert, payload.model_dump(), rubric_version=rubric_version, kind="preference",
                           other_trajectory_id=b, supersedes=previous[-1].id if previous else None)


def record_comment(store: TrajectoryStore, trajectory_id: str, expert: str, message_index: int, text: str,
                   rubric_version: str) -> int:
    n_messages = len(store.get_trajectory(trajectory_id).messages)
    if not 0 <= message_index < n_messages:
        raise ValueError(f"message_index must be between 0 and {n_messages - 1} for {trajectory_id!r}, "
                         f"got {message_index}")
    payload = CommentPayload(message_index=message_index, text=text)
    return store.add_label(trajectory_id, expert, payload.model_dump(), rubric_version=rubric_version,
                           kind="comment")


def rubric_mean(label: LabelRecord, rubric: Rubric) -> float:
    """A rubric label's mean item score, normalised to [0, 1]."""
    scores = label.payload["scores"]
    return statistics.fmean(rubric.normalise(scores[i.name]) for i in rubric.items)


# -- agreement ---------------------------------------------------------------------------------


@dataclass
class ItemAgreement:
    item: str
    n_pairs: int = 0  # (trajectory, expert pair) comparisons
    exact: float = math.nan  # fraction of identical scores
    within_one: float = math.nan  # fraction at most one scale point apart
    mean_abs_diff: float = math.nan


@dataclass
class PairAgreement:
    experts: tuple[str, str]
    n_scores: int = 0  # item scores both gave on the same trajectory
    score_exact: float = math.nan
    n_preferences: int = 0  # trajectory pairs both compared
    preference_agree: float = math.nan


@dataclass
class Agreement:
    rubric_version: str
    items: list[ItemAgreement] = field(default_factory=list)
    pairs: list[PairAgreement] = field(default_factory=list)


def _mean(values: Sequence[float]) -> float:
    return statistics.fmean(values) if values else math.nan


def agreement(store: TrajectoryStore, rubric: Rubric) -> Agreement:
    """Inter-expert agreement on current labels: per rubric item (over every trajectory two experts
    both scored on this rubric version) and per expert pair (their rubric scores and preferences)."""
    by_traj: dict[str, dict[str, dict[str, int]]] = defaultdict(dict)
    for lab in store.labels(kind="rubric", current_only=True):
        if lab.rubric_version == rubric.version:
            by_traj[lab.trajectory_id][lab.expert] = lab.payload["scores"]
    diffs: dict[str, list[int]] = defaultdict(list)
    pair_diffs: dict[tuple[str, str], list[int]] = defaultdict(list)
    for experts in by_traj.values():
        for e1, e2 in itertools.combinations(sorted(experts), 2):
            for item in rubric.items:
                d = abs(experts[e1][item.name] - experts[e2][item.name])
                diffs[item.name].append(d)
                pair_diffs[(e1, e2)].append(d)
    prefs: dict[frozenset[str], dict[str, str]] = defaultdict(dict)
    for lab in store.labels(kind="preference", current_only=True):
        prefs[frozenset((lab.trajectory_id, lab.other_trajectory_id))][lab.expert] = lab.payload["preferred"]
    pair_prefs: dict[tuple[str, str], list[bool]] = defaultdict(list)
    for winners in prefs.values():
        for e1, e2 in itertools.combinations(sorted(winners), 2):
            pair_prefs[(e1, e2)].append(winners[e1] == winners[e2])
    result = Agreement(rubric.version)
    for item in rubric.items:
        d = diffs[item.name]
        result.items.append(ItemAgreement(item.name, len(d), _mean([x == 0 for x in d]), _mean([x <= 1 for x in d]),
                                          _mean(d)))
    for pair in sorted(set(pair_diffs) | set(pair_prefs)):
        d, p = pair_diffs[pair], pair_prefs[pair]
        result.pairs.append(PairAgreement(pair, len(d), _mean([x == 0 for x in d]), len(p), _mean(p)))
    return result


# -- the label queue ---------------------------------------------------------------------------


@dataclass
class QueueEntry:
    trajectory_id: str
    priority: float
    reasons: list[str]


def label_queue(store: TrajectoryStore, rubric: Rubric, *, expert: str | None = None,
                rm_scores: Mapping[str, float] | None = None, limit: int = 50) -> list[QueueEntry]:
    """Trajectories most worth labelling next, highest priority first.

    priority = |verifier reward - reward model score| (where the RM scored it: the RM is least
    trustworthy there) + the std of the verifier reward within the trajectory's group (a group whose
    rollouts disagree carries the most advantage signal) + the spread of experts' rubric means on it
    (experts disagree: another opinion settles it) + 0.25 if no expert has scored it yet. Trajectories
    `expert` has already scored are left out (they are in nobody's queue twice).
    """
    rows = store.query_rows()
    group_rewards: dict[str, list[float]] = defaultdict(list)
    for row in rows:
        if row["reward"] is not None:
            group_rewards[row["group_id"] or row["task_id"]].append(row["reward"])
    scored: dict[str, list[float]] = defaultdict(list)
    mine: set[str] = set()
    for lab in store.labels(kind="rubric", current_only=True):
        if lab.rubric_version == rubric.version:
            scored[lab.trajectory_id].append(rubric_mean(lab, rubric))
        if lab.expert == expert:
            mine.add(lab.trajectory_id)
    entries = []
    for row in rows:
        tid = row["id"]
        if tid in mine:
            continue
        priority, reasons = 0.0, []
        rm = (rm_scores or {}).get(tid)
        if rm is not None and row["reward"] is not None:
            gap = abs(row["reward"] - rm)
            priority += gap
            if gap > 0.3:
                reasons.append(f"verifier {row['reward']:.2f} vs reward model {rm:.2f}")
        group = group_rewards.get(row["group_id"] or row["task_id"], [])
        if len(group) > 1:
            spread = statistics.pstdev(group)
            priority += spread
            if spread > 0.2:
                reasons.append(f"high-variance group (reward std {spread:.2f})")
        if len(scored[tid]) > 1:
            spread = max(scored[tid]) - min(scored[tid])
            priority += spread
            if spread > 0.25:
                reasons.append(f"experts disagree (rubric means {min(scored[tid]):.2f}-{max(scored[tid]):.2f})")
        if not scored[tid]:
            priority += 0.25
            reasons.append("not scored by any expert yet")
        entries.append(QueueEntry(tid, priority, reasons))
    entries.sort(key=lambda e: (-e.priority, e.trajectory_id))
    return entries[:limit]
