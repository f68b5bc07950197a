"""`forgerl bench prefix-tree`: per-call samples vs per-trajectory concatenation vs the prefix tree,
side by side on the same synthetic batch, with the same model and the same loss (CISPO).

Batch (issue 5): one group of G rollouts per T; every rollout shares a ~1k-token system prompt +
tools, then each turn appends 50-300 generated tokens (trainable) and 50-500 tool-result tokens.
Modes:
- `per-call`: every LLM call its own sequence (padded micro-batches, `batch_mode = "call"`),
- `per-trajectory`: each trajectory's calls concatenated into one chain (`batch_mode = "chain"`),
- `tree`: all calls of the group merged into one prefix tree (`batch_mode = "tree"`).
For each: tokens processed (padding / duplicated ancestors included), forward+backward wall time,
and peak memory of one micro-batch (CUDA: max allocated; CPU: sampled peak RSS growth). Per-call
mode can be timed on a subset of the trajectories (all of their calls) and scaled by G/subset;
the table says so where it is.
"""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, Self

import torch

from forgerl.model.loading import load_policy, resolve_device, resolve_dtype
from forgerl.model.logprobs import MicroBatch, collate, pack_micro_batches, token_logprobs
from forgerl.rl import cispo_loss
from forgerl.types import LLMCall, TrainingSample, Trajectory, chain_samples

MODES = ("per-call", "per-trajectory", "tree")


def synthetic_group(vocab: int, group_size: int, turns: int, *, system_tokens: int = 1000, generated: tuple[int, int] = (50, 300),
                    tool: tuple[int, int] = (50, 500), seed: int = 0) -> list[Trajectory]:
    """G rollouts of one task: shared system prompt + tools + task, then `turns` calls each."""
    rng = random.Random(seed)

    def ids(n: int) -> list[int]:
        return [rng.randrange(10, vocab) for _ in range(n)]

    prompt = ids(system_tokens)
    group = []
    for g in range(group_size):
        ctx, calls = list(prompt), []
        for _ in range(turns):
            comp = ids(rng.randint(*generated))
            calls.append(LLMCall(prompt_ids=list(ctx), completion_ids=comp, completion_logprobs=[-rng.uniform(0.1, 4.0) for _ in comp],
                                 loss_mask=[1] * len(comp), policy_version=0, finish_reason="stop"))
            ctx = ctx + comp + ids(rng.randint(*tool))
        group.append(Trajectory(calls=calls, reward=float(g % 2)))
    return group


@dataclass
class ModeResult:
    mode: str
    tokens: int  # tokens the forward pass processes (all of them, even when timed on a subset)
    seconds: float  # forward+backward wall time (scaled when `scale` != 1)
    cpu_seconds: float  # process CPU time of the same (scaled): robust to other load on a shared machine
    peak_bytes: int  # peak memory of one micro-batch
    micro_batches: int
    scale: float = 1.0  # timed on 1/scale of the batch, time multiplied by scale
    build_seconds: float = 0.0  # building the micro-batches (tree: the trie + layout)


class _PeakMemory:
    """Peak memory growth during a block: CUDA allocator stats, or sampled process RSS on CPU."""

    def __init__(self, device: torch.device) -> None:
        self.device = device
        self.peak = 0

    def __enter__(self) -> Self:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            torch.cuda.reset_peak_memory_stats(self.device)
            self._base = torch.cuda.memory_allocated(self.device)
        else:
            import psutil

            self._proc = psutil.Process()
            self._base = self._proc.memory_info().rss
            self._max = self._base
            self._stop = threading.Event()
            self._thread = threading.Thread(target=self._sample, daemon=True)
            self._thread.start()
        return self

    def _sample(self) -> None:
        while not self._stop.is_set():
            self._max = max(self._max, self._proc.memory_info().rss)
            self._stop.wait(0.002)

    def __exit__(self, *exc: object) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            self.peak = torch.cuda.max_memory_allocated(self.device) - self._base
        else:
            self._stop.set()
            self._thread.join()
            self._max = max(self._max, self._proc.memory_info().rss)
            self.peak = self._max - self._base


def _micro_batches(mode: str, samples: list[TrainingSample], budget: int, device: torch.device) -> Iterator[Any]:
    from forgerl.batching.tree import build_tree_batch  # heavy: numpy, kept out of this module's import

    if mode == "tree":
        for mb in build_tree_batch(samples, budget, pad_to_multiple=128 if device.type == "cuda" else 1).micro_batches:
            yield mb.to(device)
    else:
        for chunk in pack_micro_batches(samples, budget):
            yield collate(chunk, device)


def _tokens(mode: str, samples: list[TrainingSample], budget: int) -> tuple[int, int]:
    from forgerl.batching.tree import build_tree_batch  # heavy: numpy, kept out of this module's import

    if mode == "tree":
        stats = build_tree_batch(samples, budget).stats
        return stats.packed_tokens, stats.micro_batches
    chunks = pack_micro_batches(samples, budget)
    return sum(len(c) * max(len(s.input_ids) for s in c) for c in chunks), len(chunks)


def run_mode(model: torch.nn.Module, mode: str, samples: list[TrainingSample], timed: list[TrainingSample], budget: int,
             scale: float = 1.0) -> ModeResult:
    """Forward+backward (CISPO over the batch's trainable tokens) of the `timed` samples."""
    from forgerl.batching.forward import tree_token_logprobs  # heavy: numpy, kept out of this module's import

    device = next(model.parameters()).device
    tokens, count = _tokens(mode, samples, budget)
    total = sum(s.num_tokens for s in timed)
    t0 = time.perf_counter()
    batches = list(_micro_batches(mode, timed, budget, device))
    build = time.perf_counter() - t0
    peak = 0
    model.zero_grad(set_to_none=True)
    _sync(device)
    start, cpu_start = time.perf_counter(), time.process_time()
    for mb in batches:
        with _PeakMemory(device) as mem:
            if isinstance(mb, MicroBatch):
                logp, _ = token_logprobs(model, mb)
            else:
                logp, _ = tree_token_logprobs(model, mb)
            cispo_loss(logp, mb.old_logprobs, mb.advantages, mb.loss_mask, num_tokens=total).loss.backward()
            del logp
        peak = max(peak, mem.peak)
    _sync(device)
    seconds = (time.perf_counter() - start) * scale
    cpu_seconds = (time.process_time() - cpu_start) * scale
    return ModeResult(mode, tokens, seconds, cpu_seconds, peak, count, scale, build)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def qwen_like_0p5b(vocab: int) -> Any:
    """A ~0.5B-parameter Qwen2-style decoder config (Qwen2.5-0.5B's shape; random weights)."""
    from transformers import Qwen2Config

    return Qwen2Config(vocab_size=vocab, hidden_size=896, intermediate_size=4864, num_hidden_layers=24,
                       num_attention_heads=14, num_key_value_heads=2, max_position_embeddings=65536,
                       tie_word_embeddings=True, attn_implementation="sdpa")


def load_bench_model(model: str, device: str, dtype: str) -> tuple[torch.nn.Module, int]:
    if model == "qwen-0.5b":
        from transformers import AutoModelForCausalLM

        dev = resolve_device(device)
        vocab = 151_936
        torch.manual_seed(0)
        net = AutoModelForCausalLM.from_config(qwen_like_0p5b(vocab), dtype=resolve_dtype(dtype, dev)).to(dev)
        return net.train(), vocab
    net, tok = load_policy(model, device=device, dtype=dtype)
    return net.train(), len(tok)


def run_prefix_tree_bench(model: str | torch.nn.Module = "default", turns: tuple[int, ...] = (4, 16), group_size: int = 8,
                          budget: int = 16384, call_subset: int = 1, device: str = "cpu", dtype: str = "auto",
                          system_tokens: int = 1000, generated: tuple[int, int] = (50, 300),
                          tool: tuple[int, int] = (50, 500), seed: int = 0) -> list[tuple[int, list[ModeResult]]]:
    """Print (and return) the side-by-side table for each T in `turns`."""
    from rich.console import Console
    from rich.table import Table

    console = Console()
    if isinstance(model, torch.nn.Module):
        net, vocab, model = model.train(), int(model.config.vocab_size), type(model).__name__
    else:
        net, vocab = load_bench_model(model, device, dtype)
    dev = next(net.parameters()).device
    results = []
    # first-call overheads (allocator, kernels, compilation) out of the timings; two sizes, so that
    # a compiler that specialises on the first length and generalises on the second does both here
    for size in (64, 300):
        warm = synthetic_group(vocab, 2, 2, system_tokens=size, generated=(8, 16), tool=(8, 16), seed=seed + size)
        for mode in MODES:
            warm_samples = _samples(warm, mode)
            run_mode(net, mode, warm_samples, warm_samples, budget)
    for t in turns:
        group = synthetic_group(vocab, group_size, t, system_tokens=system_tokens, generated=generated, tool=tool,
                                seed=seed + t)
        rows = []
        for mode in MODES:
            samples = _samples(group, mode)
            subset, scale = samples, 1.0
            if mode == "per-call" and 0 < call_subset < group_size:
                keep = {traj.id for traj in group[:call_subset]}
                subset = [s for s in samples if s.trajectory_id in keep]
                scale = group_size / call_subset
            console.print(f"[dim]T={t}: {mode} ...[/]")
            rows.append(run_mode(net, mode, samples, subset, budget, scale))
        results.append((t, rows))
        table = Table(title=f"prefix-tree bench: G={group_size}, T={t}, {model} on {_device_name(dev)}, budget {budget} tokens/micro-batch")
        cpu = dev.type == "cpu"
        columns = ["mode", "tokens", "tokens / tree", "fwd+bwd s", "tree speedup"]
        columns += ["cpu s", "tree speedup (cpu)"] if cpu else []
        columns += ["micro-batches", "peak mem / micro-batch"]
        for col in columns:
            table.add_column(col, justify="left" if col == "mode" else "right", overflow="fold")
        tree = rows[-1]
        for r in rows:
            note = f" (timed on {call_subset}/{group_size} trajectories, x{r.scale:g})" if r.scale != 1 else ""
            cells = [r.mode + note, f"{r.tokens:,}", f"{r.tokens / tree.tokens:.2f}x", f"{r.seconds:.2f}",
                     f"{r.seconds / tree.seconds:.2f}x"]
            cells += [f"{r.cpu_seconds:.2f}", f"{r.cpu_seconds / tree.cpu_seconds:.2f}x"] if cpu else []
            cells += [str(r.micro_batches), _mib(r.peak_bytes)]
            table.add_row(*cells)
        console.print(table)
        console.print(f"tree build (trie + layout): {tree.build_seconds:.2f} s, not included above"
                      + ("; cpu s = process CPU time, robust to other load on a shared machine" if cpu else ""))
    return results


def _samples(group: list[Trajectory], mode: str) -> list[TrainingSample]:
    merge = mode != "per-call"
    return [s for traj in group for s in chain_samples(traj, [traj.reward - 0.5] * len(traj.calls), merge=merge)]


def _device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    import os

    return f"CPU ({os.cpu_count()} cores, {torch.get_num_threads()} threads)"


def _mib(n: int) -> str:
    return f"{n / 2**20:,.0f} MiB"
