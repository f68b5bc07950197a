"""The vLLM column of `forgerl bench engine`: the same agent-like workload (bench/engine.py) served
by a vLLM server through the adapter, so the figures compare like with like (same sessions, turns,
token counts, temperature 1, no early stop: `ignore_eos`)."""

from __future__ import annotations

import tempfile
import time
from pathlib import Path
from typing import Any

from forgerl.engine.vllm import VLLMEngine, VLLMServer, VLLMServerConfig
from forgerl.engine.vllm.checkpoints import export_checkpoint, tiny_llama_checkpoint
from forgerl.weights.vllm_reload import VLLMWeightPusher


def run_vllm_workload(model: Any, tokenizer: Any, workload: Any, *, name: str = "bench", threads: str = "0-1",
                      kv_cache_gib: float = 2.0, max_context: int = 2048) -> dict[str, float]:
    """Serve `model` (an HF causal LM in memory) with vLLM and run `workload` (forgerl.bench.engine.Workload)
    as concurrent sessions. Returns tokens, seconds, tokens/s, the server's start-up seconds and
    the share of prompt tokens served from vLLM's prefix cache."""
    from forgerl.bench.engine import make_workload, run_engine  # heavy: torch, kept out of this module's import

    with tempfile.TemporaryDirectory(prefix="forgerl-vllm-bench-") as tmp:
        model_dir = export_checkpoint(model, tokenizer, Path(tmp) / "model")
        cfg = VLLMServerConfig(model=str(model_dir), served_model_name=name, max_model_len=max_context,
                               threads=threads, kv_cache_gib=kv_cache_gib, max_num_seqs=max(16, workload.sessions),
                               log_path=str(Path(tmp) / "server.log"))
        with VLLMServer(cfg, watchdog_s=None) as server:
            engine = VLLMEngine(server.base_url, tokenizer, model_name=name, max_context=max_context,
                                extra_body={"ignore_eos": True})
            vocab = min(len(tokenizer), model.get_output_embeddings().weight.shape[0])
            run_engine(engine, make_workload(vocab, 2, 1, 4, seed=1))  # warm-up
            engine.stats.update({k: 0 for k in engine.stats})
            t0 = time.perf_counter()
            tokens = run_engine(engine, workload)
            seconds = time.perf_counter() - t0
            stats = dict(engine.stats)
    return {"tokens": tokens, "seconds": seconds, "tokens_per_s": tokens / seconds, "start_s": server.start_s or 0.0,
            "cached_share": stats["cached_tokens"] / max(1, stats["prompt_tokens"])}


def push_timings(model_dir: str | Path, *, repeats: int = 3, threads: str = "0-1") -> dict[str, float]:
    """Serve `model_dir` and push its own weights (perturbed, then restored) `repeats` times:
    bytes pushed and the median seconds of each phase (save, pause, reload, reset, verify, total)."""
    import statistics

    import torch
    from safetensors.torch import load_file

    model_dir = Path(model_dir)
    weights: dict[str, torch.Tensor] = {}
    for f in sorted(model_dir.glob("*.safetensors")):
        weights.update(load_file(str(f)))
    with tempfile.TemporaryDirectory(prefix="forgerl-vllm-push-") as tmp:
        cfg = VLLMServerConfig(model=str(model_dir), max_model_len=512, threads=threads, kv_cache_gib=1,
                               log_path=str(Path(tmp) / "server.log"))
        with VLLMServer(cfg, watchdog_s=None) as server:
            pusher = VLLMWeightPusher(server.base_url, shared_dir=Path(tmp) / "w")
            pusher.baseline()
            rows = []
            for i in range(repeats):
                noisy = {k: (v.float() + 1e-3 * torch.randn_like(v.float())).to(v.dtype) if v.is_floating_point() else v
                         for k, v in weights.items()}
                for version, state in ((2 * i + 1, noisy), (2 * i + 2, weights)):
                    r = pusher.push(state, version)
                    if not r.ok:
                        raise RuntimeError(f"push {version} failed: {r.error}")
                    rows.append({"save_s": r.save_s, "total_s": r.total_s, **(r.server or {})})
            pusher.close()
    params = sum(v.numel() for v in weights.values())
    out = {"params": float(params), "bytes": float(r.bytes)}
    for key in rows[0]:
        out[key] = statistics.median(row[key] for row in rows)
    return out


# (label, tiny_llama_checkpoint kwargs): sizes between the tests' tiny Llama and SmolLM2-135M
PUSH_SIZES: dict[str, dict[str, int]] = {
    "llama h64 x2": {"hidden_size": 64, "layers": 2, "heads": 2, "kv_heads": 1},
    "llama h128 x4 (default-policy stand-in)": {"hidden_size": 128, "layers": 4, "heads": 4, "kv_heads": 2,
                                                "intermediate_size": 384, "vocab_size": 4096},
    "llama h512 x12": {"hidden_size": 512, "layers": 12, "heads": 16, "kv_heads": 4, "intermediate_size": 1408,
                       "vocab_size": 4096},
}


def push_table(sizes: list[str] | None = None, *, smollm2: bool = True, repeats: int = 3,
               threads: str = "0-1") -> list[dict[str, Any]]:
    """Push time vs model size: each size served in turn, its weights pushed (perturbed, then
    restored) 2 x `repeats` times; prints one row per size (medians) and returns the rows."""
    from rich.console import Console
    from rich.table import Table

    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="forgerl-vllm-sizes-") as tmp:
        dirs: list[tuple[str, Path]] = [(label, tiny_llama_checkpoint(Path(tmp) / f"m{i}", **PUSH_SIZES[label]))
                                        for i, label in enumerate(sizes or list(PUSH_SIZES))]
        if smollm2:
            from forgerl.bench.engine import _smollm2_dir  # heavy: torch, kept out of this module's import

            dirs.append(("SmolLM2-135M-Instruct", _smollm2_dir()))
        for label, model_dir in dirs:
            rows.append({"model": label, **push_timings(model_dir, repeats=repeats, threads=threads)})
    table = Table(title="vLLM weight push (bf16 safetensors -> pause -> reload -> reset prefix cache -> checksum "
                        "-> version -> resume), median seconds")
    for col in ("model", "params", "MB", "save", "pause", "reload", "reset", "verify", "resume", "total", "MB/s"):
        table.add_column(col, justify="left" if col == "model" else "right")
    for r in rows:
        table.add_row(r["model"], f"{r['params'] / 1e6:.1f}M", f"{r['bytes'] / 1e6:.1f}", f"{r['save_s']:.3f}",
                      f"{r.get('pause_s', 0):.3f}", f"{r.get('reload_s', 0):.3f}", f"{r.get('reset_s', 0):.3f}",
                      f"{r.get('verify_s', 0):.3f}", f"{r.get('resume_s', 0):.3f}", f"{r['total_s']:.3f}",
                      f"{r['bytes'] / 1e6 / r['total_s']:.0f}")
    Console().print(table)
    return rows
