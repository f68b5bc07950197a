"""Does the scripted solver's path fit the context on `tool-reasoning-long`? (the calibration of
envs/long_context.py's TRAIL_LINES)

    python scripts/long_context_fit.py                       # difficulties 1-5, seeds 500-539
    python scripts/long_context_fit.py --difficulty 3 --lines 3,4,5,6 --seeds 0-19

For each difficulty (and trail length), plays the solver's own turns (its thinking, as the policy
writes it) through the agent loop with a scripted engine, three ways: everything kept; the harness's
`keep_last_turns(turns=1)` past 1,024 prompt tokens; the solver itself calling
`context_keep_last_turns` between its first and last turn. An episode counts as finished only when
the verifier passes it and no reply was cut by the token limit (a cut reply is not executed, but a
scripted engine would carry on regardless).
"""

from __future__ import annotations

import argparse
import asyncio

from forgerl.agent.context import ContextActions, FixedContext
from forgerl.agent.loop import run_episode
from forgerl.chat import get_format
from forgerl.engine.base import SamplingParams
from forgerl.engine.scripted import ScriptedEngine
from forgerl.envs.base import make_env
from forgerl.envs.long_context import FAMILY, TRAIL_LINES, generate_task
from forgerl.model.loading import load_default_tokenizer
from forgerl.train.sft_context import managed_replies, played_cleanly


def count(difficulty: int, lines: int, seeds: range, context: int, turn: int, tokenizer: object) -> dict[str, int]:
    fmt = get_format("minimax_m2")
    counts = {"kept": 0, "harness": 0, "policy": 0}
    for seed in seeds:
        task = generate_task(seed, difficulty)
        task = task.model_copy(update={"data": {**task.data, "trail_lines": lines}})
        gold = make_env(FAMILY).gold_messages(task)
        plain = [fmt.render_assistant_body(m) for m in gold if m.role == "assistant"]
        ways = {"kept": (plain, None), "harness": (plain, FixedContext("keep_last_turns", 1024, turns=1)),
                "policy": (managed_replies(fmt, gold, "keep_last_turns"), ContextActions(["keep_last_turns"]))}
        for way, (replies, manager) in ways.items():
            traj = asyncio.run(run_episode(ScriptedEngine(tokenizer, replies, max_context=context), fmt, make_env(FAMILY),
                                           task, sampling=SamplingParams(max_tokens=turn), max_turns=len(replies),
                                           max_total_tokens=context, context_manager=manager))
            counts[way] += played_cleanly(traj)
    return counts


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--difficulty", default="1,2,3,4,5")
    parser.add_argument("--lines", default=None, help="trail lines to try (default: the family's TRAIL_LINES)")
    parser.add_argument("--seeds", default="500-539", help="FIRST-LAST, inclusive")
    parser.add_argument("--context", type=int, default=2048, help="max_context (the main job's)")
    parser.add_argument("--turn", type=int, default=320, help="max_tokens per turn")
    args = parser.parse_args()
    first, last = (int(x) for x in args.seeds.split("-"))
    seeds = range(first, last + 1)
    tokenizer = load_default_tokenizer()
    print(f"| difficulty | trail lines | finished of {len(seeds)}: everything kept | harness keep_last_turns | "
          "policy calls context_keep_last_turns |\n|---|---|---|---|---|")
    for difficulty in (int(d) for d in args.difficulty.split(",")):
        for lines in ([int(x) for x in args.lines.split(",")] if args.lines else [TRAIL_LINES[difficulty]]):
            c = count(difficulty, lines, seeds, args.context, args.turn, tokenizer)
            print(f"| {difficulty} | {lines} | {c['kept']} | {c['harness']} | {c['policy']} |", flush=True)


if __name__ == "__main__":
    main()
