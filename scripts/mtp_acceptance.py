"""Speculative acceptance of a policy's MTP heads, with the heads swapped at will (issue 23: does
co-training keep the drafts aligned with the moving policy?).

A training run logs acceptance per step (`mtp/accept_depth{k}`), but two runs sample different
tasks and tokens, so their curves mix the heads' quality with the workload's. This script holds the
workload fixed: the same tool-reasoning conversations (cut at their assistant turns, seeds of the
engine bench), sampled at temperature 1 as the main job's rollouts are, with the same per-request
seeds, for any (policy, heads) pair — e.g. the policy after 15 RL steps with its co-trained heads vs
the same policy with the heads it started with.

    python scripts/mtp_acceptance.py runs/mtp-s0:step_15 \
        --heads co=runs/mtp-s0:step_15 --heads start=default [--sessions 16 --turns 4 --tokens 48]

Per pair: drafts proposed and accepted at each depth, acceptance (accepted / proposed at that depth)
and tokens per verify forward, with the adaptive draft length off (every round drafts every depth),
so the figures describe the heads, not the engine's choice of how far to draft.
"""

from __future__ import annotations

import argparse
import asyncio
import json
from pathlib import Path

import torch

from forgerl.bench.engine import conversation_workload
from forgerl.engine import speculative
from forgerl.engine.base import SamplingParams
from forgerl.engine.llm import LLMEngine
from forgerl.model.loading import load_policy, resolve_model_dir
from forgerl.model.mtp import MTP_FILENAME, get_mtp


def heads_state(reference: str) -> dict[str, torch.Tensor]:
    """The MTP weights stored with a policy (`default`, a directory or a run reference)."""
    from safetensors.torch import load_file

    if reference == "default":
        from forgerl.model.loading import default_policy_dir

        directory = default_policy_dir()
    else:
        directory = Path(resolve_model_dir(reference))
    return load_file(str(directory / MTP_FILENAME))


def acceptance(policy: str, heads: str, sessions: int, turns: int, tokens: int, seed: int) -> dict[str, object]:
    model, tokenizer = load_policy(policy)
    mtp = get_mtp(model)
    if mtp is None:
        raise SystemExit(f"{policy} has no MTP heads")
    mtp.load_state_dict(heads_state(heads))
    workload = conversation_workload(tokenizer, sessions, turns, tokens, seed=seed)
    engine = LLMEngine(model, tokenizer, max_context=4096, num_slots=max(8, sessions), speculative=len(mtp.depths))

    async def session(s: int) -> None:
        for t, prompt in enumerate(workload.prompts[s]):
            params = SamplingParams(temperature=1.0, max_tokens=tokens, seed=seed * 100_000 + s * 100 + t)
            await engine.generate(prompt, params, session_id=f"s{s}")

    async def main() -> None:
        await asyncio.gather(*(session(s) for s in range(sessions)))

    asyncio.run(main())
    spec = engine.stats["spec"]
    return {"policy": policy, "heads": heads,
            "acceptance": [round(a / max(p, 1), 4) for a, p in zip(spec["accepted"], spec["proposed"])],
            "proposed": spec["proposed"], "accepted": spec["accepted"],
            "tokens_per_forward": round(spec["tokens"] / max(spec["row_forwards"], 1), 3)}


def full_depth(self: speculative.DraftDepth) -> int:
    """Every round drafts every depth (the engine's adaptive draft length, off)."""
    return len(self.kept)


def main() -> None:
    speculative.DraftDepth.limit = full_depth  # measure the heads, not the engine's choice of depth
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("policy", help="policy with MTP heads: default, a directory or RUN[:step_N]")
    parser.add_argument("--heads", action="append", required=True,
                        help="NAME=REFERENCE: whose mtp.safetensors to draft with (repeatable)")
    parser.add_argument("--sessions", type=int, default=16)
    parser.add_argument("--turns", type=int, default=4)
    parser.add_argument("--tokens", type=int, default=48)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    for item in args.heads:
        name, _, reference = item.partition("=")
        result = acceptance(args.policy, reference or name, args.sessions, args.turns, args.tokens, args.seed)
        print(json.dumps({"name": name, **result}))


if __name__ == "__main__":
    main()
