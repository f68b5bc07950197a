"""vLLM as a rollout engine: the adapter (client.py), the supervised server in its own venv
(server.py), versioned weight sync (forgerl/weights/vllm_reload.py) and checkpoint export (checkpoints.py).

    engine = open_vllm_engine(policy, tokenizer, work_dir=run_dir / "vllm", stop_token_ids=(eom,))
    ... the agent loop and trainer use it like the built-in engine ...
    engine.update_weights(inference_weights(policy), version)   # push + verify
    engine.close()                                              # stops the server

Nothing here imports vLLM: the server runs in a separate interpreter, so this package only needs
httpx, safetensors and transformers from the trainer's environment.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

from forgerl.engine.vllm.client import VLLMEngine, completion_body
from forgerl.engine.vllm.server import (
    INSTALL_HINT,
    VLLMServer,
    VLLMServerConfig,
    install_vllm,
    server_command,
    vllm_python,
)
from forgerl.model.loading import BUILTIN_MODELS, load_policy
from forgerl.weights.vllm_reload import VLLMWeightPusher, state_digest

__all__ = ["INSTALL_HINT", "VLLMEngine", "VLLMServer", "VLLMServerConfig", "completion_body", "install_vllm",
           "open_vllm_engine", "serve_vllm", "server_command", "vllm_python"]

log = logging.getLogger(__name__)


def open_vllm_engine(
    policy: Any,
    tokenizer: Any,
    *,
    work_dir: str | os.PathLike[str],
    model_name: str = "policy",
    stop_token_ids: tuple[int, ...] = (),
    max_context: int = 2048,
    policy_version: int = 0,
    dtype: str = "bfloat16",
    server: dict[str, Any] | None = None,
    verify_pushes: bool = True,
) -> VLLMEngine:
    """The trainer's `engine = "vllm"`: export `policy` to `work_dir/model`, start a supervised
    vLLM server on it, and return the adapter wired to a weight pusher (restarts reload the newest
    pushed weights). `server` overrides VLLMServerConfig fields (threads, kv_cache_gib, venv, ...)."""
    from forgerl.engine.vllm.checkpoints import export_checkpoint  # cycle: checkpoints imports this package
    from forgerl.model.lora import inference_weights  # heavy: torch, kept out of this module's import
    from forgerl.model.mtp import without_mtp  # heavy: torch; vLLM never sees the MTP heads

    work = Path(work_dir)
    model_dir = export_checkpoint(policy, tokenizer, work / "model", dtype=dtype)
    cfg = VLLMServerConfig(model=str(model_dir), served_model_name=model_name, max_model_len=max_context,
                           dtype=dtype, log_path=str(work / "server.log"), **(server or {}))
    supervisor = VLLMServer(cfg)
    supervisor.start()
    try:
        pusher = VLLMWeightPusher(supervisor.base_url, shared_dir=work / "weights", dtype=dtype, verify=verify_pushes)
        supervisor.on_restart = pusher.restore
        if verify_pushes:  # the server's checksum of the weights it started with, under the trainer's digest
            import torch

            weights = {k: v.to(getattr(torch, dtype)) if v.is_floating_point() else v
                       for k, v in without_mtp(inference_weights(policy)).items()}
            pusher.baseline(state_digest(weights), weights)
        engine = VLLMEngine(supervisor.base_url, tokenizer, model_name=model_name, max_context=max_context,
                            stop_token_ids=stop_token_ids, policy_version=policy_version, supervisor=supervisor)
        engine.attach_pusher(pusher)
    except BaseException:
        supervisor.stop()
        raise
    return engine


def serve_vllm(model: str, *, host: str = "127.0.0.1", port: int = 8000, chat_format: str | None = "minimax_m2",
               max_context: int = 2048, threads: str = "0-1", kv_cache_gib: float = 1.0,
               venv: str | None = None) -> None:
    """`forgerl serve --engine vllm --model DIR`: run a supervised vLLM server until interrupted.

    A built-in model name (`tiny-random`, `default`) is exported to a temporary HF directory first,
    its tokenizer prepared for `chat_format`, so the served ids match what forgerl's trainer uses."""
    import tempfile
    import time

    tmp: tempfile.TemporaryDirectory[str] | None = None
    model_dir = model
    if model in BUILTIN_MODELS:
        from forgerl.engine.vllm.checkpoints import export_checkpoint  # cycle: checkpoints imports this package

        tmp = tempfile.TemporaryDirectory(prefix="forgerl-vllm-")
        policy, tokenizer = load_policy(model, device="cpu", dtype="float32", chat_format=chat_format)
        model_dir = str(export_checkpoint(policy, tokenizer, Path(tmp.name) / "model"))
    cfg = VLLMServerConfig(model=model_dir, served_model_name=model, host=host, port=port, max_model_len=max_context,
                           threads=threads, kv_cache_gib=kv_cache_gib, venv=venv)
    server = VLLMServer(cfg)
    try:
        server.start()
        print(f"vLLM serving {model} at {server.base_url} (OpenAI API; log: {server.log_path}); Ctrl-C stops it", flush=True)
        while True:
            time.sleep(1.0)
            if not server.alive() and not server.ensure_running():
                raise SystemExit(f"the vLLM server died and could not be restarted: {server.last_error}")
    except KeyboardInterrupt:
        pass
    finally:
        server.stop()
        if tmp is not None:
            tmp.cleanup()
