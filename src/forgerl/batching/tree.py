"""Prefix-tree merging of training samples (M2_NOTES §4, "Forge"): every shared prefix is computed once.

The G rollouts of a group share their prompt, and each LLM call of a trajectory extends the
previous one; multi-agent sub-agents share a system prompt. All of that is a token trie. We build
it as a *radix* tree (a node holds a run of tokens, so inserting a 10k-token context costs one
array comparison per shared run, not 10k dictionary look-ups) over the token ids of a list of
`TrainingSample`s, whatever they are (per-call samples, per-trajectory chains, SFT conversations).
Samples whose contexts were rewritten by a context manager simply start a new root.

A micro-batch is one packed row: an ancestor-closed set of nodes laid out in depth-first order,
`[prefix | branch | branch ...]`. With that layout the subtree of a token is a contiguous range, so
tree attention is one rule (FlexAttention's `mask_mod` on GPU, an explicit mask on CPU):

    key k is visible to query q  <=>  k <= q  and  q < subtree_end[k]

i.e. a token sees its ancestors and, causally, its own branch, never a sibling branch. Position ids
are the token's depth in the tree (a branch continues from its parent's end), so rotary embeddings
see exactly the positions of the un-merged sequence.

Every trainable position (sample s, position t) maps to one packed index; the per-sample rows the
losses take (`forgerl.rl.common` layout) are rebuilt from the packed logprobs by that map. When a
tree does not fit the token budget it is split across micro-batches, each holding whole samples;
only the ancestors a micro-batch needs are duplicated into it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import torch

from forgerl.types import TrainingSample


class _Node:
    """A run of tokens on one trie edge; `depth` is the position of its first token."""

    __slots__ = ("children", "depth", "order", "parent", "tokens")

    def __init__(self, tokens: np.ndarray, parent: _Node | None, depth: int) -> None:
        self.tokens = tokens
        self.children: dict[int, _Node] = {}
        self.parent = parent
        self.depth = depth
        self.order = -1  # depth-first preorder index, set by PrefixTree.finalize

    def path(self) -> list[_Node]:
        """Root-first list of the nodes from the root down to this one (the forest root excluded)."""
        nodes, node = [], self
        while node.parent is not None:
            nodes.append(node)
            node = node.parent
        return nodes[::-1]


def _common_prefix(a: np.ndarray, b: np.ndarray) -> int:
    n = min(len(a), len(b))
    diff = np.flatnonzero(a[:n] != b[:n])
    return int(diff[0]) if diff.size else n


class PrefixTree:
    """A radix trie over token sequences. `insert` returns the node at which the sequence ends
    (sequences always end at a node boundary: a node is split where needed)."""

    def __init__(self) -> None:
        self.root = _Node(np.zeros(0, dtype=np.int64), None, 0)
        self.nodes: list[_Node] = []  # preorder after finalize()

    def insert(self, ids: Sequence[int]) -> _Node:
        seq = np.asarray(ids, dtype=np.int64)
        if seq.size == 0:
            raise ValueError("cannot insert an empty token sequence into the prefix tree")
        node, i = self.root, 0
        while i < len(seq):
            child = node.children.get(int(seq[i]))
            if child is None:
                new = _Node(seq[i:], node, i)
                node.children[int(seq[i])] = new
                return new
            m = _common_prefix(child.tokens, seq[i:])
            if m < len(child.tokens):
                child = self._split(child, m)
            node, i = child, i + m
        return node

    @staticmethod
    def _split(node: _Node, m: int) -> _Node:
        """Cut `node` after m tokens. The *tail* keeps the node object (so ends recorded on it stay
        valid); a new head node takes the first m tokens and is returned."""
        parent = node.parent
        assert parent is not None
        head = _Node(node.tokens[:m], parent, node.depth)
        parent.children[int(node.tokens[0])] = head
        node.tokens = node.tokens[m:]
        node.depth += m
        node.parent = head
        head.children[int(node.tokens[0])] = node
        return head

    def finalize(self) -> None:
        """Number the nodes in depth-first preorder (children in token order: deterministic)."""
        self.nodes = []
        stack = sorted(self.root.children.values(), key=lambda n: -int(n.tokens[0]))
        while stack:
            node = stack.pop()
            node.order = len(self.nodes)
            self.nodes.append(node)
            stack.extend(sorted(node.children.values(), key=lambda n: -int(n.tokens[0])))

    @property
    def num_tokens(self) -> int:
        return sum(len(n.tokens) for n in self.nodes)


@dataclass
class TreeMicroBatch:
    """One packed row of an ancestor-closed set of tree nodes, plus the per-sample loss rows.

    Packed tensors (L = packed length, N = distinct trainable target tokens):
        input_ids    [1, L]  token ids in depth-first order
        position_ids [1, L]  depth of each token in the tree (rotary positions)
        subtree_end  [L]     exclusive end of each token's subtree in the row (attention rule above)
        target_index [N]     packed index of each distinct trainable target token
        source_index [N]     packed index of the hidden state that predicts it (its tree parent token)
    Loss rows (B = samples in this micro-batch, W = their longest length), same layout and meaning
    as `forgerl.model.logprobs.MicroBatch`:
        row_target   [B, W]  index into the N targets (0 where loss_mask is 0)
        row_packed   [B, W]  packed index of every position of every sample (0 past its end)
        loss_mask, old_logprobs, advantages [B, W]
    """

    samples: list[TrainingSample]
    input_ids: torch.Tensor
    position_ids: torch.Tensor
    subtree_end: torch.Tensor
    target_index: torch.Tensor
    source_index: torch.Tensor
    row_target: torch.Tensor
    row_packed: torch.Tensor
    loss_mask: torch.Tensor
    old_logprobs: torch.Tensor
    advantages: torch.Tensor
    real_length: int  # packed tokens before alignment padding
    _cache: dict = field(default_factory=dict, repr=False)

    @property
    def num_tokens(self) -> int:
        return int(self.loss_mask.sum())

    @property
    def length(self) -> int:
        return int(self.input_ids.shape[1])

    @property
    def is_chain(self) -> bool:
        """The row is one unbranched sequence (plus end padding, which no real token sees): tree
        attention on it is plain causal attention, so the model's own fused causal kernel is exact."""
        if "is_chain" not in self._cache:
            n = self.real_length
            pos = self.position_ids[0, :n]
            self._cache["is_chain"] = bool((self.subtree_end[:n] == n).all()) and bool(
                (pos == torch.arange(n, device=pos.device)).all())
        return self._cache["is_chain"]

    def to(self, device: torch.device | str) -> TreeMicroBatch:
        moved = {name: getattr(self, name).to(device) for name in
                 ("input_ids", "position_ids", "subtree_end", "target_index", "source_index", "row_target", "row_packed",
                  "loss_mask", "old_logprobs", "advantages")}
        return TreeMicroBatch(samples=self.samples, real_length=self.real_length, **moved)


@dataclass(frozen=True)
class TreeStats:
    """How much work the tree saves: `sample_tokens` (the samples as separate sequences) over
    `packed_tokens` (what the micro-batches actually run, duplicated ancestors included)."""

    samples: int
    sample_tokens: int
    unique_tokens: int
    packed_tokens: int
    micro_batches: int

    @property
    def reduction(self) -> float:
        return self.sample_tokens / max(1, self.packed_tokens)

    @property
    def duplicated_tokens(self) -> int:
        return self.packed_tokens - self.unique_tokens


@dataclass
class TreeBatch:
    micro_batches: list[TreeMicroBatch]
    stats: TreeStats


def build_tree_batch(samples: Sequence[TrainingSample], token_budget: int, *, pad_to_multiple: int = 1,
                     pad_id: int = 0) -> TreeBatch:
    """Merge `samples` into a prefix tree and pack it into micro-batches of at most `token_budget`
    packed tokens before alignment padding (a single sample longer than the budget gets a
    micro-batch of its own).

    Each sample lands whole in exactly one micro-batch, so every (sample, position) loss term is
    computed once and sequence-level losses see whole sequences. `pad_to_multiple` pads each row
    (e.g. to FlexAttention's 128-token blocks, so shapes repeat and compiled kernels are reused);
    pad tokens attend only to themselves and are never targets.
    """
    if token_budget < 1:
        raise ValueError(f"token_budget must be >= 1, got {token_budget}")
    if pad_to_multiple < 1:
        raise ValueError(f"pad_to_multiple must be >= 1, got {pad_to_multiple}")
    tree = PrefixTree()
    ends = [tree.insert(s.input_ids) for s in samples]
    tree.finalize()
    order = sorted(range(len(samples)), key=lambda i: ends[i].order)
    groups: list[tuple[list[int], dict[_Node, None]]] = []
    used = 0
    for i in order:
        path = ends[i].path()
        if groups:
            members, nodes = groups[-1]
            extra = sum(len(n.tokens) for n in path if n not in nodes)
            if used + extra <= token_budget:
                members.append(i)
                nodes.update(dict.fromkeys(path))
                used += extra
                continue
        groups.append(([i], dict.fromkeys(path)))
        used = sum(len(n.tokens) for n in path)
    micro = [_layout([samples[i] for i in members], [ends[i] for i in members], list(nodes), pad_to_multiple, pad_id)
             for members, nodes in groups]
    stats = TreeStats(samples=len(samples), sample_tokens=sum(len(s.input_ids) for s in samples),
                      unique_tokens=tree.num_tokens, packed_tokens=sum(mb.real_length for mb in micro),
                      micro_batches=len(micro))
    return TreeBatch(micro, stats)


def _layout(samples: list[TrainingSample], ends: list[_Node], nodes: list[_Node], pad_to_multiple: int,
            pad_id: int) -> TreeMicroBatch:
    nodes = sorted(nodes, key=lambda n: n.order)  # preorder of the induced (ancestor-closed) sub-forest
    start: dict[_Node, int] = {}
    end: dict[_Node, int] = {}
    stack: list[_Node] = []
    pos = 0
    for node in nodes:
        while stack and stack[-1] is not node.parent:
            end[stack.pop()] = pos
        start[node] = pos
        stack.append(node)
        pos += len(node.tokens)
    while stack:
        end[stack.pop()] = pos
    length = pos
    padded = -(-length // pad_to_multiple) * pad_to_multiple
    ids = np.full(padded, pad_id, dtype=np.int64)
    positions = np.zeros(padded, dtype=np.int64)
    subtree_end = np.arange(1, padded + 1, dtype=np.int64)  # pads: attend to themselves only
    source = np.arange(-1, padded - 1, dtype=np.int64)  # predecessor inside a node: the previous token
    for node in nodes:
        a, n = start[node], len(node.tokens)
        ids[a:a + n] = node.tokens
        positions[a:a + n] = np.arange(node.depth, node.depth + n)
        subtree_end[a:a + n] = end[node]
        parent = node.parent
        source[a] = start[parent] + len(parent.tokens) - 1 if parent in start else -1

    # Per sample: packed index of every position, then its trainable targets.
    width = max(len(s.input_ids) for s in samples)
    shape = (len(samples), width)
    loss_mask, old, adv = np.zeros(shape, np.float32), np.zeros(shape, np.float32), np.zeros(shape, np.float32)
    packed_of = np.zeros(shape, dtype=np.int64)
    for row, (sample, last) in enumerate(zip(samples, ends)):
        index = np.concatenate([np.arange(start[n], start[n] + len(n.tokens)) for n in last.path()])
        n = len(sample.input_ids)
        assert len(index) == n
        packed_of[row, :n] = index
        loss_mask[row, :n] = sample.loss_mask
        old[row, :n] = sample.old_logprobs
        adv[row, :n] = sample.advantages
    loss_mask[:, 0] = 0  # the first token has nothing to be predicted from
    rows, cols = np.nonzero(loss_mask)
    targets, inverse = np.unique(packed_of[rows, cols], return_inverse=True)
    row_target = np.zeros(shape, dtype=np.int64)
    row_target[rows, cols] = inverse
    assert (source[targets] >= 0).all()
    return TreeMicroBatch(
        samples=samples,
        input_ids=torch.from_numpy(ids)[None],
        position_ids=torch.from_numpy(positions)[None],
        subtree_end=torch.from_numpy(subtree_end),
        target_index=torch.from_numpy(targets),
        source_index=torch.from_numpy(source[targets]),
        row_target=torch.from_numpy(row_target),
        row_packed=torch.from_numpy(packed_of),
        loss_mask=torch.from_numpy(loss_mask),
        old_logprobs=torch.from_numpy(old),
        advantages=torch.from_numpy(adv),
        real_length=length,
    )
