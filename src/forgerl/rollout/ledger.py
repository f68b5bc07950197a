"""Lossless restarts: what the scheduler submitted, finished and trained on, durably.

Finished rollouts go into the trajectory store (SQLite WAL, fsynced) *before* the trainer can take
them, tagged with their ticket; `Batch.ack(step)` marks them consumed there. The few facts the
store has no place for — which task specs were submitted in which order, which tickets were
dropped or re-queued — go to an append-only JSON-lines file beside it (`rollout_ledger.jsonl`),
one fsynced line per event. After a crash (`kill -9` of the trainer included) `load()` rebuilds the
queue: finished-but-untrained tickets are offered again as they are, submitted-but-unfinished ones
are generated again in their place, and the task stream resumes after the last submitted spec.
A torn last line (the process died mid-write) is ignored: that event had not been acknowledged.

Resuming from a checkpoint (`resumed_at=(step, version)`) is exact: the training of the steps after
the checkpoint was lost with the weights, so tickets consumed there are open again (their stored
trajectories were superseded by the resume: they are generated again), and finished rollouts that
were sampled by a policy version after the checkpoint's came from weights that no longer exist
(superseded, generated again). A `resume` line records this, so a later restart replays it.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from forgerl.errors import ConfigError
from forgerl.store import TrajectoryStore
from forgerl.types import Trajectory

LEDGER_FILENAME = "rollout_ledger.jsonl"
TICKET_KEY = "rollout_ticket"
_LIST_KEY = "rollout_group"  # the rollout produced a list (a group) rather than one trajectory


@dataclass
class LedgerState:
    next_index: int = 0
    open: dict[int, Any] = field(default_factory=dict)  # ticket -> spec, not consumed or dropped
    finished: dict[int, Any] = field(default_factory=dict)  # ticket -> Trajectory | list[Trajectory]


class StoreLedger:
    """The scheduler's durable record, in `store` (trajectories) and `run_dir/rollout_ledger.jsonl`."""

    def __init__(self, store: TrajectoryStore, run_id: str, run_dir: str | os.PathLike[str], *,
                 resumed_at: tuple[int, int] | None = None) -> None:
        self.store = store
        self.run_id = run_id
        self.path = Path(run_dir) / LEDGER_FILENAME
        self.resumed_at = resumed_at  # (step, policy version) of the checkpoint this life continues from
        self._ids: dict[int, list[str]] = {}  # ticket -> ids of its stored trajectories

    # -- writes (each durable when it returns) -------------------------------------------
    def record_submitted(self, index: int, spec: Any) -> None:
        try:
            self._append({"op": "submit", "i": index, "spec": spec})
        except TypeError as exc:
            raise ConfigError(f"task spec of ticket {index} is not JSON-serialisable ({exc}); the ledger must "
                              "store specs to regenerate them after a restart: use plain dicts/lists/numbers") from None

    def record_finished(self, index: int, result: Any) -> None:
        items = _as_list(result)
        for t in items:
            t.metadata[TICKET_KEY] = index
            t.metadata[_LIST_KEY] = isinstance(result, (list, tuple))
        self.store.add_trajectories(items, self.run_id)
        self._ids[index] = [t.id for t in items]

    def record_consumed(self, tickets: list[int], results: list[Any], step: int) -> None:
        """The ledger line first, then the store's mark: a crash in between leaves trajectories
        unmarked that `load` marks (it knows the step), never a ticket that is trained twice."""
        ids = [t.id for r in results for t in _as_list(r)]
        self._append({"op": "consumed", "i": list(tickets), "step": step})
        self.store.mark_consumed(ids, step)

    def record_dropped(self, tickets: list[int]) -> None:
        self._append({"op": "dropped", "i": list(tickets)})

    def record_requeued(self, tickets: list[int]) -> None:
        discard = [i for t in tickets for i in self._ids.pop(t, [])]
        self._append({"op": "requeue", "i": list(tickets), "discard": discard})

    # -- recovery ------------------------------------------------------------------------
    def load(self) -> LedgerState:
        state = LedgerState()
        dropped: set[int] = set()
        discarded: set[str] = set()
        specs: dict[int, Any] = {}
        consumed_at: dict[int, int] = {}
        events = self._events()
        if self.resumed_at is not None:  # durable before anything of this life is recorded
            resume = {"op": "resume", "i": [], "step": self.resumed_at[0]}
            self._append(resume)
            events.append(resume)
        for event in events:
            op, idx = event["op"], event["i"]
            if op == "submit":
                specs[idx] = event["spec"]
                state.next_index = max(state.next_index, idx + 1)
            elif op == "dropped":
                dropped.update(idx)
            elif op == "consumed":
                consumed_at.update({i: event["step"] for i in idx})
            elif op == "requeue":
                discarded.update(event.get("discard", []))
            elif op == "resume":  # training after that step was lost: its tickets are open again
                consumed_at = {i: step for i, step in consumed_at.items() if step <= event["step"]}
        closed = dropped | set(consumed_at)
        groups: dict[int, list[Trajectory]] = {}
        is_list: dict[int, bool] = {}
        # only untrained trajectories matter (a consumed one closes its ticket: `mark_consumed`
        # takes a whole ticket's trajectories in one transaction), so a restart reads few payloads
        for traj in self.store.iter_trajectories(run_id=self.run_id, consumed=False, order="stored"):
            idx = traj.metadata.get(TICKET_KEY)
            if idx is None or traj.id in discarded:
                continue
            groups.setdefault(int(idx), []).append(traj)
            is_list[int(idx)] = bool(traj.metadata.get(_LIST_KEY))
        for idx, items in groups.items():  # trained on, but the crash came before the store's mark
            if idx in consumed_at:
                self.store.mark_consumed([t.id for t in items], consumed_at[idx])
        if self.resumed_at is not None:  # sampled by weights the resume threw away: generated again
            lost = [idx for idx, items in groups.items() if idx not in closed and _newest_version(items) > self.resumed_at[1]]
            self.store.supersede_trajectories([t.id for idx in lost for t in groups.pop(idx)])
        for idx, spec in specs.items():
            items = groups.get(idx, [])
            if idx in closed:
                continue
            state.open[idx] = spec
            if items:  # (earlier attempts of a re-queued ticket were discarded above)
                state.finished[idx] = items if is_list[idx] else items[-1]
                self._ids[idx] = [t.id for t in items]
        return state

    # -- internals -----------------------------------------------------------------------
    def _append(self, event: dict[str, Any]) -> None:
        line = json.dumps(event, separators=(",", ":")) + "\n"
        with open(self.path, "a", encoding="utf-8") as f:
            f.write(line)
            f.flush()
            os.fsync(f.fileno())

    def _events(self) -> list[dict[str, Any]]:
        if not self.path.exists():
            return []
        events = []
        lines = self.path.read_text(encoding="utf-8").splitlines()
        for n, line in enumerate(lines):
            try:
                events.append(json.loads(line))
            except json.JSONDecodeError:
                if n == len(lines) - 1:
                    break  # torn last line: never acknowledged
                raise ConfigError(f"{self.path} line {n + 1} is corrupt (not JSON); the ledger cannot be trusted") from None
        return events


def _newest_version(items: list[Trajectory]) -> int:
    return max((c.policy_version for t in items for c in t.calls), default=-1)


def _as_list(result: Any) -> list[Trajectory]:
    items = list(result) if isinstance(result, (list, tuple)) else [result]
    for t in items:
        if not isinstance(t, Trajectory):
            raise ConfigError(f"the store ledger records Trajectory results (or lists of them), got {type(t).__name__}")
    return items
