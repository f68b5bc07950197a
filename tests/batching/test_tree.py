"""Structure of the prefix tree and its packing: what is shared, what each token may attend to,
where each trainable token goes, and the token budget."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from forgerl.batching import PrefixTree, build_tree_batch
from forgerl.batching.attention import dense_tree_mask
from forgerl.types import TrainingSample, chain_samples

from .conftest import Shape, random_batch


def sample(ids: list[int], mask: list[int] | None = None, adv: float = 1.0) -> TrainingSample:
    mask = mask if mask is not None else [0] * (len(ids) - 1) + [1]
    return TrainingSample(input_ids=ids, loss_mask=mask, old_logprobs=[-1.0] * len(ids), advantages=[adv] * len(ids),
                          trajectory_id="t", calls=[0], policy_versions=[0])


def per_call_samples(groups) -> list[TrainingSample]:
    return [s for g in groups for t in g for s in chain_samples(t, [t.reward - 0.5] * len(t.calls), merge=False)]


def test_shared_prefixes_are_stored_once_and_sequences_end_on_node_boundaries():
    tree = PrefixTree()
    a = tree.insert([1, 2, 3, 4])
    b = tree.insert([1, 2, 5])
    c = tree.insert([1, 2])  # a prefix of both: the shared node itself
    d = tree.insert([9, 2])  # a different first token: a new root (e.g. after a context rewrite)
    tree.finalize()
    assert tree.num_tokens == 2 + 2 + 1 + 2
    assert [list(n.tokens) for n in a.path()] == [[1, 2], [3, 4]]
    assert b.path()[0] is c and a.path()[0] is c
    assert d.path() == [d]
    assert [n.depth for n in a.path()] == [0, 2]


def test_layout_positions_sources_and_attention_rule():
    samples = [sample([1, 2, 3, 4]), sample([1, 2, 5, 6, 7]), sample([8, 9])]
    mb = build_tree_batch(samples, 100).micro_batches[0]
    ids = mb.input_ids[0].tolist()
    assert sorted(ids) == [1, 2, 3, 4, 5, 6, 7, 8, 9]  # the shared [1, 2] once
    pos = dict(zip(ids, mb.position_ids[0].tolist()))
    assert pos == {1: 0, 2: 1, 3: 2, 4: 3, 5: 2, 6: 3, 7: 4, 8: 0, 9: 1}  # branches continue from their parent
    where = {t: i for i, t in enumerate(ids)}
    allowed = dense_tree_mask(mb.subtree_end)
    ancestors = {1: [1], 2: [1, 2], 3: [1, 2, 3], 4: [1, 2, 3, 4], 5: [1, 2, 5], 6: [1, 2, 5, 6], 7: [1, 2, 5, 6, 7],
                 8: [8], 9: [8, 9]}
    for q, seen in ancestors.items():
        assert sorted(ids[k] for k in allowed[where[q]].nonzero().flatten().tolist()) == sorted(seen)
    # each target is predicted from its tree parent token (5 from 2, not from the sibling 4)
    targets = {ids[t]: ids[s] for t, s in zip(mb.target_index.tolist(), mb.source_index.tolist())}
    assert targets == {4: 3, 7: 6, 9: 8}


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 10_000), budget=st.integers(1, 400))
def test_packing_maps_every_position_and_respects_the_budget(seed, budget):
    samples = per_call_samples(random_batch(seed, Shape(groups=2, group_size=3, turns=4)))
    batch = build_tree_batch(samples, budget)
    seen = []
    for mb in batch.micro_batches:
        longest = max(len(s.input_ids) for s in mb.samples)
        assert mb.length <= budget or len(mb.samples) == 1 and mb.length == longest
        ids = mb.input_ids[0]
        allowed = dense_tree_mask(mb.subtree_end)
        for row, s in enumerate(mb.samples):
            n = len(s.input_ids)
            index = mb.row_packed[row, :n]
            assert ids[index].tolist() == s.input_ids  # every position maps to its token ...
            assert mb.position_ids[0, index].tolist() == list(range(n))  # ... at its own position
            # ... and the sample's tokens see each other exactly causally
            assert torch.equal(allowed[index][:, index], torch.tril(torch.ones(n, n, dtype=torch.bool)))
            seen.append(id(s))
        # nodes are never duplicated inside a micro-batch: the row holds distinct (position, prefix) tokens
        assert mb.length == len({tuple(p) for p in _prefixes(mb)})
    assert sorted(seen) == sorted(id(s) for s in samples)  # every sample exactly once
    stats = batch.stats
    assert stats.unique_tokens <= stats.packed_tokens <= stats.sample_tokens
    if budget >= max(len(s.input_ids) for s in samples) and stats.micro_batches == 1:
        assert stats.packed_tokens == stats.unique_tokens


def _prefixes(mb):
    """The token path (root ... token) of every packed position, via the source (parent) links."""
    ids = mb.input_ids[0].tolist()
    ends = mb.subtree_end.tolist()
    out = []
    for q in range(len(ids)):
        out.append([ids[k] for k in range(q + 1) if q < ends[k]])
    return out


def test_targets_follow_the_loss_mask_and_are_shared_when_identical():
    shared = [5, 6, 7]
    samples = [sample(shared + [1], adv=1.0), sample(shared + [1], adv=-1.0), sample(shared + [2, 3], [0, 0, 0, 1, 0])]
    mb = build_tree_batch(samples, 100).micro_batches[0]
    assert mb.target_index.numel() == 2  # token 1 after the prefix (two samples train it), token 2
    assert mb.num_tokens == 3
    rows = {i: s for i, s in enumerate(mb.samples)}
    for row, s in rows.items():
        assert mb.loss_mask[row].tolist()[: len(s.input_ids)] == [float(m) for m in s.loss_mask]
        assert set(mb.advantages[row][mb.loss_mask[row] > 0].tolist()) == {s.advantages[0]}


def test_first_token_is_never_a_target():
    mb = build_tree_batch([sample([4, 5], [1, 1])], 10).micro_batches[0]
    assert mb.loss_mask[0].tolist() == [0.0, 1.0]


def test_duplicates_only_the_ancestors_a_split_micro_batch_needs():
    prompt = list(range(10, 30))  # 20 shared tokens
    samples = [sample(prompt + [i, i + 1]) for i in range(1, 9, 2)]  # 4 branches of 2
    batch = build_tree_batch(samples, 20 + 2 * 2)  # room for the prompt + 2 branches
    assert batch.stats.micro_batches == 2
    assert [mb.length for mb in batch.micro_batches] == [24, 24]
    assert batch.stats.duplicated_tokens == 20  # the prompt, once more; no branch is duplicated
    assert batch.stats.reduction == pytest.approx(88 / 48)


def test_context_rewrite_breaks_the_chain_but_keeps_the_shared_system_prompt():
    shape = Shape(groups=1, group_size=1, turns=6, rewrite_prob=1.0, subagents=0)
    traj = random_batch(3, shape)[0][0]
    n = len(traj.calls)
    chains = chain_samples(traj, [1.0] * n)
    assert len(chains) == n >= 2  # every call after a rewrite breaks the chain
    batch = build_tree_batch(chains, 10_000)
    mb = batch.micro_batches[0]
    assert int((mb.position_ids[0] == 0).sum()) == 1  # the kept system prompt is still one shared root
    system = shape.prompt_len // 2
    assert batch.stats.unique_tokens <= batch.stats.sample_tokens - (n - 1) * system


def test_alignment_padding_is_inert():
    mb = build_tree_batch([sample([1, 2, 3]), sample([1, 2, 4])], 100, pad_to_multiple=8, pad_id=0).micro_batches[0]
    assert mb.length == 8 and mb.real_length == 4
    allowed = dense_tree_mask(mb.subtree_end)
    for p in range(4, 8):
        assert allowed[p].nonzero().flatten().tolist() == [p]  # a pad sees only itself
        assert not allowed[:4, p].any()  # and nobody sees a pad
    assert int(mb.target_index.max()) < 4


def test_bad_input_is_rejected_with_a_message():
    with pytest.raises(ValueError, match="token_budget"):
        build_tree_batch([sample([1, 2])], 0)
    with pytest.raises(ValueError, match="empty"):
        PrefixTree().insert([])


def test_radix_insert_is_fast_for_long_shared_contexts():
    rng = np.random.default_rng(0)
    base = rng.integers(1, 1000, 20_000).tolist()
    tree = PrefixTree()
    for i in range(64):  # 64 growing calls of one 20k-token trajectory: 640k sample tokens
        tree.insert(base[: 300 * (i + 1) + 500])
    tree.finalize()
    assert tree.num_tokens == 300 * 64 + 500
