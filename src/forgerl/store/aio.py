"""The store from asyncio code: each call runs in a worker thread (`asyncio.to_thread`).

A store write is one short transaction ending in an fsync (milliseconds); awaiting it here keeps
the event loop serving other rollouts meanwhile. Worker threads get their own SQLite connections
(see `TrajectoryStore`), so concurrent awaits are safe.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from forgerl.store.sqlite import TrajectoryStore
from forgerl.types import Trajectory


class AsyncTrajectoryStore:
    """Awaitable versions of the store's hot-path calls; `.sync` is the wrapped store."""

    def __init__(self, store: TrajectoryStore) -> None:
        self.sync = store

    async def add_trajectory(self, trajectory: Trajectory, run_id: str, *, step: int | None = None) -> None:
        await asyncio.to_thread(self.sync.add_trajectory, trajectory, run_id, step=step)

    async def add_trajectories(self, trajectories: Sequence[Trajectory], run_id: str, *,
                               step: int | None = None) -> None:
        await asyncio.to_thread(self.sync.add_trajectories, list(trajectories), run_id, step=step)

    async def mark_consumed(self, ids: Iterable[str], step: int) -> None:
        await asyncio.to_thread(self.sync.mark_consumed, list(ids), step)

    async def get_trajectory(self, trajectory_id: str) -> Trajectory:
        return await asyncio.to_thread(self.sync.get_trajectory, trajectory_id)

    async def query(self, **filters: Any) -> list[Trajectory]:
        return await asyncio.to_thread(self.sync.query, **filters)

    async def query_rows(self, **filters: Any) -> list[dict[str, Any]]:
        return await asyncio.to_thread(self.sync.query_rows, **filters)

    async def log_metrics(self, run_id: str, step: int, values: Mapping[str, float]) -> None:
        await asyncio.to_thread(self.sync.log_metrics, run_id, step, dict(values))
