"""Lossless speculative sampling: propose draft tokens, then accept or correct them against the target.

Why this is lossless (Leviathan et al. 2023; Chen et al. 2023): a draft token d drawn from the
draft distribution q is kept with probability min(1, p(d)/q(d)); when it is refused, a token is
drawn from the residual normalise(max(0, p - q)). Summed over d, the token that comes out follows p
exactly, whatever q is, so a poor draft costs speed, never the sampling distribution. p and q are
the *filtered* distributions (the request's temperature, top-k and top-p, exactly what plain
sampling draws from, engine/sampling.py). Greedy rows keep a draft while it equals the target's
argmax, which reproduces plain greedy decoding token for token.

Every random draw comes from the request's own generator, in an order that depends only on that
request (its drafts and acceptances), so a seeded request samples the same tokens whatever else
shares its batch. The engine (engine/llm.py) runs the forwards; this module is only the maths.
"""

from __future__ import annotations

import torch

from forgerl.engine.base import SamplingParams
from forgerl.engine.sampling import filter_logits


def filtered_probs(logits: torch.Tensor, params: SamplingParams) -> torch.Tensor:
    """softmax of the request's filtered logits: [rows, V] float32 -> [rows, V]."""
    return torch.softmax(filter_logits(logits.float(), [params] * logits.shape[0]), dim=-1)


def sample_index(probs: torch.Tensor, generator: torch.Generator) -> int:
    """One token from `probs` [V] (not necessarily normalised) by inverse CDF, one uniform draw."""
    cdf = torch.cumsum(probs, dim=-1)
    u = torch.rand((), generator=generator, device=probs.device)
    index = torch.searchsorted(cdf, (u * cdf[-1]).reshape(1), right=True)
    return min(int(index), probs.shape[-1] - 1)


def acceptance_probability(p: torch.Tensor, q: torch.Tensor) -> torch.Tensor:
    """min(1, p/q) per token [V]; tokens the draft never proposes (q = 0) get 0."""
    return torch.where(q > 0, torch.clamp(p / q.clamp(min=torch.finfo(q.dtype).tiny), max=1.0), torch.zeros_like(p))


def residual(p: torch.Tensor, q: torch.Tensor) -> torch.Tensor:
    """normalise(max(0, p - q)): what a refused draft is replaced by. Where it has no mass (p and q
    equal up to rounding, so a refusal is a rounding event) it falls back to p."""
    rest = torch.clamp(p - q, min=0.0)
    total = rest.sum()
    return rest / total if float(total) > 1e-12 else p


def output_distribution(p: torch.Tensor, q: torch.Tensor) -> torch.Tensor:
    """The distribution of the token one accept/resample round emits when its draft follows q,
    computed analytically from the same two rules `verify_row` applies: sum_d q(d) a(d) [x = d] +
    (1 - sum_d q(d) a(d)) residual(x). Equals p (the test enumerates it)."""
    accept = q * acceptance_probability(p, q)
    return accept + (1.0 - accept.sum()) * residual(p, q)


def propose(logits: torch.Tensor, params: list[SamplingParams], generators: list[torch.Generator],
            active: list[bool]) -> tuple[list[int], list[torch.Tensor | None]]:
    """One draft token per row from draft logits [rows, V]: argmax for greedy rows, else a draw
    from the filtered draft distribution q, which is returned for the acceptance test. Inactive
    rows (drafting no more this round) get -1 and draw nothing from their generator."""
    logits = logits.float()
    tokens: list[int] = []
    qs: list[torch.Tensor | None] = []
    greedy_choice = logits.argmax(dim=-1).tolist()
    for r, (prm, gen, on) in enumerate(zip(params, generators, active)):
        if not on:
            tokens.append(-1)
            qs.append(None)
        elif prm.temperature == 0:
            tokens.append(greedy_choice[r])
            qs.append(None)
        else:
            q = filtered_probs(logits[r:r + 1], prm)[0]
            tokens.append(sample_index(q, gen))
            qs.append(q)
    return tokens, qs


def verify_row(target_logits: torch.Tensor, drafts: list[int], qs: list[torch.Tensor | None],
               params: SamplingParams, generator: torch.Generator,
               best: list[int] | None = None) -> tuple[list[int], int]:
    """Accept a prefix of `drafts` against the target and add one token of the target's own.

    target_logits [m+1, V]: row j is the target's next-token logits after the context plus
    drafts[:j]. Returns (emitted tokens, how many drafts were accepted): the accepted drafts, then
    either the correction for the first refused draft or, when all m were accepted, a bonus token
    sampled from the target's last row. Always emits at least one token. `best`: the argmax of
    each row of `target_logits`, when the caller has it already (greedy rows only read that)."""
    m = len(drafts)
    if params.temperature == 0:
        best = target_logits.argmax(dim=-1).tolist() if best is None else best
        accepted = 0
        while accepted < m and drafts[accepted] == best[accepted]:
            accepted += 1
        return drafts[:accepted] + [best[accepted]], accepted
    p = filtered_probs(target_logits, params)
    for j, d in enumerate(drafts):
        q = qs[j]
        assert q is not None, "a sampled draft must come with its draft distribution"
        u = float(torch.rand((), generator=generator, device=p.device))
        if u * float(q[d]) < float(p[j, d]):  # u < p/q: keep the draft
            continue
        return drafts[:j] + [sample_index(residual(p[j], q), generator)], j
    return drafts + [sample_index(p[m], generator)], m


DEPTH_COST = 0.5
"""What drafting one more depth costs, in plain decode steps: an MTP depth (one decoder layer, its
norms, projection and the LM head) plus one more token in the verify forward. Measured on the
default policy on CPU (issue 23): about 0.5 at batch 1, nearer 0.8 at batch 16 over long agent
contexts. A fixed number, not a timing, so the decision below depends only on the request's own
tokens and stays reproducible (a seeded request samples the same whatever shares its batch)."""

PROBE_EVERY = 32
"""Every this many rounds a request drafts one depth more than its estimates say pays, so an
estimate that fell (stale heads) recovers once pushed weights make the heads good again. One
depth, not all: with useless heads a probe then costs about one depth, not the whole draft."""

MEMORY = 0.95
"""Weight each earlier round keeps per round in a request's acceptance counts (they describe about
the last 20 rounds): steady enough that a few unlucky refusals of good heads leave a depth on,
quick enough that heads that went stale mid-session stop drafting within about ten rounds."""

PRIOR = 1.5
"""Imagined kept drafts every estimate starts with: a new request drafts its full depth, useless
heads stop after two refused rounds, one early refusal of good heads leaves the depth on."""


class DraftDepth:
    """How many drafts pay for one request: per depth k, an estimate of the chance that drafts
    1..k are all accepted, from decayed counts of this request's own rounds plus PRIOR imagined
    kept drafts (so a new estimate starts at 1).

    Drafting depth k costs DEPTH_COST plain steps and gains one token with that chance, so the
    request drafts the leading depths whose chance exceeds the cost. A session's next request starts
    from where its last one left off (the engine hands the estimate on with the slot; it starts over
    after a weight push). Lossless by construction: fewer drafts never change what is sampled, only
    how many tokens one forward yields. Per request (not engine-wide) so a seeded request draws the
    same tokens whatever shares its batch."""

    def __init__(self, depths: int) -> None:
        self.kept = [0.0] * depths
        self.tried = [0.0] * depths
        self.rounds = 0

    @property
    def rates(self) -> list[float]:
        return [(kept + PRIOR) / (tried + PRIOR) for kept, tried in zip(self.kept, self.tried)]

    def limit(self) -> int:
        """Drafts for this round: the leading depths that pay, one more on a probe round."""
        k, rates = 0, self.rates
        while k < len(rates) and rates[k] > DEPTH_COST:
            k += 1
        probe = self.rounds % PROBE_EVERY == PROBE_EVERY - 1
        return min(len(rates), k + int(probe))

    def record(self, drafted: int, accepted: int) -> None:
        """One round's outcome: `drafted` drafts proposed, the first `accepted` of them kept."""
        self.rounds += 1
        for k in range(drafted):
            self.kept[k] = MEMORY * self.kept[k] + float(k < accepted)
            self.tried[k] = MEMORY * self.tried[k] + 1.0
