"""The offline proposer: successive halving over the declared space (Jamieson & Talwalkar 2016).

Many candidates are measured cheaply, the best fraction 1/eta goes on to a measurement eta times
larger, until one candidate is measured at full fidelity and the loop compares it with the incumbent.
What grows: training steps when the search trains (the validation tasks stay whole, the cheaper
part), the number of validation tasks when it does not (a scaffold-only search). Candidates are
drawn with a seeded sampler (the whole space when it is smaller than the first rung). A doctor
finding's config change on a survivor seeds one extra candidate into the next rung.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass

from pydantic import BaseModel, ConfigDict, Field

from forgerl.evolve.propose import Batch, Outcome, Proposal, SearchState
from forgerl.evolve.space import Candidate


class HalvingSettings(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    candidates: int = Field(8, ge=1)
    """Candidates in the first rung."""
    eta: int = Field(2, ge=2)
    """1/eta of a rung goes on; the next rung measures eta times more."""
    min_tasks: int = Field(4, ge=1)
    """A scaffold-only rung measures at least this many validation tasks."""
    seed: int = Field(0, ge=0)
    """The sampler's seed."""


@dataclass(frozen=True)
class Rung:
    candidates: int
    steps: int
    tasks: int


def schedule(candidates: int, eta: int, max_steps: int, max_tasks: int, min_tasks: int = 4) -> list[Rung]:
    """The rungs: counts n, n//eta, ... down to 1; the last rung at full fidelity, each earlier one eta times less."""
    counts = [candidates]
    while counts[-1] > 1:
        counts.append(max(1, counts[-1] // eta))
    rungs = []
    for i, count in enumerate(counts):
        shrink = eta ** (len(counts) - 1 - i)
        if max_steps > 0:
            rungs.append(Rung(count, max(1, math.ceil(max_steps / shrink)), max_tasks))
        else:
            rungs.append(Rung(count, 0, max(min(min_tasks, max_tasks), math.ceil(max_tasks / shrink))))
    return rungs


class HalvingProposer:
    name = "halving"

    def __init__(self, settings: HalvingSettings | None = None) -> None:
        self.settings = settings or HalvingSettings()
        self.rung = -1
        self._rungs: list[Rung] = []

    def propose(self, state: SearchState) -> Batch:
        s = self.settings
        if self.rung < 0:
            self._rungs = schedule(s.candidates, s.eta, state.budget.steps_per_run, state.objective.validation_tasks,
                                   s.min_tasks)
        self.rung += 1
        if self.rung >= len(self._rungs):
            return Batch(done=True)
        rung = self._rungs[self.rung]
        chosen = self._first(state, rung.candidates) if self.rung == 0 else self._survivors(state, rung.candidates)
        if not chosen:
            return Batch(done=True)
        source = f"halving rung {self.rung}"
        proposals = [Proposal(c, rung.steps, rung.tasks, source, why) for c, why in chosen]
        proposals += [Proposal(c, rung.steps, rung.tasks, f"{source} doctor:{code}", why)
                      for c, code, why in self._from_findings(state, {p.candidate.key() for p in proposals})]
        return Batch(proposals, done=self.rung == len(self._rungs) - 1)

    def _first(self, state: SearchState, n: int) -> list[tuple[Candidate, str]]:
        seen, rng, out = state.seen(), random.Random(self.settings.seed), []
        for _ in range(50 * n):
            if len(out) == n:
                break
            c = state.space.sample(rng)
            if c.key() not in seen:
                seen.add(c.key())
                out.append((c, f"drawn with seed {self.settings.seed}"))
        return out

    def _previous(self, state: SearchState) -> list[Outcome]:
        """The previous rung's outcomes (its drawn or surviving candidates and its doctor-seeded one)."""
        source = f"halving rung {self.rung - 1}"
        return [o for o in state.history if o.proposal.source == source or o.proposal.source.startswith(source + " ")]

    def _survivors(self, state: SearchState, n: int) -> list[tuple[Candidate, str]]:
        previous = self._previous(state)
        sign = 1 if state.objective.direction == "max" else -1
        ranked = sorted(previous, key=lambda o: -sign * o.value(state.objective))  # stable: earlier draws win ties
        return [(o.proposal.candidate, f"rank {i + 1} of {len(previous)} in rung {self.rung - 1} "
                 f"({state.objective.metric} {o.value(state.objective):.3f})") for i, o in enumerate(ranked[:n])]

    def _from_findings(self, state: SearchState, taken: set[str]) -> list[tuple[Candidate, str, str]]:
        """At most one extra candidate per rung: the best previous outcome's first finding with a config change."""
        if self.rung == 0:
            return []
        sign = 1 if state.objective.direction == "max" else -1
        for outcome in sorted(self._previous(state), key=lambda o: -sign * o.value(state.objective)):
            for finding in outcome.findings:
                if not finding.config_change:
                    continue
                c = Candidate(config={**outcome.proposal.candidate.config, **finding.config_change},
                              scaffold=outcome.proposal.candidate.scaffold)
                if c.key() not in taken and c.key() not in state.seen():
                    return [(c, finding.code, f"doctor: {finding.title}; {finding.suggestion}")]
        return []
