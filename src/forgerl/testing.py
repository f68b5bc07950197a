"""Tiny models and fakes for tests and examples (no downloads, seconds to build)."""

from __future__ import annotations

from typing import Any

from forgerl.model.loading import TinyMoEShape, tiny_config

MICRO_SHAPE = TinyMoEShape(hidden_size=64, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
                           head_dim=16, rotary_dim=8, intermediate_size=64, num_local_experts=4, num_experts_per_tok=2)


class CharTokenizer:
    """Decodes ids as printable characters: enough for code that only needs `decode`."""

    eos_token_id = None

    def decode(self, ids: list[int], skip_special_tokens: bool = False) -> str:
        return "".join(chr(32 + (i % 90)) for i in ids)


def build_micro_moe(vocab_size: int = 300, seed: int = 0) -> Any:
    """A ~100k-parameter `minimax_m2` model in fp32, eval mode, deterministic for a seed."""
    import torch
    from transformers import AutoModelForCausalLM

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = AutoModelForCausalLM.from_config(tiny_config(vocab_size, None, None, MICRO_SHAPE), dtype=torch.float32)
    return model.eval()


def start_cli_server(args: list[str], port: int, log: Any, started: list[Any], *, env: dict[str, str] | None = None,
                     start_timeout_s: float = 300.0) -> Any:
    """`python -m forgerl.cli.main ARGS` (serve, gateway, ...) in its own process, returned once its
    `/health` answers on 127.0.0.1:`port`. Output goes to the file `log` (a pipe nobody reads would
    block the server when full); the process is appended to `started` before waiting, so a test can
    kill whatever it started however it ends. The timeout is generous: on a crowded 2-core machine
    a start takes minutes."""
    import subprocess
    import sys
    import time
    from pathlib import Path

    import httpx

    with open(log, "a") as out:
        proc = subprocess.Popen([sys.executable, "-m", "forgerl.cli.main", *args], stdout=out,
                                stderr=subprocess.STDOUT, env=env)
    started.append(proc)
    deadline = time.monotonic() + start_timeout_s
    while True:
        assert proc.poll() is None, Path(log).read_text()
        try:
            if httpx.get(f"http://127.0.0.1:{port}/health", timeout=1).status_code == 200:
                return proc
        except httpx.HTTPError:
            pass
        assert time.monotonic() < deadline, f"`forgerl {args[0]}` did not start within {start_timeout_s:.0f} s"
        time.sleep(0.2)
