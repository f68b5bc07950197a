"""The built-in engine against straightforward references: HF greedy `generate` (token-exact) and a
full-context forward pass for every returned logprob (abs tolerance 1e-4, fp32)."""

from __future__ import annotations

import asyncio
import random

import pytest
import torch

from forgerl.engine.base import GenerationResult, SamplingParams, TokenEvent
from forgerl.engine.llm import LLMEngine
from forgerl.errors import ConfigError, ContextLengthError, EngineError
from forgerl.testing import build_micro_moe as build_tiny_model

VOCAB = 300

TOL = 1e-4


def reference_logprobs(model, prompt: list[int], completion: list[int]) -> list[float]:
    ids = torch.tensor([prompt + completion])
    with torch.no_grad():
        logits = model(ids).logits[0].float()
    lp = torch.log_softmax(logits, dim=-1)
    return [float(lp[len(prompt) - 1 + i, t]) for i, t in enumerate(completion)]


def reference_greedy(model, prompt: list[int], n: int) -> list[int]:
    out = model.generate(torch.tensor([prompt]), attention_mask=torch.ones(1, len(prompt), dtype=torch.long),
                         max_new_tokens=n, min_new_tokens=n, do_sample=False, pad_token_id=0)
    return out[0, len(prompt):].tolist()


def run(coro):
    return asyncio.run(coro)


@pytest.fixture()
def engine(tiny_model, char_tokenizer):
    eng = LLMEngine(tiny_model, char_tokenizer, max_context=256, num_slots=3)
    yield eng
    eng.close()


def prompt(seed: int, n: int) -> list[int]:
    rng = random.Random(seed)
    return [rng.randrange(1, VOCAB) for _ in range(n)]


def test_greedy_matches_hf_generate_and_logprobs_match_full_forward(engine, tiny_model):
    greedy = SamplingParams(max_tokens=12, temperature=0)

    async def main():
        return await asyncio.gather(*(engine.generate(prompt(i, 5 + 7 * i), greedy) for i in range(5)))

    results = run(main())
    assert engine.stats["prefill_forwards"] < len(results)  # simultaneous arrivals share a prefill forward
    for i, res in enumerate(results):
        p = prompt(i, 5 + 7 * i)
        assert res.completion_ids == reference_greedy(tiny_model, p, 12)
        assert res.finish_reason == "length"
        assert max(abs(a - b) for a, b in zip(res.logprobs, reference_logprobs(tiny_model, p, res.completion_ids))) < TOL


def test_multi_turn_sessions_reuse_prefix_exactly(engine, tiny_model):
    """Sessions whose next prompt extends their previous context prefill only the new tokens, and
    the logprobs still equal a full recomputation. With 5 sessions on 3 slots (queueing, eviction)
    the results stay exact; with 3 sessions on 3 slots every later turn reuses its prefix."""
    params = SamplingParams(max_tokens=6, temperature=1.0, seed=3)

    async def session(k: int):
        ctx, out = prompt(100 + k, 20), []
        for turn in range(3):
            res = await engine.generate(ctx, params, session_id=f"s{k}")
            out.append((list(ctx), res))
            ctx = ctx + res.completion_ids + prompt(1000 * k + turn, 4)  # "tool result"
        return out

    async def main(n: int):
        return await asyncio.gather(*(session(k) for k in range(n)))

    for n in (5, 3):
        before = engine.stats["cached_tokens"]
        cached = 0
        for turns in run(main(n)):
            for turn, (ctx, res) in enumerate(turns):
                ref = reference_logprobs(tiny_model, ctx, res.completion_ids)
                assert max(abs(a - b) for a, b in zip(res.logprobs, ref)) < TOL
                if n == 3 and turn > 0:
                    assert res.cached_tokens == len(turns[turn - 1][0]) + 6 - 1  # all but the last sampled token
                cached += res.cached_tokens
        assert engine.stats["cached_tokens"] - before == cached


def test_group_prompt_is_shared_between_sessions(engine, tiny_model):
    """G rollouts of a group share the prompt: later ones reuse it from another slot (copied)."""
    shared = prompt(7, 40)
    params = SamplingParams(max_tokens=5, temperature=1.0)

    async def main():
        first = await engine.generate(shared, params, session_id="a")
        rest = await asyncio.gather(*(engine.generate(shared + [5, 6], params, session_id=f"b{i}") for i in range(2)))
        return [first, *rest]

    results = run(main())
    assert all(r.cached_tokens >= 40 for r in results[1:])
    for r, p in zip(results, [shared, shared + [5, 6], shared + [5, 6]]):
        assert max(abs(a - b) for a, b in zip(r.logprobs, reference_logprobs(tiny_model, p, r.completion_ids))) < TOL


def test_a_group_arriving_together_computes_its_prompt_once_and_exactly(tiny_model, char_tokenizer):
    """The G rollouts of a group arrive in one step: one computes the shared prompt, the others wait
    one step and copy it from that (running) slot. Exact: every logprob within TOL (1e-4, fp32) of a
    full forward pass over the request's own context, as a fresh prefill is."""
    eng = LLMEngine(tiny_model, char_tokenizer, max_context=256, num_slots=5)
    shared = prompt(11, 40)
    prompts = [shared + prompt(100 + i, 3) for i in range(4)]

    async def main():
        return await asyncio.gather(*(eng.generate(p, SamplingParams(max_tokens=6, seed=i), session_id=f"g/t{i}")
                                      for i, p in enumerate(prompts)))

    try:
        results = run(main())
    finally:
        eng.close()
    assert sorted(r.cached_tokens for r in results) == [0, 40, 40, 40]
    assert eng.stats["prompt_tokens"] - eng.stats["cached_tokens"] == 43 + 3 * 3  # the prompt computed once
    for p, r in zip(prompts, results):
        assert max(abs(a - b) for a, b in zip(r.logprobs, reference_logprobs(tiny_model, p, r.completion_ids))) < TOL


def test_requests_join_a_running_batch(engine, tiny_model):
    greedy = SamplingParams(max_tokens=20, temperature=0)

    async def late(i: int):
        await asyncio.sleep(0.01 * i)
        return await engine.generate(prompt(50 + i, 9), greedy)

    async def main():
        return await asyncio.gather(*(late(i) for i in range(4)))

    for i, res in enumerate(run(main())):
        assert res.completion_ids == reference_greedy(tiny_model, prompt(50 + i, 9), 20)


def test_seeded_sampling_is_reproducible_under_different_load(engine):
    params = SamplingParams(max_tokens=15, temperature=1.0, top_p=0.9, top_k=20, seed=1234)
    p = prompt(9, 12)

    async def alone():
        return await engine.generate(p, params)

    async def crowded():
        others = [engine.generate(prompt(i, 30), SamplingParams(max_tokens=15)) for i in range(3)]
        return (await asyncio.gather(engine.generate(p, params), *others))[0]

    assert run(alone()).completion_ids == run(crowded()).completion_ids


def test_stop_conditions(engine, char_tokenizer):
    p = prompt(11, 10)
    first = run(engine.generate(p, SamplingParams(max_tokens=8, temperature=0))).completion_ids
    by_id = run(engine.generate(p, SamplingParams(max_tokens=8, temperature=0, stop_token_ids=[first[2]])))
    assert by_id.completion_ids == first[: first.index(first[2]) + 1]
    assert (by_id.finish_reason, by_id.stop_reason) == ("stop", first[2])
    text = char_tokenizer.decode(first[3:5])
    by_str = run(engine.generate(p, SamplingParams(max_tokens=8, temperature=0, stop=[text])))
    assert by_str.finish_reason == "stop" and by_str.stop_reason == text
    assert text in char_tokenizer.decode(by_str.completion_ids)
    assert len(by_str.completion_ids) <= 5


def test_context_limit_and_bad_input_raise_clear_errors(engine):
    with pytest.raises(ContextLengthError, match="context limit is 256"):
        run(engine.generate(prompt(1, 300), SamplingParams()))
    with pytest.raises(EngineError, match="empty prompt"):
        run(engine.generate([], SamplingParams()))
    with pytest.raises(EngineError, match="token ids must lie"):
        run(engine.generate([VOCAB + 5], SamplingParams()))
    with pytest.raises(ConfigError, match="max_tokens"):
        run(engine.generate([1, 2], SamplingParams(max_tokens=0)))
    # a long generation stops at the context limit instead of overflowing the cache
    res = run(engine.generate(prompt(2, 250), SamplingParams(max_tokens=50)))
    assert res.finish_reason == "length" and 250 + len(res.completion_ids) <= 256
    assert run(engine.generate([1, 2, 3], SamplingParams(max_tokens=2))).finish_reason == "length"


def test_update_weights_changes_outputs_and_stamps_version(engine, tiny_model):
    p = prompt(21, 10)
    greedy = SamplingParams(max_tokens=10, temperature=0)
    other = build_tiny_model(seed=99)
    original = {k: v.clone() for k, v in tiny_model.state_dict().items()}
    try:
        new_weights = other.state_dict()
        bias = next(k for k in new_weights if k.endswith("e_score_correction_bias"))
        new_weights[bias] = torch.linspace(-1, 1, new_weights[bias].numel())  # a buffer, not a parameter
        other.load_state_dict(new_weights)
        engine.update_weights(new_weights, version=7)
        assert torch.equal(tiny_model.state_dict()[bias], new_weights[bias])
        res = run(engine.generate(p, greedy))
        assert res.policy_version == 7
        assert res.completion_ids == reference_greedy(other, p, 10)
        with pytest.raises(EngineError, match="unknown parameter names"):
            engine.update_weights({"not.a.param": torch.zeros(1)}, version=8)
        assert engine.policy_version == 7
    finally:
        tiny_model.load_state_dict(original)


def test_abandoned_stream_frees_its_slot(engine):
    async def main():
        async for event in engine.stream(prompt(3, 10), SamplingParams(max_tokens=200)):
            assert isinstance(event, TokenEvent)
            break
        # every slot must still be usable afterwards
        return await asyncio.gather(*(engine.generate(prompt(i, 8), SamplingParams(max_tokens=4)) for i in range(3)))

    results = run(main())
    assert all(isinstance(r, GenerationResult) and len(r.completion_ids) == 4 for r in results)
