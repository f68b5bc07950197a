"""`forgerl bench engine`: the built-in engine vs transformers' plain `generate`, side by side.

Workload (agent-like): S concurrent sessions x T turns. Each session starts from a shared-size
system prompt + its own task, and each turn appends the N sampled tokens plus a tool result to the
context, so turn t's prompt strictly extends turn t-1's. Every method generates exactly N tokens
per turn (no early stop), so all three produce the same number of tokens and tokens/s compare:

- `hf generate, per request`: one `model.generate` call per session turn, as a simple agent loop
  does (the whole context is recomputed every turn);
- `hf generate, batched per turn`: the S sessions of a turn left-padded into one `generate` call
  (static batching: everyone waits for the slowest, the context is still recomputed);
- `forgerl engine`: S sessions as concurrent requests (continuous batching + prefix reuse).
"""

from __future__ import annotations

import asyncio
import random
import time
from dataclasses import dataclass

import torch

from forgerl.engine.base import SamplingParams

SYSTEM_TOKENS = 160
TASK_TOKENS = 24
TOOL_RESULT_TOKENS = 32


@dataclass
class Workload:
    starts: list[list[int]]  # per session: its first prompt
    tool_results: list[list[list[int]]]  # per session, per turn: ids appended after the completion
    new_tokens: int

    @property
    def sessions(self) -> int:
        return len(self.starts)

    @property
    def turns(self) -> int:
        return len(self.tool_results[0])


def make_workload(vocab: int, sessions: int, turns: int, new_tokens: int, seed: int = 0) -> Workload:
    rng = random.Random(seed)

    def ids(n: int) -> list[int]:
        return [rng.randrange(10, vocab) for _ in range(n)]

    system = ids(SYSTEM_TOKENS)
    starts = [system + ids(TASK_TOKENS) for _ in range(sessions)]
    results = [[ids(TOOL_RESULT_TOKENS) for _ in range(turns)] for _ in range(sessions)]
    return Workload(starts, results, new_tokens)


def run_hf_per_request(model, w: Workload) -> int:
    generated = 0
    for s in range(w.sessions):
        ctx = list(w.starts[s])
        for t in range(w.turns):
            ids = torch.tensor([ctx], device=model.device)
            out = model.generate(ids, attention_mask=torch.ones_like(ids), max_new_tokens=w.new_tokens,
                                 min_new_tokens=w.new_tokens, do_sample=True, top_k=0, pad_token_id=0)
            completion = out[0, len(ctx):].tolist()
            generated += len(completion)
            ctx = ctx + completion + w.tool_results[s][t]
    return generated


def run_hf_batched(model, w: Workload) -> int:
    generated = 0
    ctxs = [list(s) for s in w.starts]
    for t in range(w.turns):
        width = max(len(c) for c in ctxs)
        ids = torch.tensor([[0] * (width - len(c)) + c for c in ctxs], device=model.device)
        mask = torch.tensor([[0] * (width - len(c)) + [1] * len(c) for c in ctxs], device=model.device)
        out = model.generate(ids, attention_mask=mask, max_new_tokens=w.new_tokens, min_new_tokens=w.new_tokens,
                             do_sample=True, top_k=0, pad_token_id=0)
        for s in range(w.sessions):
            completion = out[s, width:].tolist()
            generated += len(completion)
            ctxs[s] = ctxs[s] + completion + w.tool_results[s][t]
    return generated


def run_engine(engine, w: Workload) -> int:
    params = SamplingParams(max_tokens=w.new_tokens, temperature=1.0)

    async def session(s: int) -> int:
        ctx, n = list(w.starts[s]), 0
        for t in range(w.turns):
            res = await engine.generate(ctx, params, session_id=f"bench-{s}")
            n += len(res.completion_ids)
            ctx = ctx + res.completion_ids + w.tool_results[s][t]
        return n

    async def main() -> int:
        return sum(await asyncio.gather(*(session(s) for s in range(w.sessions))))

    return asyncio.run(main())


def timed(fn, *args) -> tuple[int, float]:
    t0 = time.perf_counter()
    n = fn(*args)
    return n, time.perf_counter() - t0


def run_engine_bench(model: str = "tiny-random", sessions: int = 16, turns: int = 10, max_tokens: int = 24,
                     device: str = "auto", skip_per_request: bool = False) -> dict[str, float]:
    from rich.console import Console
    from rich.table import Table

    from forgerl.engine.llm import LLMEngine
    from forgerl.model.loading import load_policy, resolve_device

    console = Console()
    device = resolve_device(device)
    policy, tokenizer = load_policy(model, device=device)
    # the engine never stops early here: every method generates exactly max_tokens per turn
    policy.generation_config.eos_token_id = None
    vocab = policy.get_output_embeddings().weight.shape[0]
    w = make_workload(vocab, sessions, turns, max_tokens)
    max_ctx = max(len(s) for s in w.starts) + turns * (max_tokens + TOOL_RESULT_TOKENS) + 8
    engine = LLMEngine(policy, tokenizer, model_name=model, max_context=max_ctx, num_slots=sessions)
    gpu = torch.cuda.get_device_name(0) if device.startswith("cuda") else None
    console.print(f"[bold]forgerl bench engine[/]: model={model} device={gpu or device} dtype={next(policy.parameters()).dtype} "
                  f"threads={torch.get_num_threads()} sessions={sessions} turns={turns} new_tokens/turn={max_tokens}")

    rows: dict[str, tuple[int, float]] = {}
    run_engine(engine, make_workload(vocab, 2, 1, 4, seed=1))  # warm-up
    rows["forgerl engine (continuous batching + prefix reuse)"] = timed(run_engine, engine, w)
    engine.close()
    stats = engine.stats
    rows["hf generate, batched per turn"] = timed(run_hf_batched, policy, w)
    if not skip_per_request:
        rows["hf generate, per request"] = timed(run_hf_per_request, policy, w)

    ours = rows["forgerl engine (continuous batching + prefix reuse)"]
    our_tps = ours[0] / ours[1]
    table = Table(title="agent-like workload: generated tokens/s (higher is better)")
    for col in ("method", "tokens", "seconds", "tokens/s", "forgerl speed-up"):
        table.add_column(col, justify="right" if col != "method" else "left")
    ratios: dict[str, float] = {"forgerl_tokens_per_s": our_tps}
    for name, (n, secs) in rows.items():
        tps = n / secs
        ratio = our_tps / tps
        table.add_row(name, str(n), f"{secs:.2f}", f"{tps:.1f}", f"{ratio:.2f}x")
        ratios[name] = ratio
    console.print(table)
    console.print(f"prefix reuse: {stats['cached_tokens']} of {stats['prompt_tokens']} prompt tokens came from the cache "
                  f"({100 * stats['cached_tokens'] / max(1, stats['prompt_tokens']):.0f}%)")
    return ratios
