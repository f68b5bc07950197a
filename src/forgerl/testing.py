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


# A user's task family as a plug-in module's source (the tests of plug-ins and of a new user's
# whole path write it into a package of their own): the agent submits the word the prompt names.
ECHO_FAMILY_SOURCE = '''\
from forgerl.envs import Environment, Family, Task, Verdict, register_env
from forgerl.envs.base import submit_nothing
from forgerl.errors import ToolError
from forgerl.types import Message, ToolCall, ToolSpec

WORDS = ["apple", "pear", "plum"]
SUBMIT = ToolSpec(name="submit_answer", description="Submit the word.", parameters={
    "type": "object", "properties": {"answer": {"type": "string"}}, "required": ["answer"]})

def sample_task(seed: int) -> Task:
    word = WORDS[seed % len(WORDS)]
    return Task(id=f"acme-{seed}", family="acme-echo", prompt=f"Submit the word {word}.", answer=word)

class EchoEnv(Environment):
    family = "acme-echo"

    def __init__(self, seed: int = 0) -> None:
        self.submitted = None

    @property
    def done(self) -> bool:
        return self.submitted is not None

    def tools(self):
        return [SUBMIT]

    def reset(self, task):
        self.task, self.submitted = task, None
        return [Message(role="user", content=task.prompt)]

    async def execute(self, call):
        if call.name != "submit_answer":
            raise ToolError(f"unknown tool {call.name!r}; tools: submit_answer")
        self.submitted = str(call.arguments.get("answer", ""))
        return "Submitted."

    def verify(self, trajectory):
        ok = self.submitted == self.task.answer
        return Verdict(outcome=float(ok), evidence={"submitted": self.submitted})

    def gold_solution(self, task):
        return [[ToolCall(name="submit_answer", arguments={"answer": task.answer})]]

register_env(Family(name="acme-echo", make_env=EchoEnv, sample_task=sample_task,
                    description="Submit the word the prompt names.",
                    noop=submit_nothing("submit_answer", answer="")))
'''
