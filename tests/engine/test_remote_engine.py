"""RemoteEngine (engine/remote.py) against real `forgerl serve` apps on loopback: the engine
protocol over HTTP, the server's policy version on every result, errors mapped to EngineError,
waiting for a server that went away (and restoring its weights when it comes back), the trainer's
`open_remote_engine` checks, and `engine = "remote"` in the training config."""

from __future__ import annotations

import asyncio
import copy
import socket
import threading
import time
from typing import Any

import httpx
import pytest
import torch
import uvicorn

from forgerl.chat import get_format
from forgerl.engine.base import Engine, GenerationResult, SamplingParams, TokenEvent
from forgerl.engine.remote import RemoteEngine, ServerWatch, open_remote_engine
from forgerl.engine.scripted import ScriptedEngine
from forgerl.engine.vllm import VLLMEngine
from forgerl.errors import ConfigError, ContextLengthError, EngineError
from forgerl.server.app import create_app
from forgerl.testing import start_cli_server
from forgerl.weights import INSTANCE_HEADER, WeightPusher

TOKEN = "remote-test-token"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """A uvicorn server in a thread on a given port (so a test can stop it and start another)."""

    def __init__(self, app: Any, port: int) -> None:
        self.port, self.url = port, f"http://127.0.0.1:{port}"
        self._sock = socket.socket()
        self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._sock.bind(("127.0.0.1", port))
        self._server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="off"))
        self._thread = threading.Thread(target=self._server.run, kwargs={"sockets": [self._sock]}, daemon=True)
        self._thread.start()
        deadline = time.monotonic() + 10
        while not self._server.started:
            assert time.monotonic() < deadline and self._thread.is_alive(), "uvicorn did not start"
            time.sleep(0.01)

    def stop(self) -> None:
        self._server.should_exit = True
        self._thread.join(timeout=10)
        self._sock.close()


@pytest.fixture(scope="module")
def m2_tokenizer():
    from forgerl.model.tokenizer import load_default_tokenizer, prepare_tokenizer

    return prepare_tokenizer(copy.deepcopy(load_default_tokenizer()), get_format("minimax_m2"))


class RecordingEngine(ScriptedEngine):
    """A scripted engine that keeps the weights it was given (to see what a push delivered)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.weights: dict[str, torch.Tensor] = {}

    def update_weights(self, state_dict, version) -> None:
        self.weights = {k: v.clone() for k, v in state_dict.items()}
        super().update_weights(state_dict, version)


@pytest.fixture()
def serve(m2_tokenizer):
    """serve(replies, port=None, admin_token=None, **engine_kwargs) -> (Server, engine)."""
    started: list[Server] = []

    def start(replies: list[str], *, port: int | None = None, admin_token: str | None = TOKEN, **kw: Any):
        kw.setdefault("model_name", "m")
        engine = RecordingEngine(m2_tokenizer, replies, **kw)
        server = Server(create_app(engine, get_format("minimax_m2"), admin_token=admin_token), port or free_port())
        started.append(server)
        return server, engine

    yield start
    for s in started:
        s.stop()


def run(coro):
    return asyncio.run(coro)


def test_one_client_protocol_ids_logprobs_and_the_servers_version(serve, m2_tokenizer):
    server, inner = serve(["Hello world", "Hello world"], logprob=-0.25)
    inner.policy_version = 3  # the server's weights are newer than the client knows
    engine = RemoteEngine(server.url, m2_tokenizer, model_name="m", max_context=512, stop_token_ids=(7,))
    assert isinstance(engine, Engine) and issubclass(VLLMEngine, RemoteEngine)
    res = run(engine.generate([1, 2, 3], SamplingParams(max_tokens=20, seed=1)))
    expected = m2_tokenizer.encode("Hello world", add_special_tokens=False)
    assert res.completion_ids == expected and res.logprobs == [-0.25] * len(expected)
    assert inner.prompts[-1] == [1, 2, 3] and res.prompt_tokens == 3
    assert res.policy_version == 3 and engine.server_version == 3  # the server's word, not the client's 0
    assert res.finish_reason == "stop"

    async def collect():
        return [e async for e in engine.stream([1, 2, 3], SamplingParams(max_tokens=20))]

    events = run(collect())
    assert all(isinstance(e, TokenEvent) for e in events[:-1]) and isinstance(events[-1], GenerationResult)
    assert [e.token_id for e in events[:-1]] == events[-1].completion_ids == expected
    assert events[-1].policy_version == 3


def test_errors_map_to_engine_errors(serve, m2_tokenizer):
    server, _ = serve(["a"], max_context=64)
    engine = RemoteEngine(server.url, m2_tokenizer, model_name="m", max_context=512)
    with pytest.raises(ContextLengthError, match="context limit"):  # the server's 400, mapped
        run(engine.generate([1] * 100, SamplingParams(max_tokens=4)))
    with pytest.raises(EngineError, match="HTTP 404.*does not exist"):
        run(RemoteEngine(server.url, m2_tokenizer, model_name="other").generate([1], SamplingParams()))
    with pytest.raises(EngineError, match="HTTP 500"):  # the scripted engine is out of replies (after 'a')
        run(engine.generate([1], SamplingParams(max_tokens=4)))
        run(engine.generate([1], SamplingParams(max_tokens=4)))
    nobody = RemoteEngine(f"http://127.0.0.1:{free_port()}", m2_tokenizer, model_name="m")
    with pytest.raises(EngineError, match="failed .*ConnectError"):
        run(nobody.generate([1], SamplingParams()))


def test_a_timeout_is_an_engine_error(serve, m2_tokenizer):
    server, _ = serve(["slow"], delay_s=0.4)
    engine = RemoteEngine(server.url, m2_tokenizer, model_name="m", timeout_s=0.1)
    with pytest.raises(EngineError, match="timed out"):
        run(engine.generate([1], SamplingParams(max_tokens=8)))


class _Watch:
    def __init__(self) -> None:
        self.calls, self.last_error = 0, ""

    def healthy(self) -> bool:
        return True

    def ensure_running(self) -> bool:
        self.calls += 1
        return True

    def stop(self) -> None: ...


def _flaky(failures: list[Exception]) -> httpx.MockTransport:
    def handle(request: httpx.Request) -> httpx.Response:
        if failures:
            raise failures.pop(0)
        return httpx.Response(200, json={"choices": [{"token_ids": [5], "finish_reason": "length",
                                                      "logprobs": {"token_logprobs": [-1.0]}}],
                                         "forgerl": {"policy_version": 2}})
    return httpx.MockTransport(handle)


def test_never_sent_requests_wait_but_in_flight_ones_fail():
    """Connection refused: the server never saw the request, so it waits and is sent again. A
    request lost in flight fails (the rollout becomes an infra failure), unless retry_in_flight."""
    watch = _Watch()
    engine = RemoteEngine("http://x", None, model_name="m", supervisor=watch,
                          transport=_flaky([httpx.ConnectError("refused"), httpx.ConnectError("refused")]))
    assert run(engine.generate([1], SamplingParams(max_tokens=1))).completion_ids == [5]
    assert watch.calls == 2
    lost = RemoteEngine("http://x", None, model_name="m", supervisor=watch,
                        transport=_flaky([httpx.RemoteProtocolError("server disconnected")]))
    with pytest.raises(EngineError, match="RemoteProtocolError"):
        run(lost.generate([1], SamplingParams(max_tokens=1)))
    assert watch.calls == 2  # not retried
    vllm_like = RemoteEngine("http://x", None, model_name="m", supervisor=watch, retry_in_flight=True,
                             transport=_flaky([httpx.ReadError("reset")]))
    assert run(vllm_like.generate([1], SamplingParams(max_tokens=1))).policy_version == 2


def test_watch_waits_for_a_server_that_comes_back(serve, m2_tokenizer):
    port = free_port()
    watch = ServerWatch(f"http://127.0.0.1:{port}", reconnect_timeout_s=60, poll_s=0.05)
    engine = RemoteEngine(watch.base_url, m2_tokenizer, model_name="m", supervisor=watch)

    def start_when_waited_for() -> None:  # the server comes back only once the watch is waiting for it
        deadline = time.monotonic() + 60
        while watch.outages == 0 and time.monotonic() < deadline:
            time.sleep(0.02)
        serve(["back again"], port=port)

    later = threading.Thread(target=start_when_waited_for)
    later.start()
    try:
        res = run(engine.generate([1], SamplingParams(max_tokens=8)))
    finally:
        later.join()
    assert res.completion_ids == m2_tokenizer.encode("back again", add_special_tokens=False)
    assert watch.outages == 1 and engine.stats["retries"] >= 1
    gone = ServerWatch(f"http://127.0.0.1:{free_port()}", reconnect_timeout_s=0.3, poll_s=0.05)
    assert not gone.ensure_running() and "did not answer /health" in gone.last_error


def _weights(seed: int) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return {"w": torch.randn(3, 3, generator=g)}


def test_pushes_force_and_restore_after_a_restart(serve, m2_tokenizer, tmp_path):
    port = free_port()
    first, inner = serve(["x"], port=port)
    inner.policy_version = 9  # a server some earlier run left at version 9
    pusher = WeightPusher(first.url, admin_token=TOKEN, shared_dir=tmp_path)
    engine = RemoteEngine(first.url, m2_tokenizer, model_name="m", supervisor=ServerWatch(first.url, on_restart=pusher.restore))
    engine.attach_pusher(pusher)
    engine.update_weights(_weights(0), 0)  # refused: not newer than 9
    assert not engine.last_push.ok and "409" in engine.last_push.error and engine.policy_version == 0
    engine.update_weights(_weights(0), 0, force=True)  # attaching: the trainer's weights as its version 0
    engine.update_weights(_weights(1), 1)
    assert engine.last_push.ok and inner.policy_version == 1 and torch.equal(inner.weights["w"], _weights(1)["w"])
    instance = httpx.get(f"{first.url}/admin/weights", headers={"Authorization": f"Bearer {TOKEN}"}).headers[INSTANCE_HEADER]
    assert pusher.loaded == (1, instance)
    assert pusher.restore() is None  # same process, same version: nothing to do

    first.stop()
    _, fresh = serve(["y"], port=port)  # a restarted server: its own initial weights, version 0
    assert engine.supervisor.ensure_running()  # back: the watch restores version 1 there
    assert fresh.policy_version == 1 and torch.equal(fresh.weights["w"], _weights(1)["w"])
    engine.close()


def test_open_remote_engine_checks_the_server_and_attaches(serve, m2_tokenizer, monkeypatch):
    monkeypatch.delenv("FORGERL_ADMIN_TOKEN", raising=False)
    server, inner = serve(["x"], max_context=512)
    inner.policy_version = 4
    with pytest.raises(ConfigError, match="admin token"):
        open_remote_engine(server.url, m2_tokenizer)
    with pytest.raises(ConfigError, match="rejected the admin token"):
        open_remote_engine(server.url, m2_tokenizer, admin_token="wrong")
    with pytest.raises(ConfigError, match="serves a context of 512"):
        open_remote_engine(server.url, m2_tokenizer, admin_token=TOKEN, max_context=2048)
    with pytest.raises(ConfigError, match="cannot reach"):
        open_remote_engine(f"http://127.0.0.1:{free_port()}", m2_tokenizer, admin_token=TOKEN)
    no_admin, _ = serve(["x"], admin_token=None)
    with pytest.raises(ConfigError, match="no admin routes"):
        open_remote_engine(no_admin.url, m2_tokenizer, admin_token=TOKEN)
    monkeypatch.setenv("FORGERL_ADMIN_TOKEN", TOKEN)
    engine = open_remote_engine(server.url, m2_tokenizer, max_context=256, initial_weights=_weights(3))
    try:
        assert engine.model_name == "m" and engine.policy_version == 0
        assert inner.policy_version == 0 and torch.equal(inner.weights["w"], _weights(3)["w"])  # forced over 4
    finally:
        engine.close()


def test_train_config_remote_fields():
    from forgerl.train.config import dump_config, load_config

    with pytest.raises(ConfigError, match="engine.url: missing"):
        load_config(engine={"kind": "remote"})
    with pytest.raises(ConfigError, match="engine.url: not a key of engine kind 'builtin'"):
        load_config(engine={"url": "http://127.0.0.1:8000"})
    cfg = load_config(engine={"kind": "remote", "url": "http://127.0.0.1:8000"})
    assert cfg.engine.admin_token is None
    text = dump_config(cfg)
    assert "admin_token" not in text  # unset optional fields are left out (TOML has no null)
    import tomllib

    assert load_config(**tomllib.loads(text)) == cfg
    secret = load_config(engine={"kind": "remote", "url": "http://127.0.0.1:8000", "admin_token": "s3cret-token"})
    assert "s3cret-token" not in dump_config(secret)  # a run directory never holds the token
    from forgerl.train.config import public_config

    assert "admin_token" not in public_config(secret)["engine"]  # nor does the run's record in the store
    assert load_config(**tomllib.loads(dump_config(secret))).engine.admin_token is None


# ------------------------------------------------------------------ the trainer against a real process
def start_serve(port: int, log: Any, started: list[Any]):
    """`forgerl serve --model tiny-random --admin-token ...` in its own process, once healthy."""
    return start_cli_server(["serve", "--model", "tiny-random", "--port", str(port), "--admin-token", TOKEN],
                            port, log, started)


def recomputed_logprobs(model: Any, call: Any) -> torch.Tensor:
    ids = torch.tensor([call.prompt_ids + call.completion_ids])
    with torch.no_grad():
        logits = model(input_ids=ids).logits[0, len(call.prompt_ids) - 1:-1].float()
    return torch.log_softmax(logits, -1).gather(-1, torch.tensor(call.completion_ids)[:, None])[:, 0]


@pytest.mark.slow  # two tiny-random processes and two RL steps: ~30 s on 2 busy cores (minutes when overloaded)
@pytest.mark.timeout(600)
def test_trainer_runs_on_a_forgerl_serve_process(tmp_path):
    from safetensors.torch import load_file

    from forgerl.model.loading import load_policy
    from forgerl.store import TrajectoryStore
    from forgerl.train.config import load_config
    from forgerl.training import run_training

    port = free_port()
    url = f"http://127.0.0.1:{port}"
    started: list[Any] = []
    try:
        start_serve(port, tmp_path / "serve.log", started)
        # seed 3: the trainer's tiny-random differs from the server's (seed 0) until the attach push
        cfg = load_config(model="tiny-random", env="arithmetic", difficulty=[1], steps=2, groups_per_step=2,
                          group_size=2, max_turns=2, max_tokens=12, max_context=512, eval={"every": 10, "tasks": 1},
                          checkpoint_every=1, seed=3, run_dir=str(tmp_path / "run"),
                          engine={"kind": "remote", "url": url, "admin_token": TOKEN})
        result = run_training(cfg)
        info = httpx.get(f"{url}/admin/weights", headers={"Authorization": f"Bearer {TOKEN}"}).json()
        assert info["policy_version"] == 2  # attach (0), then one push per step
    finally:
        for proc in started:
            proc.kill()
            proc.wait()
    assert [s for s, _ in result.eval_rewards] == [0, 2]
    with TrajectoryStore(tmp_path / "run") as store:
        run_id = store.runs()[0].id
        trajectories = store.query(run_id=run_id)
        assert store.latest_checkpoint(run_id).step == 2
    assert len(trajectories) == 8 and all(t.status.value != "failed" for t in trajectories)
    calls = [c for t in trajectories for c in t.calls]
    assert {c.policy_version for c in calls} == {0, 1}  # step 1 sampled version 0, step 2 version 1
    policies = {v: load_policy("tiny-random", device="cpu", dtype="float32", seed=3)[0] for v in (0, 1)}
    policies[1].load_state_dict(load_file(str(tmp_path / "run" / "checkpoints" / "step_000001" / "model.safetensors")))
    worst = 0.0
    for call in calls:
        ref = recomputed_logprobs(policies[call.policy_version], call)
        worst = max(worst, (torch.tensor(call.completion_logprobs) - ref).abs().max().item())
    # Tolerance 1e-3: the server decodes fp32 in batches with a KV cache, the reference is one fp32
    # forward pass. The server's own (seed 0) weights would be off by far more (checked below).
    assert worst < 1e-3
    server_own = load_policy("tiny-random", device="cpu", dtype="float32", seed=0)[0]
    off = (torch.tensor(calls[0].completion_logprobs) - recomputed_logprobs(server_own, calls[0])).abs().max().item()
    assert off > 0.05


def test_a_server_with_an_api_key_is_reached_with_it(m2_tokenizer):
    """`forgerl serve --api-key K`: the remote engine sends K (argument or $FORGERL_API_KEY)."""
    from forgerl.errors import EngineError

    engine = RecordingEngine(m2_tokenizer, ["Hello world"], model_name="m")
    server = Server(create_app(engine, get_format("minimax_m2"), api_key="k" * 24), free_port())
    try:
        keyed = RemoteEngine(server.url, m2_tokenizer, model_name="m", max_context=512, api_key="k" * 24)
        res = run(keyed.generate([1, 2, 3], SamplingParams(max_tokens=20, seed=1)))
        assert res.completion_ids == m2_tokenizer.encode("Hello world", add_special_tokens=False)
        keyless = RemoteEngine(server.url, m2_tokenizer, model_name="m", max_context=512, max_retries=0)
        with pytest.raises(EngineError):
            run(keyless.generate([1, 2, 3], SamplingParams(max_tokens=20, seed=1)))
    finally:
        server.stop()
