"""`bfcl`: the Berkeley Function-Calling Leaderboard (package `bfcl-eval`) as a forgerl task family.

Difficulty is the category group (data.CATEGORIES):

    1  simple_python, live_simple               one call to the one offered function
    2  multiple, live_multiple                  one call, choosing among functions
    3  parallel(_multiple), live_parallel(_m.)  several calls in one reply
    4  multi_turn_base                          stateful simulated APIs (files, trading, travel, ...)
    5  multi_turn_miss_param, _long_context     the same with missing details or long contexts

Single-turn tasks are scored by the suite's AST checker, multi-turn tasks (one user turn of a
conversation, earlier turns replayed with the ground truth) by its state and response checkers
(env.py). Splits: about 20% of every category's items are eval items, chosen by a hash of the item
id (data.split_of), so train and eval never share an item. Seeds below HELD_OUT_SEED_BASE (the
trainer's training range) draw train items, seeds from it on draw eval items; `make_tasks` lists a
split in a fixed order for `forgerl eval`.

Whole-conversation episodes (the model's own earlier turns as history, BFCL's leaderboard protocol)
need the agent loop to hand the environment's next user message to the model after a final answer;
that hook is not in the loop yet, so tasks are per turn.

Install: `pip install --no-deps bfcl-eval==2026.3.23` (a plain install pulls a CUDA torch and every
provider SDK) plus `pip install 'forgerl[suites]'`. Nothing is imported from the package until a
task is made.
"""

from __future__ import annotations

import hashlib
import random
from typing import Any

from forgerl.envs.base import Family, Task, register_family
from forgerl.envs.bfcl import data
from forgerl.envs.bfcl.env import FAMILY, BfclEnv
from forgerl.errors import ConfigError

DIFFICULTIES = (1, 2, 3, 4, 5)
HELD_OUT_SEED_BASE = 10_000_000  # = train/rollouts.py's: seeds from here on are held-out (eval) seeds

__all__ = ["DIFFICULTIES", "FAMILY", "BfclEnv", "generate_task", "make_task", "make_tasks", "sample_task"]


def make_task(category: str, item_id: str, turn: int | None = None) -> Task:
    """The task for one item (and, for multi-turn categories, one answerable turn; default: a turn
    chosen by a hash of the item id, so one task per item covers every turn position)."""
    item = data.item_by_id(category, item_id)
    task_data: dict[str, Any] = {"category": category, "item_id": item_id, "split": data.split_of(item_id)}
    if category in data.MULTI_TURN:
        turns = data.answerable_turns(item)
        if turn is None:
            turn = turns[int(hashlib.sha256(item_id.encode()).hexdigest(), 16) % len(turns)]
        if turn not in turns:
            raise ConfigError(f"turn {turn} of {item_id} has no ground truth; answerable turns: {turns}")
        task_data["turn"] = turn
        prompt, answer, suffix = item["question"][turn][-1]["content"], item["ground_truth"][turn], f"-t{turn}"
    else:
        prompt, answer, suffix = item["question"][0][-1]["content"], item["ground_truth"], ""
    return Task(id=f"{FAMILY}-{item_id}{suffix}", family=FAMILY, prompt=prompt, data=task_data, answer=answer,
                verifier={"type": "bfcl", "category": category}, difficulty=data.CATEGORIES[category])


def make_tasks(split: str = "eval", categories: list[str] | None = None, *, all_turns: bool = False) -> list[Task]:
    """Every task of `split` in the given categories (default: all supported), in file order; one
    task per item (all answerable turns with `all_turns`)."""
    tasks = []
    for category in categories or list(data.CATEGORIES):
        for item in data.items_in(category, split):
            if category in data.MULTI_TURN and all_turns:
                tasks.extend(make_task(category, item["id"], t) for t in data.answerable_turns(item))
            else:
                tasks.append(make_task(category, item["id"]))
    return tasks


def generate_task(seed: int, difficulty: int) -> Task:
    """A task of the difficulty's categories: train items for seeds below HELD_OUT_SEED_BASE, eval
    items from it on; the category, the item and the turn all follow from the seed."""
    if difficulty not in DIFFICULTIES:
        raise ConfigError(f"bfcl difficulty must be one of {list(DIFFICULTIES)}, got {difficulty}")
    split = "eval" if seed >= HELD_OUT_SEED_BASE else "train"
    rng = random.Random(f"{FAMILY}:{difficulty}:{seed}")
    categories = [c for c, level in data.CATEGORIES.items() if level == difficulty]
    category = rng.choice(categories)
    item = rng.choice(data.items_in(category, split))
    turn = rng.choice(data.answerable_turns(item)) if category in data.MULTI_TURN else None
    return make_task(category, item["id"], turn)


def sample_task(seed: int) -> Task:
    return generate_task(seed, DIFFICULTIES[random.Random(f"{FAMILY}:level:{seed}").randrange(len(DIFFICULTIES))])


register_family(Family(
    name=FAMILY,
    make_env=BfclEnv,
    sample_task=sample_task,
    description="Berkeley Function-Calling Leaderboard: 1-3 single-turn (AST checker), 4-5 stateful "
                "multi-turn APIs (state/response checkers); 20% of items held out",
    difficulties=DIFFICULTIES,
    generate=generate_task,
    noop=lambda task: [],  # the answer is the calls themselves: making none is the no-op
))
