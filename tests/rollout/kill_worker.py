"""A trainer process for the restart test: windowed scheduler + store ledger + slow rollouts.

usage: python kill_worker.py RUN_DIR TASKS   (prints "step N" after each acknowledged batch)
"""

from __future__ import annotations

import asyncio
import json
import random
import sys
from pathlib import Path

from forgerl.rollout.ledger import StoreLedger
from forgerl.rollout.scheduler import RolloutScheduler, SchedulerConfig
from forgerl.store import TrajectoryStore
from forgerl.types import LLMCall, Trajectory


def main(run_dir: Path, tasks: int) -> None:
    store = TrajectoryStore(run_dir)
    runs = store.runs()
    run_id = runs[0].id if runs else store.add_run({"test": "kill"})
    ledger = StoreLedger(store, run_id, run_dir)
    ledger_file = run_dir / "rollout_ledger.jsonl"
    lines = ledger_file.read_text().splitlines() if ledger_file.exists() else []
    step = sum(1 for line in lines if line.strip().endswith("}") and json.loads(line)["op"] == "consumed")
    state = {"version": step}

    async def produce(spec):
        await asyncio.sleep(random.uniform(0.01, 0.08))
        call = LLMCall(prompt_ids=[1], completion_ids=[2], completion_logprobs=[-0.1], loss_mask=[1],
                       policy_version=state["version"], finish_reason="stop")
        return Trajectory(task_id=f"task-{spec['i']}", calls=[call], reward=1.0, metadata={"spec": spec["i"]})

    config = SchedulerConfig(mode="windowed", batch_size=4, capacity=12, max_staleness=3)
    sched = RolloutScheduler(produce, ({"i": i} for i in range(tasks)), config,
                             current_version=lambda: state["version"], ledger=ledger)
    print(f"restored {len(sched.restored)}", flush=True)

    async def loop():
        nonlocal step
        async for batch in sched.batches():
            await asyncio.sleep(0.03)  # the training step
            step += 1
            batch.ack(step)
            state["version"] += 1
            print(f"step {step}", flush=True)

    asyncio.run(loop())
    print("done", flush=True)


if __name__ == "__main__":
    main(Path(sys.argv[1]), int(sys.argv[2]))
