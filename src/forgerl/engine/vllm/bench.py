"""The vLLM column of `forgerl bench engine`: the same agent-like workload (engine/bench.py) served
by a vLLM server through the adapter, so the figures compare like with like (same sessions, turns,
token counts, temperature 1, no early stop: `ignore_eos`)."""

from __future__ import annotations

import tempfile
import time
from pathlib import Path
from typing import Any


def run_vllm_workload(model: Any, tokenizer: Any, workload: Any, *, name: str = "bench", threads: str = "0-1",
                      kv_cache_gib: float = 2.0, max_context: int = 2048) -> dict[str, float]:
    """Serve `model` (an HF causal LM in memory) with vLLM and run `workload` (engine.bench.Workload)
    as concurrent sessions. Returns tokens, seconds, tokens/s, the server's start-up seconds and
    the share of prompt tokens served from vLLM's prefix cache."""
    from forgerl.engine.bench import make_workload, run_engine
    from forgerl.engine.vllm import VLLMEngine, VLLMServer, VLLMServerConfig
    from forgerl.engine.vllm.checkpoints import export_checkpoint

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

    from forgerl.engine.vllm import VLLMServer, VLLMServerConfig
    from forgerl.engine.vllm.weights import VLLMWeightPusher

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
