"""`forgerl bench weightsync`: push time vs model size, shared memory vs a disk file, vs in-process.

For each model size a real `forgerl serve` app (uvicorn on loopback, built-in engine) receives the
trainer's weights through `WeightPusher`: write safetensors (to /dev/shm, or to a directory on
disk), POST, load, drain, apply. The in-process `engine.update_weights` (what a single-process run
does) is measured beside it as the floor.
"""

from __future__ import annotations

import secrets
import socket
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from forgerl.chat import get_format
from forgerl.model.loading import TinyMoEShape, tiny_config
from forgerl.model.tokenizer import load_default_tokenizer, prepare_tokenizer
from forgerl.weights import WeightPusher, default_shared_dir

SIZES = ((128, 4, 192), (256, 6, 384), (512, 8, 768))  # (hidden, layers, expert width)


def _model(hidden: int, layers: int, inter: int, vocab: int = 8192) -> Any:
    import torch
    from transformers import AutoModelForCausalLM

    shape = TinyMoEShape(hidden_size=hidden, num_hidden_layers=layers, num_attention_heads=4, num_key_value_heads=2,
                         head_dim=hidden // 4, rotary_dim=hidden // 8, intermediate_size=inter)
    return AutoModelForCausalLM.from_config(tiny_config(vocab, None, None, shape), dtype=torch.float32).eval()


class _Server:
    def __init__(self, app: Any) -> None:
        import uvicorn

        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}"
        self.server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="off"))
        self.thread = threading.Thread(target=self.server.run, kwargs={"sockets": [self.sock]}, daemon=True)
        self.thread.start()
        while not self.server.started:
            time.sleep(0.01)

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(10)
        self.sock.close()


def run_weight_sync_bench(repeats: int = 3, sizes: tuple[tuple[int, int, int], ...] = SIZES) -> list[dict[str, float]]:
    import torch
    from rich.console import Console
    from rich.table import Table

    from forgerl.engine.llm import LLMEngine  # heavy: torch, transformers, kept out of this module's import
    from forgerl.server.app import create_app  # heavy: fastapi, starlette, kept out of this module's import

    fmt = get_format("minimax_m2")
    tokenizer = prepare_tokenizer(load_default_tokenizer(), fmt)
    rows = []
    for hidden, layers, inter in sizes:
        engine_model, trainer_model = _model(hidden, layers, inter), _model(hidden, layers, inter)
        state = trainer_model.state_dict()
        params = sum(p.numel() for p in trainer_model.parameters())
        token = secrets.token_hex(8)
        engine = LLMEngine(engine_model, tokenizer, model_name="bench", max_context=64, num_slots=1)
        server = _Server(create_app(engine, fmt, admin_token=token))
        row: dict[str, float] = {"params_m": params / 1e6}
        version = 0
        try:
            t = time.perf_counter()
            for _ in range(repeats):
                version += 1
                engine.update_weights(state, version)
            row["in_process_s"] = (time.perf_counter() - t) / repeats
            with tempfile.TemporaryDirectory(dir=Path.home()) as disk:
                for label, where in (("shm", default_shared_dir()), ("disk", Path(disk))):
                    with WeightPusher(server.url, admin_token=token, shared_dir=where) as pusher:
                        results = []
                        for _ in range(repeats):
                            version += 1
                            results.append(pusher.push(state, version))
                    if not all(r.ok for r in results):
                        raise RuntimeError(f"a push failed: {[r.error for r in results if not r.ok]}")
                    row["mb"] = results[-1].bytes / 2**20
                    row[f"{label}_total_s"] = sum(r.total_s for r in results) / repeats
                    row[f"{label}_save_s"] = sum(r.save_s for r in results) / repeats
                    row[f"{label}_load_s"] = sum(r.server["load_s"] for r in results) / repeats  # type: ignore[index]
                    row[f"{label}_apply_s"] = sum(r.server["apply_s"] for r in results) / repeats  # type: ignore[index]
            assert all(torch.equal(engine_model.state_dict()[k], v) for k, v in state.items())
        finally:
            server.stop()
        rows.append(row)
    table = Table(title=f"weight push (mean of {repeats}): trainer process -> forgerl serve")
    for col in ("params", "MB", "in-process", "shm total", "shm save/load/apply", "disk total", "disk save/load/apply"):
        table.add_column(col, justify="right")
    for r in rows:
        table.add_row(f"{r['params_m']:.1f}M", f"{r['mb']:.0f}", f"{r['in_process_s'] * 1e3:.0f} ms",
                      f"{r['shm_total_s'] * 1e3:.0f} ms",
                      f"{r['shm_save_s'] * 1e3:.0f}/{r['shm_load_s'] * 1e3:.0f}/{r['shm_apply_s'] * 1e3:.0f}",
                      f"{r['disk_total_s'] * 1e3:.0f} ms",
                      f"{r['disk_save_s'] * 1e3:.0f}/{r['disk_load_s'] * 1e3:.0f}/{r['disk_apply_s'] * 1e3:.0f}")
    Console(width=120).print(table)
    return rows
