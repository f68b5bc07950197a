"""The pre-training stream: named sources mixed by weight, packed into fixed-length rows.

Mixing is by tokens, deterministically: the next document comes from the source furthest below its
share (weight x tokens so far - its tokens so far; ties go to the first in `--mix` order), so every
source's share of the stream is within one document of its weight at every point, with no random
draw to store. Each document is followed by the separator (the tokenizer's EOS) and the stream is
cut into rows of `seq_len` tokens, a document running on into the next row where it does not fit:
every token and separator lands in exactly one row, in order.

The position (`CorpusState`: the next document index and the tokens taken per source, and the
unfinished document's rest) is a few integers and one partial document; with the sources'
determinism it is all a checkpoint needs to continue the stream exactly.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from forgerl.errors import ConfigError
from forgerl.pretrain.sources import SOURCES, Source


def parse_mix(text: str) -> dict[str, float]:
    """`--mix code=0.3,synthetic=0.4,episodes=0.3` as normalised weights (zero weights dropped)."""
    weights: dict[str, float] = {}
    for part in (p.strip() for p in text.split(",") if p.strip()):
        source, eq, value = part.partition("=")
        try:
            weight = float(value) if eq else float("nan")
        except ValueError:
            weight = float("nan")
        if not weight >= 0:
            raise ConfigError(f"--mix entry {part!r} is not name=weight with a weight >= 0",
                              hint="write e.g. --mix code=0.3,synthetic=0.4,episodes=0.3")
        if source.strip() not in SOURCES:
            raise ConfigError(f"--mix names an unknown source {source.strip()!r}", hint=f"choose from {', '.join(SOURCES)}")
        weights[source.strip()] = weight
    total = sum(weights.values())
    if total <= 0:
        raise ConfigError(f"--mix {text!r} gives no source a positive weight",
                          hint="give at least one of code, synthetic, episodes a weight above 0")
    return {name: w / total for name, w in weights.items() if w > 0}


@dataclass
class CorpusState:
    """Where the stream is: per source, the next document and the tokens taken (separators
    included), and the rest of the document the last row cut."""

    docs: dict[str, int] = field(default_factory=dict)
    tokens: dict[str, int] = field(default_factory=dict)
    rest: list[int] = field(default_factory=list)
    rest_source: str = ""

    def to_json(self) -> dict[str, Any]:
        return {"docs": dict(self.docs), "tokens": dict(self.tokens), "rest": list(self.rest),
                "rest_source": self.rest_source}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> CorpusState:
        return cls(dict(data["docs"]), dict(data["tokens"]), list(data["rest"]), str(data["rest_source"]))


class Corpus:
    """Rows of token ids, each with the source of every token, from mixed sources."""

    def __init__(self, sources: Sequence[Source], weights: Mapping[str, float], separator: int,
                 state: CorpusState | None = None) -> None:
        self.sources = {s.name: s for s in sources}
        missing = [name for name in weights if name not in self.sources]
        if missing:
            raise ValueError(f"no source object for {missing}")
        self.weights = dict(weights)
        self.separator = separator
        self.state = state or CorpusState({n: 0 for n in weights}, {n: 0 for n in weights})

    def _next_source(self) -> str:
        total = sum(self.state.tokens.values())
        return max(self.weights, key=lambda n: self.weights[n] * total - self.state.tokens[n])

    def row(self, seq_len: int) -> tuple[list[int], list[str]]:
        """The next `seq_len` tokens of the stream and the source each came from."""
        ids = list(self.state.rest)
        names = [self.state.rest_source] * len(ids)
        while len(ids) < seq_len:
            name = self._next_source()
            doc = [*self.sources[name].document(self.state.docs[name]), self.separator]
            self.state.docs[name] += 1
            self.state.tokens[name] += len(doc)
            ids += doc
            names += [name] * len(doc)
        self.state.rest, self.state.rest_source = ids[seq_len:], names[-1]
        return ids[:seq_len], names[:seq_len]

    def batch(self, batch_size: int, seq_len: int) -> tuple[list[list[int]], list[list[str]]]:
        rows = [self.row(seq_len) for _ in range(batch_size)]
        return [r[0] for r in rows], [r[1] for r in rows]
