"""The pre-training corpus's named sources: each a deterministic function from a document index to
token ids, so a corpus position is a few integers (corpus.py) and a resumed run reads exactly the
documents an uninterrupted one would have.

* `code`: the Python standard library's own sources and docstrings (`sysconfig.get_paths()["stdlib"]`),
  which ship with every Python; the same files, so the same documents, on every machine with the
  same Python version (3.11.7 here; another 3.11.x differs in a few files). Test suites, site-packages
  and files over `MAX_CODE_BYTES` are skipped; files are cut at blank lines into chunks of at most
  `CHUNK_CHARS` characters (so one long module does not fill whole batches), and the chunks are read
  in an order shuffled by the run seed, reshuffled each epoch.
* `synthetic`: reading tasks (synthetic.py).
* `repeat`: a span of random words, names, ids and numbers written two to four times, so that every
  token after its first writing is a copy (synthetic.repeat_text): what made in-context copying
  appear (docs/reading.md).
* `numbers`: the same with numbers only, so that every digit token is often a copy target.
* `mentions`: invented names (a wider alphabet, capitalised as names are) introduced in varied
  sentences and asked back in other words (synthetic.mention_task), so copying a name does not
  hang on one template.
* `episodes`: the tool-reasoning family's scripted solver played under perturbed scaffolds
  (perturb/gold.py: renamed tools and parameters, rewritten prompts, response layouts, chat
  formats, injected failures it retries), with the solver's varied styles; the held-out scaffolds
  (json_tools, PascalCase, table responses) are never drawn. Task seeds stay below the trainer's
  HELD_OUT_SEED_BASE, so no evaluation task is a pre-training document.
"""

from __future__ import annotations

import asyncio
import functools
import hashlib
import random
import sysconfig
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from forgerl.chat import get_format
from forgerl.envs.base import make_env
from forgerl.envs.suites import HELD_OUT_SEED_BASE
from forgerl.errors import ConfigError
from forgerl.perturb.gold import perturbed_gold_conversation
from forgerl.perturb.spec import PerturbSpec
from forgerl.pretrain.synthetic import document_seed, document_text, mentions_text, repeat_text
from forgerl.train.rollouts import make_task
from forgerl.train.sft import Conversation, encode_conversation, gold_conversation

MAX_CODE_BYTES = 200_000
"""Standard-library files larger than this are skipped (pydoc's topic dump, _pydecimal)."""
CHUNK_CHARS = 2_000
"""Code documents are cut at blank lines into chunks of at most this many characters (~1k tokens)."""
TEST_DIRS = frozenset({"test", "tests", "idle_test", "site-packages", "dist-packages", "__pycache__"})
EPISODE_FAMILY = "tool-reasoning"
EPISODE_STRIDE = 100_000
"""Episode documents one run seed may draw; seeds 0-99 then stay below HELD_OUT_SEED_BASE (10**7)."""
EPISODE_PERTURB = PerturbSpec.uniform(0.5, 0.5)
"""Every perturbation dimension fires with probability 0.5 per episode; default held-out scaffolds."""


class Source(Protocol):
    name: str

    def document(self, index: int) -> list[int]:
        """Token ids of document `index` (no separator); the same ids for the same index, always."""


def stdlib_files(root: Path | None = None) -> list[Path]:
    """The standard library's .py files a `code` source reads, sorted by relative path."""
    base = Path(root or sysconfig.get_paths()["stdlib"])
    found = []
    for path in base.rglob("*.py"):
        parts = path.relative_to(base).parts
        if TEST_DIRS.intersection(parts[:-1]) or parts[-1].startswith("test_") or path.stat().st_size > MAX_CODE_BYTES:
            continue
        found.append(path)
    return sorted(found, key=lambda p: p.relative_to(base).as_posix())


def chunks(text: str, limit: int = CHUNK_CHARS) -> list[str]:
    """`text` cut at blank lines into pieces of at most `limit` characters (a longer paragraph is cut
    at line ends, a longer line at `limit`); joined, the pieces give `text` back."""
    pieces: list[str] = []
    current = ""
    for line in text.splitlines(keepends=True):
        while len(line) > limit:
            if current:
                pieces.append(current)
                current = ""
            pieces.append(line[:limit])
            line = line[limit:]
        if len(current) + len(line) > limit:
            cut = current.rfind("\n\n") + 2 if "\n\n" in current else len(current)
            pieces.append(current[:cut])
            current = current[cut:]
            if len(current) + len(line) > limit:
                pieces.append(current)
                current = ""
        current += line
    if current:
        pieces.append(current)
    return [p for p in pieces if p]


@functools.lru_cache(maxsize=2)
def _code_chunks(root: str) -> tuple[str, ...]:
    out: list[str] = []
    for path in stdlib_files(Path(root)):
        try:
            text = path.read_text(encoding="utf-8")
        except (UnicodeDecodeError, OSError):
            continue
        out.extend(chunks(text))
    return tuple(out)


@dataclass
class CodeSource:
    tokenizer: Any
    seed: int
    root: str = ""
    name: str = "code"

    def __post_init__(self) -> None:
        self.root = self.root or sysconfig.get_paths()["stdlib"]
        self.chunks = _code_chunks(self.root)
        if not self.chunks:
            raise ConfigError(f"the code source found no Python files under {self.root}",
                              hint="give the `code` source weight 0 in --mix, or run with a Python whose standard "
                                   "library sources are installed")
        self._epoch: tuple[int, list[int]] | None = None

    def _order(self, epoch: int) -> list[int]:
        if self._epoch is None or self._epoch[0] != epoch:
            order = list(range(len(self.chunks)))
            random.Random(f"code:{self.seed}:{epoch}").shuffle(order)
            self._epoch = (epoch, order)
        return self._epoch[1]

    def document(self, index: int) -> list[int]:
        epoch, i = divmod(index, len(self.chunks))
        return self.tokenizer.encode(self.chunks[self._order(epoch)[i]], add_special_tokens=False)

    def fingerprint(self) -> str:
        """sha256 of the chunks' text: equal on two machines means the same code documents."""
        return hashlib.sha256("\0".join(self.chunks).encode()).hexdigest()[:16]


@dataclass
class SyntheticSource:
    tokenizer: Any
    seed: int
    name: str = "synthetic"

    def document(self, index: int) -> list[int]:
        return self.tokenizer.encode(document_text(document_seed(self.seed, index)), add_special_tokens=False)


SEEDED_TEXTS: dict[str, Callable[[str], str]] = {
    "repeat": repeat_text, "numbers": functools.partial(repeat_text, numbers_only=True), "mentions": mentions_text}
"""The sources whose document `i` is text generated from the string seed "<name>:<run seed>:<i>"."""


@dataclass
class SeededTextSource:
    """`repeat`, `numbers` or `mentions` (SEEDED_TEXTS): each its own stream of string seeds, apart
    from the synthetic documents' integer seeds and the probes'."""

    tokenizer: Any
    seed: int
    name: str = "repeat"

    def document(self, index: int) -> list[int]:
        text = SEEDED_TEXTS[self.name](f"{self.name}:{self.seed}:{index}")
        return self.tokenizer.encode(text, add_special_tokens=False)


@dataclass
class EpisodeSource:
    tokenizer: Any
    seed: int
    chat_format: str = "minimax_m2"
    name: str = "episodes"

    def task_seed(self, index: int) -> int:
        """Task seed of document `index`: seed * EPISODE_STRIDE + index, below HELD_OUT_SEED_BASE."""
        if not 0 <= index < EPISODE_STRIDE or not 0 <= self.seed < HELD_OUT_SEED_BASE // EPISODE_STRIDE:
            raise ConfigError(f"episode document {index:,} of seed {self.seed} would leave the training task seeds "
                              f"(below {HELD_OUT_SEED_BASE:,}, where held-out evaluation tasks start)",
                              hint=f"use a --seed below {HELD_OUT_SEED_BASE // EPISODE_STRIDE} and fewer than "
                                   f"{EPISODE_STRIDE:,} episode documents")
        return self.seed * EPISODE_STRIDE + index

    def document(self, index: int) -> list[int]:
        """The solver's conversation under the perturbations drawn for the task's seed; when the
        perturbed play fails the verifier (a solver that gave up), the unperturbed one."""
        seed = self.task_seed(index)
        task = make_task(EPISODE_FAMILY, seed, 1 + seed % 3)[1]
        played = asyncio.run(perturbed_gold_conversation(EPISODE_FAMILY, task, EPISODE_PERTURB, seed, varied=True))
        if played.score == 1.0:
            conv = Conversation(played.messages, played.tools, played.task_id, played.chat_format)
        else:
            conv = asyncio.run(gold_conversation(make_env(EPISODE_FAMILY, seed), task, seed=seed, varied=True))
        ids, _ = encode_conversation(self.tokenizer, get_format(self.chat_format), conv)
        return ids


SOURCES = ("code", "synthetic", "episodes", "repeat", "numbers", "mentions")


def make_source(name: str, tokenizer: Any, seed: int) -> Source:
    if name == "code":
        return CodeSource(tokenizer, seed)
    if name == "synthetic":
        return SyntheticSource(tokenizer, seed)
    if name == "episodes":
        return EpisodeSource(tokenizer, seed)
    if name in SEEDED_TEXTS:
        return SeededTextSource(tokenizer, seed, name)
    raise ConfigError(f"unknown corpus source {name!r}", hint=f"choose from {', '.join(SOURCES)}")
