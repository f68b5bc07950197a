"""Speculative decoding in the built-in engine (issue 23) against plain decoding and full forwards.

Random MTP heads almost never draft the right token, so the greedy tests also run an engine whose
drafts come from the plain engine's own outputs with every fifth one spoiled (`OracleDrafts`): then
every depth is accepted and refused along the way, through the engine's real verify/accept path.
"""

from __future__ import annotations

import asyncio
import random

import pytest
import torch

from forgerl.engine import speculative
from forgerl.engine.base import GenerationResult, SamplingParams
from forgerl.engine.llm import LLMEngine
from forgerl.engine.speculative import PROBE_EVERY, filtered_probs
from forgerl.errors import ConfigError
from forgerl.model.mtp import MTPShape, attach_mtp, get_mtp
from forgerl.testing import CharTokenizer, build_micro_moe

VOCAB = 300
TOL = 1e-4
DEPTHS = 3


@pytest.fixture(scope="module")
def model():
    torch.set_num_threads(1)
    policy = build_micro_moe(VOCAB)
    attach_mtp(policy, MTPShape(DEPTHS, 1, 8), seed=1)
    return policy


def prompt(seed: int, n: int) -> list[int]:
    rng = random.Random(seed)
    return [rng.randrange(1, VOCAB) for _ in range(n)]


def full_forward_logprobs(model, prompt_ids: list[int], completion: list[int]) -> list[float]:
    with torch.no_grad():
        logits = model(torch.tensor([prompt_ids + completion])).logits[0].float()
    lp = torch.log_softmax(logits, dim=-1)
    return [float(lp[len(prompt_ids) - 1 + i, t]) for i, t in enumerate(completion)]


class OracleDrafts(LLMEngine):
    """Drafts the reference continuation of each request (from a plain engine), every `spoil`-th
    token spoiled, after running the real MTP heads (whose drafts it replaces before each deeper
    depth reads them, as the heads' own drafts would be read)."""

    def __init__(self, *args, reference: dict[tuple[int, ...], list[int]], spoil: int = 5, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.reference, self.spoil = reference, spoil

    def _oracle(self, slot, row: list[int]) -> None:
        ref = self.reference[tuple(slot.request.prompt_ids)]
        done = len(slot.request.completion)
        for k in range(len(row)):
            at = done + k
            good = ref[at] if at < len(ref) else 0
            row[k] = (good + 1) % VOCAB if at % self.spoil == self.spoil - 1 else good

    def _depth_forward(self, heads, embed, k, slots, drafts):
        for slot, row in zip(slots, drafts):  # the same lists `_draft` appends to
            self._oracle(slot, row)
        return super()._depth_forward(heads, embed, k, slots, drafts)

    def _draft(self, running, counts):
        drafts, qs = super()._draft(running, counts)
        for slot, row in zip(running, drafts):
            self._oracle(slot, row)
        return drafts, qs


def sessions_workload(engine, batch: int, params: SamplingParams, turns: int = 2) -> list[GenerationResult]:
    """`batch` concurrent sessions, each `turns` turns extending its context (prefix reuse)."""

    async def session(s: int) -> list[GenerationResult]:
        ctx, out = prompt(s, 4 + 9 * s), []
        for t in range(turns):
            res = await engine.generate(ctx, params, session_id=f"s{s}")
            out.append(res)
            ctx = ctx + res.completion_ids + prompt(100 + 10 * s + t, 5)
        return out

    async def main() -> list[GenerationResult]:
        if batch == 1:
            return [r for s in range(4) for r in await session(s)]
        groups = await asyncio.gather(*(session(s) for s in range(batch)))
        return [r for g in groups for r in g]

    return asyncio.run(main())


def prompts_of(results: list[GenerationResult], batch: int, turns: int = 2) -> list[list[int]]:
    out = []
    for s in range(4 if batch == 1 else batch):
        ctx = prompt(s, 4 + 9 * s)
        for t in range(turns):
            out.append(ctx)
            ctx = ctx + results[s * turns + t].completion_ids + prompt(100 + 10 * s + t, 5)
    return out


@pytest.mark.parametrize("batch", [1, 4])
def test_greedy_is_token_identical_to_plain_decoding(model, batch):
    tok = CharTokenizer()
    greedy = SamplingParams(max_tokens=14, temperature=0)
    plain = LLMEngine(model, tok, max_context=96, num_slots=4, speculative=0)
    expected = sessions_workload(plain, batch, greedy)
    prompts = prompts_of(expected, batch)
    reference = {tuple(p): r.completion_ids for p, r in zip(prompts, expected)}
    stop_word = tok.decode(expected[1].completion_ids[6:8])  # ends session 0's second turn early
    with_stop = SamplingParams(max_tokens=14, temperature=0, stop=[stop_word])
    expected_stop = sessions_workload(LLMEngine(model, tok, max_context=96, num_slots=4, speculative=0), batch, with_stop)
    assert expected_stop[1].finish_reason == "stop" and len(expected_stop[1].completion_ids) <= 8
    reference.update({tuple(p): r.completion_ids for p, r in zip(prompts_of(expected_stop, batch), expected_stop)})
    engines = {"random heads": lambda: LLMEngine(model, tok, max_context=96, num_slots=4),  # auto: one per depth
               "oracle": lambda: OracleDrafts(model, tok, max_context=96, num_slots=4, speculative=DEPTHS,
                                              reference=reference)}
    for make in engines.values():
        for params, want in ((greedy, expected), (with_stop, expected_stop)):
            engine = make()  # fresh, like the plain engines: cached_tokens must match too
            assert engine.speculative == DEPTHS
            got = sessions_workload(engine, batch, params)
            for g, w in zip(got, want):
                assert g.completion_ids == w.completion_ids
                assert (g.finish_reason, g.stop_reason, g.cached_tokens) == (w.finish_reason, w.stop_reason, w.cached_tokens)
                assert g.logprobs == pytest.approx(w.logprobs, abs=TOL)
        spec = engine.stats["spec"]
        assert len(spec["proposed"]) == len(spec["accepted"]) == DEPTHS
        if isinstance(engine, OracleDrafts):  # drafts were accepted at every depth, and refused too
            assert all(0 < a < p for a, p in zip(spec["accepted"], spec["proposed"]))
            assert spec["tokens"] > 1.5 * spec["row_forwards"]
    assert sum(r.cached_tokens for r in expected) > 0  # the second turns reused their prefixes


def test_logprobs_equal_a_full_forward_with_speculation_on(model):
    tok = CharTokenizer()
    greedy = SamplingParams(max_tokens=20, temperature=0)
    prompts = [prompt(i, 3 + 11 * i) for i in range(3)]
    plain = LLMEngine(model, tok, max_context=96, num_slots=4, speculative=0)

    async def run_all(engine, params):
        return await asyncio.gather(*(engine.generate(p, params) for p in prompts))

    reference = {tuple(p): r.completion_ids for p, r in zip(prompts, asyncio.run(run_all(plain, greedy)))}
    oracle = OracleDrafts(model, tok, max_context=96, num_slots=4, reference=reference)
    sampled = LLMEngine(model, tok, max_context=96, num_slots=4)
    for engine, params in ((oracle, greedy), (sampled, SamplingParams(max_tokens=20, temperature=1.0, seed=3))):
        for p, res in zip(prompts, asyncio.run(run_all(engine, params))):
            assert len(res.completion_ids) == 20
            assert res.logprobs == pytest.approx(full_forward_logprobs(model, p, res.completion_ids), abs=TOL)
    assert oracle.stats["spec"]["tokens"] > oracle.stats["spec"]["row_forwards"]


def test_limits_cut_drafts_and_emitted_tokens(model):
    """max_tokens and the context limit end a request at the same token with speculation on."""
    tok = CharTokenizer()
    greedy = [SamplingParams(max_tokens=n, temperature=0) for n in (1, 2, 3, 5)]
    long_prompt = prompt(7, 40)

    async def run_all(engine):
        return await asyncio.gather(*(engine.generate(long_prompt, p) for p in greedy),
                                    engine.generate(long_prompt, SamplingParams(max_tokens=50, temperature=0)))

    want = asyncio.run(run_all(LLMEngine(model, tok, max_context=48, num_slots=5, speculative=0)))
    reference = {tuple(long_prompt): want[-1].completion_ids}
    got = asyncio.run(run_all(OracleDrafts(model, tok, max_context=48, num_slots=5, reference=reference)))
    assert [len(r.completion_ids) for r in want[:4]] == [1, 2, 3, 5]
    assert want[-1].finish_reason == "length" and len(want[-1].completion_ids) < 10  # the context limit
    for g, w in zip(got, want):
        assert (g.completion_ids, g.finish_reason) == (w.completion_ids, w.finish_reason)


def test_seeded_sampling_is_reproducible_whatever_shares_the_batch(model):
    tok = CharTokenizer()
    params = SamplingParams(max_tokens=16, temperature=1.0, top_p=0.9, seed=11)
    engine = LLMEngine(model, tok, max_context=96, num_slots=4)

    async def alone():
        return await engine.generate(prompt(1, 9), params)

    async def crowded():
        others = [engine.generate(prompt(i, 5 + i), SamplingParams(max_tokens=5 + 3 * i, temperature=1.0)) for i in range(3)]
        return (await asyncio.gather(engine.generate(prompt(1, 9), params), *others))[0]

    first, second = asyncio.run(alone()), asyncio.run(crowded())
    assert first.completion_ids == second.completion_ids
    assert first.logprobs == pytest.approx(second.logprobs, abs=TOL)


def test_weight_push_mid_request_reaches_drafts_and_target(model):
    import copy

    policy = copy.deepcopy(model)
    tok = CharTokenizer()
    engine = LLMEngine(policy, tok, max_context=96, num_slots=2)
    new = {k: v + 0.01 * torch.randn_like(v) for k, v in policy.state_dict().items() if v.is_floating_point()}
    assert any(k.startswith("mtp.") for k in new)

    async def main():
        events, pushed = [], False
        async for item in engine.stream(prompt(3, 12), SamplingParams(max_tokens=24, temperature=1.0, seed=2)):
            events.append(item)
            if len(events) == 4 and not pushed:
                engine.update_weights(new, version=5)
                pushed = True
        return events[-1], await engine.generate(prompt(4, 10), SamplingParams(max_tokens=12, temperature=1.0, seed=1))

    during, after = asyncio.run(main())
    assert isinstance(during, GenerationResult) and len(during.completion_ids) == 24
    assert after.policy_version == 5
    heads = get_mtp(policy)
    assert torch.equal(heads.depths[0].eh_proj.weight, new["mtp.depths.0.eh_proj.weight"])
    assert after.logprobs == pytest.approx(full_forward_logprobs(policy, prompt(4, 10), after.completion_ids), abs=TOL)


def test_speculative_option_is_checked(model):
    tok = CharTokenizer()
    bare = build_micro_moe(VOCAB)
    off = LLMEngine(bare, tok, max_context=32, num_slots=1)
    assert off.speculative == 0 and "spec" not in off.stats  # auto: off without heads, no counters
    assert LLMEngine(model, tok, max_context=32, num_slots=1, speculative=2).speculative == 2
    with pytest.raises(ConfigError, match="has 3 MTP module"):
        LLMEngine(model, tok, max_context=32, num_slots=1, speculative=4)
    with pytest.raises(ConfigError, match="needs a policy with MTP heads"):
        LLMEngine(bare, tok, max_context=32, num_slots=1, speculative=1)
    with pytest.raises(ConfigError, match=">= 0"):
        LLMEngine(model, tok, max_context=32, num_slots=1, speculative=-1)


# ------------------------------------------------------------------ the sampling distribution
SMALL_VOCAB = 8


@pytest.fixture(scope="module")
def sharp_model():
    """A tiny-vocabulary policy whose target and (deliberately bad, random) drafts are both far
    from uniform and far from each other, so a wrong acceptance rule shows in the frequencies."""
    torch.set_num_threads(1)
    policy = build_micro_moe(SMALL_VOCAB, seed=2)
    heads = attach_mtp(policy, MTPShape(2, 1, 8), seed=5)
    with torch.no_grad():
        policy.lm_head.weight.mul_(6.0)
        for depth in heads.depths:
            depth.norm.weight.mul_(2.0)
    return policy


def exact_marginals(model, context: list[int], params: SamplingParams) -> tuple[torch.Tensor, torch.Tensor]:
    """Exact distributions of generated tokens 2 and 3 (the first ones speculation produces)
    after `context` + token 1, by enumerating every token 2."""
    with torch.no_grad():
        first = filtered_probs(model(torch.tensor([context])).logits[0, -1:].float(), params)[0]
        rows = torch.tensor([context + [a, b] for a in range(SMALL_VOCAB) for b in range(SMALL_VOCAB)])
        logits = model(rows).logits.float()
        second = filtered_probs(logits[::SMALL_VOCAB, -2], params)  # [token 1, token 2]
        third = filtered_probs(logits[:, -1], params).reshape(SMALL_VOCAB, SMALL_VOCAB, SMALL_VOCAB)
    p2 = (first[:, None] * second).sum(0)
    p3 = (first[:, None, None] * second[:, :, None] * third).sum((0, 1))
    return p2, p3


def chi_square(counts: torch.Tensor, probs: torch.Tensor) -> tuple[float, int]:
    """Pearson's statistic over bins expected at least 5 times (the rest pooled) and its dof."""
    n = float(counts.sum())
    expected = probs * n
    big = expected >= 5
    obs = torch.cat([counts[big], counts[~big].sum().reshape(1)])
    exp = torch.cat([expected[big], expected[~big].sum().reshape(1)])
    keep = exp > 0
    return float(((obs[keep] - exp[keep]) ** 2 / exp[keep]).sum()), int(keep.sum()) - 1


@pytest.mark.parametrize("params", [SamplingParams(max_tokens=4, temperature=1.0),
                                    SamplingParams(max_tokens=4, temperature=0.8, top_k=5, top_p=0.9)])
def test_sampled_tokens_follow_the_target_distribution(sharp_model, params):
    """Tokens 2 and 3 (both drafted, depths 1 and 2) over 1200 seeds against their exact
    marginals: chi-square below the 1e-4 critical value for 8 degrees of freedom (31.8; fewer
    dof make it stricter), a false alarm about once in 10^4 runs. The drafts are bad (under 80%
    kept, so the draft and target distributions differ by over 0.2 in total variation): a rule
    that kept drafts wrongly would shift the frequencies far beyond that bound at this sample size."""
    context = [1, 5, 3, 6, 2]
    engine = LLMEngine(sharp_model, CharTokenizer(), max_context=32, num_slots=16)
    runs = 1200

    async def main():
        out = []
        for start in range(0, runs, 16):
            batch = [engine.generate(context, SamplingParams(**{**params.__dict__, "seed": s}))
                     for s in range(start, start + 16)]
            out += await asyncio.gather(*batch)
        return out

    results = asyncio.run(main())
    p2, p3 = exact_marginals(sharp_model, context, params)
    for position, probs in ((1, p2), (2, p3)):
        counts = torch.bincount(torch.tensor([r.completion_ids[position] for r in results]), minlength=SMALL_VOCAB).float()
        stat, dof = chi_square(counts, probs)
        assert stat < 31.8, (position, stat, dof, counts.tolist(), (probs * runs).tolist())
    spec = engine.stats["spec"]
    assert spec["proposed"][1] == runs and spec["proposed"][0] >= runs  # all drafted tokens 2 and 3 (then more)
    assert 0 < spec["accepted"][0] < 0.8 * spec["proposed"][0]  # bad drafts: many refusals, some kept


@pytest.mark.parametrize("drafts", ["heads", "oracle"])
def test_draft_caches_equal_the_teacher_forced_heads(model, monkeypatch, drafts):
    """The engine computes each MTP depth incrementally (its own small caches, a restart a few
    windows back when far behind, positions that read kept drafts kept as final); wherever a
    depth's output has a full window of computed positions it must equal MTPHeads.forward over
    the whole sequence, as training computes it. With the heads' own drafts nearly every draft is
    refused; with oracle drafts most are kept. (Random heads would stop drafting after two
    rounds: every depth is made to pay here.)"""
    monkeypatch.setattr(speculative, "DEPTH_COST", -1.0)
    tok = CharTokenizer()
    first, plain = prompt(21, 5), LLMEngine(model, tok, max_context=96, num_slots=1, speculative=0)
    want1 = asyncio.run(plain.generate(first, SamplingParams(max_tokens=12, temperature=0)))
    second = first + want1.completion_ids + prompt(22, 30)  # far past the caches: they restart
    want2 = asyncio.run(plain.generate(second, SamplingParams(max_tokens=10, temperature=0)))
    engine = LLMEngine(model, tok, max_context=96, num_slots=1) if drafts == "heads" else OracleDrafts(
        model, tok, max_context=96, num_slots=1,
        reference={tuple(first): want1.completion_ids, tuple(second): want2.completion_ids})
    heads, window = get_mtp(model), get_mtp(model).window
    turn1 = asyncio.run(engine.generate(first, SamplingParams(max_tokens=12, temperature=0)))
    assert turn1.completion_ids == want1.completion_ids
    checked = []
    for ctx in (first, second):
        if ctx is second:
            asyncio.run(engine.generate(ctx, SamplingParams(max_tokens=10, temperature=0)))
        slot = engine.slots[0]
        ids = torch.tensor([slot.tokens])
        with torch.no_grad():
            h0 = model.model(ids).last_hidden_state
            expected = heads(h0, ids, model.get_input_embeddings())
        for k in range(1, DEPTHS + 1):
            # teacher forcing knows the tokens in the slot (not the last one sampled)
            lo, hi = slot.draft_lo[k - 1], min(slot.draft_hi[k - 1], len(slot.tokens) - k)
            exact_from = 0 if lo == 0 else lo + window - 1
            assert hi - exact_from >= 3
            got = heads.head_input(k, engine._draft_caches[k - 1].hidden[0, exact_from:hi])
            assert torch.allclose(got, expected[k - 1][0, exact_from:hi], atol=TOL), (k, lo, hi)
            checked.append((k, lo, hi))
    assert any(lo > 0 for _, lo, _ in checked)  # the second turn restarted its caches
    spec = engine.stats["spec"]
    if drafts == "oracle":
        assert spec["accepted"][DEPTHS - 1] > 0.3 * spec["proposed"][DEPTHS - 1]


def test_an_abandoned_stream_frees_its_slot_with_speculation_on(model):
    engine = LLMEngine(model, CharTokenizer(), max_context=96, num_slots=1)

    async def main():
        seen = 0
        async for _ in engine.stream(prompt(5, 8), SamplingParams(max_tokens=40, temperature=1.0, seed=1)):
            seen += 1
            if seen == 3:
                break  # the caller stops listening: the request is cancelled
        return seen, await engine.generate(prompt(6, 8), SamplingParams(max_tokens=6, temperature=0))

    seen, after = asyncio.run(main())
    assert seen == 3 and len(after.completion_ids) == 6  # the one slot was freed for the next request
    assert engine.stats["generated_tokens"] < 40 + 6


def _scenario(seed: int, tok: CharTokenizer) -> tuple[list[tuple[list[int], SamplingParams, str]], int, int]:
    """Random requests: shared prefixes, stop tokens and strings, lengths up to the context limit,
    fewer slots than requests (queueing, prefix copies between slots)."""
    rng = random.Random(seed)
    base = [rng.randrange(1, VOCAB) for _ in range(rng.randrange(1, 30))]
    context = rng.choice([40, 64])
    requests = []
    for _ in range(rng.randrange(1, 9)):
        shared = base[:rng.randrange(0, len(base) + 1)] if rng.random() < 0.6 else []
        ids = (shared + [rng.randrange(1, VOCAB) for _ in range(rng.randrange(1, 20))])[:context - 2]
        params = SamplingParams(max_tokens=rng.randrange(1, 25), temperature=0,
                                stop_token_ids=[rng.randrange(1, VOCAB)] if rng.random() < 0.3 else [],
                                stop=[tok.decode([rng.randrange(1, VOCAB)])] if rng.random() < 0.3 else [])
        requests.append((ids, params, f"s{rng.randrange(3)}"))
    return requests, rng.randrange(1, 5), context


def test_random_workloads_decode_identically(model):
    """12 random workloads (see _scenario), plain vs speculative with random and oracle drafts:
    same tokens, finish reasons and logprobs (1e-4)."""
    tok = CharTokenizer()

    def run_all(engine, requests):
        async def one(i, ids, params, session):
            await asyncio.sleep(0.0005 * i)  # staggered arrivals: requests join running batches
            return await engine.generate(ids, params, session_id=session)

        async def main():
            return await asyncio.gather(*(one(i, *req) for i, req in enumerate(requests)))

        return asyncio.run(main())

    for seed in range(12):
        requests, slots, context = _scenario(seed, tok)
        want = run_all(LLMEngine(model, tok, max_context=context, num_slots=slots, speculative=0), requests)
        reference = {tuple(ids): r.completion_ids for (ids, _, _), r in zip(requests, want)}
        for engine in (LLMEngine(model, tok, max_context=context, num_slots=slots),
                       OracleDrafts(model, tok, max_context=context, num_slots=slots, reference=reference)):
            for g, w in zip(run_all(engine, requests), want):
                assert (g.completion_ids, g.finish_reason, g.stop_reason) == (w.completion_ids, w.finish_reason, w.stop_reason), seed
                assert g.logprobs == pytest.approx(w.logprobs, abs=TOL)


def test_drafting_stops_when_it_does_not_pay_and_stays_on_when_it_does(model):
    """Adaptive draft length: random heads (nearly every draft refused) draft only on probe
    rounds after two, and a session's next turn carries that on (until a weight push);
    drafts that are always right keep the full depth. Either way the tokens are the plain engine's."""
    tok = CharTokenizer()
    greedy = SamplingParams(max_tokens=64, temperature=0)
    context = prompt(31, 6)
    want = asyncio.run(LLMEngine(model, tok, max_context=200, num_slots=1, speculative=0).generate(context, greedy))
    random_heads = LLMEngine(model, tok, max_context=200, num_slots=1)
    assert asyncio.run(random_heads.generate(context, greedy, "s")).completion_ids == want.completion_ids
    spec = random_heads.stats["spec"]
    rounds = spec["row_forwards"]
    assert rounds > 40 and spec["accepted"][0] <= 2  # nearly every draft refused, many rounds
    assert spec["proposed"][DEPTHS - 1] == 2  # two optimistic rounds at full depth
    assert spec["proposed"][0] == 2 + rounds // PROBE_EVERY  # then a one-depth probe every PROBE_EVERY rounds

    def drafted_in_next_turn() -> list[int]:
        before = list(spec["proposed"])
        asyncio.run(random_heads.generate(context + want.completion_ids + prompt(32, 3),
                                          SamplingParams(max_tokens=8, temperature=0), "s"))
        return [a - b for a, b in zip(spec["proposed"], before)]

    carried = drafted_in_next_turn()
    assert carried[DEPTHS - 1] == 0 and carried[0] <= 1  # the session's estimate carried over: a probe at most
    random_heads.update_weights({}, version=1)
    assert drafted_in_next_turn()[DEPTHS - 1] == 2  # after a push the estimates start over
    reference = {tuple(context): want.completion_ids}
    oracle = OracleDrafts(model, tok, max_context=200, num_slots=1, reference=reference, spoil=1000)
    assert asyncio.run(oracle.generate(context, greedy)).completion_ids == want.completion_ids
    spec = oracle.stats["spec"]
    assert spec["proposed"][DEPTHS - 1] >= spec["row_forwards"] - 2  # every round at full depth (but the last)
