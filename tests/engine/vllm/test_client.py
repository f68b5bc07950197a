"""The vLLM adapter against a fake server (no vLLM needed): request mapping, results, streaming,
error mapping, retries after a server crash, weight pushes and their verification."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
import torch

from forgerl.engine.base import Engine, GenerationResult, SamplingParams, TokenEvent
from forgerl.engine.vllm import (
    VLLMServerConfig,
    completion_body,
    server_command,
    vllm_python,
)
from forgerl.engine.vllm.client import VLLMEngine
from forgerl.engine.vllm.server import server_env
from forgerl.errors import ConfigError, ContextLengthError, EngineError
from forgerl.weights import StaleWeightsAlarm, StaleWeightsError
from forgerl.weights.vllm_reload import VLLMWeightPusher, state_digest


def make_engine(fake, **kw) -> VLLMEngine:
    return VLLMEngine("http://fake", tokenizer=None, model_name="m", max_context=64, transport=fake.transport(), **kw)


def run(coro):
    return asyncio.run(coro)


def test_engine_satisfies_protocol(fake_vllm):
    assert isinstance(make_engine(fake_vllm), Engine)


def test_request_maps_every_sampling_field():
    params = SamplingParams(max_tokens=7, temperature=0.7, top_p=0.9, top_k=0, stop=["</s>"], stop_token_ids=[5], seed=3)
    body = completion_body("m", [1, 2, 3], params, frozenset({9}))
    assert body["prompt"] == [1, 2, 3]  # token ids, not text
    assert (body["max_tokens"], body["temperature"], body["top_p"], body["seed"]) == (7, 0.7, 0.9, 3)
    assert body["top_k"] == 0  # off, in both
    assert body["stop"] == ["</s>"] and body["stop_token_ids"] == [5, 9]
    assert body["logprobs"] == 0 and body["return_token_ids"] is True  # sampled ids + their logprobs
    # neutral penalties sent explicitly: a checkpoint's generation_config can never change them
    assert (body["repetition_penalty"], body["presence_penalty"], body["frequency_penalty"], body["min_p"]) == (1.0, 0.0, 0.0, 0.0)
    assert "seed" not in completion_body("m", [1], SamplingParams(), frozenset())
    assert completion_body("m", [1], SamplingParams(top_k=40), frozenset())["top_k"] == 40


def test_generate_returns_ids_logprobs_and_version(fake_vllm):
    fake_vllm.cached_tokens = 2
    engine = make_engine(fake_vllm, stop_token_ids=(13,), policy_version=4)
    res = run(engine.generate([10], SamplingParams(max_tokens=8)))
    assert res.completion_ids == [11, 12, 13]  # stopped on the end-of-message id, which is kept
    assert res.logprobs == [-0.25, -0.5, -0.75]
    assert (res.finish_reason, res.stop_reason, res.policy_version) == ("stop", 13, 4)
    assert (res.prompt_tokens, res.cached_tokens) == (1, 2)
    assert fake_vllm.bodies[0]["stop_token_ids"] == [13]


def test_length_finish_and_max_tokens_capped_at_the_context(fake_vllm):
    engine = make_engine(fake_vllm)
    res = run(engine.generate([1] * 60, SamplingParams(max_tokens=50)))
    assert fake_vllm.bodies[0]["max_tokens"] == 4  # 64 - 60: "length" at the context limit, as the built-in engine
    assert res.finish_reason == "length" and len(res.completion_ids) == 4


def test_stream_yields_tokens_then_the_same_result(fake_vllm):
    engine = make_engine(fake_vllm)

    async def collect():
        return [e async for e in engine.stream([20], SamplingParams(max_tokens=3))]

    events = run(collect())
    tokens, final = events[:-1], events[-1]
    assert all(isinstance(e, TokenEvent) for e in tokens) and isinstance(final, GenerationResult)
    assert [t.token_id for t in tokens] == final.completion_ids == [21, 22, 23]
    assert [t.logprob for t in tokens] == final.logprobs
    assert final.finish_reason == "length" and fake_vllm.bodies[0]["stream"] is True


def test_context_errors_local_and_from_the_server(fake_vllm):
    engine = make_engine(fake_vllm)
    with pytest.raises(ContextLengthError, match="64"):
        run(engine.generate([1] * 64, SamplingParams()))
    with pytest.raises(EngineError, match="empty prompt"):
        run(engine.generate([], SamplingParams()))
    fake_vllm.fail_next.append(400)
    with pytest.raises(EngineError, match="HTTP 400: simulated"):
        run(engine.generate([1], SamplingParams()))
    big = VLLMEngine("http://fake", None, model_name="m", max_context=1000, transport=fake_vllm.transport())
    with pytest.raises(ContextLengthError, match="maximum context length"):  # the server's 400, mapped
        run(big.generate([1] * 100, SamplingParams(max_tokens=5)))


@pytest.mark.parametrize("failure, match", [
    (httpx.ConnectError("refused"), "failed .*ConnectError"),
    (httpx.ReadTimeout("slow"), "timed out"),
    (500, "failed .*HTTP 500"),
])
def test_transport_failures_become_engine_errors(fake_vllm, failure, match):
    fake_vllm.fail_next.append(failure)
    with pytest.raises(EngineError, match=match):
        run(make_engine(fake_vllm).generate([1], SamplingParams()))


def test_a_request_lost_to_a_crash_is_retried_after_the_restart(fake_vllm, fake_supervisor_cls):
    sup = fake_supervisor_cls()
    engine = make_engine(fake_vllm, supervisor=sup)
    fake_vllm.fail_next.extend([httpx.ConnectError("refused"), 500])
    res = run(engine.generate([1], SamplingParams(max_tokens=2)))
    assert res.completion_ids == [2, 3] and sup.calls == 2 and engine.stats["retries"] == 2
    fake_vllm.fail_next.extend([httpx.ConnectError("refused")] * 3)
    with pytest.raises(EngineError, match="ConnectError"):  # max_retries=2 exhausted
        run(engine.generate([1], SamplingParams()))
    dead = make_engine(fake_vllm, supervisor=fake_supervisor_cls(ok=False))
    fake_vllm.fail_next.clear()
    fake_vllm.fail_next.append(httpx.ConnectError("refused"))
    with pytest.raises(EngineError, match="could not be restarted: simulated"):
        run(dead.generate([1], SamplingParams()))


def test_bad_responses_are_engine_errors(fake_vllm):
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, json={"choices": [{"text": "hi", "finish_reason": "stop"}]})

    engine = VLLMEngine("http://x", None, model_name="m", transport=httpx.MockTransport(handler))
    with pytest.raises(EngineError, match="return_token_ids"):
        run(engine.generate([1], SamplingParams()))


def _weights(seed: int) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return {"model.w": torch.randn(4, 4, generator=g), "model.b": torch.randn(4, generator=g)}


def test_push_sequence_version_and_verification(fake_vllm, tmp_path):
    pusher = VLLMWeightPusher("http://fake", shared_dir=tmp_path / "w", transport=fake_vllm.transport())
    engine = make_engine(fake_vllm)
    engine.attach_pusher(pusher)
    pusher.baseline(state_digest({k: v.bfloat16() for k, v in _weights(0).items()}))
    fake_vllm.calls.clear()
    engine.update_weights(_weights(1), 1)
    assert fake_vllm.calls == ["/pause", "/collective_rpc", "/reset_prefix_cache", "/weight_checker",
                               "/update_weight_version", "/resume", "/weight_info"]
    assert engine.policy_version == 1 and fake_vllm.version == "1" and not fake_vllm.paused
    assert run(engine.generate([1], SamplingParams(max_tokens=1))).policy_version == 1
    assert sorted(p.name for p in (tmp_path / "w").iterdir()) == ["v00000001"]  # older pushes removed
    engine.update_weights(_weights(2), 2)
    engine.update_weights(_weights(1), 3)  # the same weights again: checksum must match version 1's
    assert sorted(p.name for p in (tmp_path / "w").iterdir()) == ["v00000003"]


def test_a_reload_that_did_not_land_is_caught(fake_vllm, tmp_path):
    alarm = StaleWeightsAlarm(patience=1)
    pusher = VLLMWeightPusher("http://fake", shared_dir=tmp_path, transport=fake_vllm.transport(), alarm=alarm)
    engine = make_engine(fake_vllm, strict_pushes=True)
    engine.attach_pusher(pusher)
    pusher.baseline()
    fake_vllm.reload_has_no_effect = True
    with pytest.raises(EngineError, match="checksums did not change"):
        engine.update_weights(_weights(1), 1)
    assert engine.policy_version == 0 and not fake_vllm.paused  # resumed even though the push failed
    assert alarm.firing
    engine.strict_pushes = False
    engine.update_weights(_weights(1), 1)  # default: logged + alarm, training goes on at the old version
    assert engine.policy_version == 0 and not engine.last_push.ok
    fake_vllm.reload_has_no_effect, engine.strict_pushes = False, True
    engine.update_weights(_weights(2), 2)
    engine.update_weights(_weights(3), 3)
    fake_vllm.reload_has_no_effect = True  # a restore that does not come back bit-exact is caught too
    with pytest.raises(EngineError, match="differ from the last time"):
        engine.update_weights(_weights(2), 4)


def test_a_push_lost_to_a_crash_is_retried_after_the_restart(fake_vllm, fake_supervisor_cls, tmp_path):
    pusher = VLLMWeightPusher("http://fake", shared_dir=tmp_path, transport=fake_vllm.transport())
    sup = fake_supervisor_cls()
    engine = make_engine(fake_vllm, supervisor=sup, strict_pushes=True)
    engine.attach_pusher(pusher)
    real = fake_vllm.handle
    state = {"down": True}

    def crashed(request):  # the server is gone until the supervisor restarts it
        if state["down"]:
            raise httpx.ConnectError("refused")
        return real(request)

    fake_vllm.handle = crashed
    pusher._http = httpx.Client(base_url="http://fake", transport=httpx.MockTransport(crashed))
    sup.up, sup.on_restart = False, lambda: state.update(down=False)
    engine.update_weights(_weights(1), 1)
    assert sup.calls == 1 and engine.policy_version == 1 and fake_vllm.version == "1"


def test_unreachable_server_fires_the_stale_weights_alarm(tmp_path):
    def handler(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("refused")

    alarm = StaleWeightsAlarm(patience=1, raise_after=2)
    pusher = VLLMWeightPusher("http://x", shared_dir=tmp_path, transport=httpx.MockTransport(handler), alarm=alarm)
    first = pusher.push(_weights(1), 1)
    assert not first.ok and first.engine_version is None and "ConnectError" in first.error and alarm.firing
    with pytest.raises(StaleWeightsError):
        pusher.push(_weights(2), 2)


def test_restore_reloads_the_newest_push(fake_vllm, tmp_path):
    pusher = VLLMWeightPusher("http://fake", shared_dir=tmp_path, transport=fake_vllm.transport(), verify=False)
    pusher.push(_weights(1), 5)
    weights = fake_vllm.weights
    fake_vllm.weights, fake_vllm.version = "initial", None  # what a restarted server holds
    pusher.restore()
    assert (fake_vllm.weights, fake_vllm.version) == (weights, "5")


def test_push_without_a_pusher_says_what_to_do(fake_vllm):
    with pytest.raises(EngineError, match="open_vllm_engine"):
        make_engine(fake_vllm).update_weights({}, 1)


def test_missing_vllm_venv_says_how_to_install(tmp_path):
    with pytest.raises(ConfigError, match="install-vllm"):
        vllm_python(tmp_path / "nowhere")
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    with pytest.raises(ConfigError, match="no `vllm` package.*install-vllm"):
        vllm_python(venv)


def test_server_command_and_env_carry_the_cpu_settings(tmp_path):
    cfg = VLLMServerConfig(model=str(tmp_path), threads="0", kv_cache_gib=2, max_model_len=512)
    cmd = server_command(cfg, Path("/py"), 1234)
    assert cmd[:3] == ["/py", "-m", "vllm.entrypoints.openai.api_server"]
    for flag in ("--enforce-eager", "--enable-prefix-caching"):
        assert flag in cmd
    assert cmd[cmd.index("--host") + 1] == "127.0.0.1" and cmd[cmd.index("--port") + 1] == "1234"
    assert cmd[cmd.index("--logprobs-mode") + 1] == "raw_logprobs"
    assert cmd[cmd.index("--generation-config") + 1] == "vllm"
    env = server_env(cfg)
    assert env["VLLM_CPU_KVCACHE_SPACE"] == "2" and env["VLLM_CPU_OMP_THREADS_BIND"] == "0"
    assert env["VLLM_SERVER_DEV_MODE"] == "1" and env["HF_HUB_OFFLINE"] == "1"
    with pytest.raises(ConfigError, match="loopback"):
        VLLMServerConfig(model=str(tmp_path), host="0.0.0.0").validate()
    with pytest.raises(ConfigError, match="not a directory"):
        VLLMServerConfig(model="tiny-random").validate()
