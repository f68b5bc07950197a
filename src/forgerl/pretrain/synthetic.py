"""Synthetic reading tasks: text whose continuation can only be written by reading the context.

Why: the tiny default policy, trained only on scripted-solver conversations, memorised tool names
and prices instead of copying them (docs/experiments.md, issue 7; issue 20). Each task here puts a
fact in the context (a random string, invented key/value pairs, a name defined earlier, a long
number) and then asks for it back in one of several phrasings, so the only way to lower the loss
on the answer is an in-context copy or lookup. The facts are random (invented words from
perturb/naming.py's syllables, random digits), so nothing can be memorised across documents.

Seeds: document `n` of a corpus with run seed `s` is generated from `s * SEED_STRIDE + n`, and every
such seed stays below `SEED_LIMIT` (10**9), under the probes' PROBE_SEED_BASE (2 * 10**9,
forgerl/probes), so a probe task is never a training document. Names never use the PascalCase style,
which the perturbation experiment holds out.
"""

from __future__ import annotations

import json
import random
import re
import string
from collections.abc import Callable
from dataclasses import dataclass

from forgerl.errors import ConfigError
from forgerl.perturb.naming import ONSETS, VOWELS, join

SEED_STRIDE = 10_000_000
"""Synthetic documents one run seed may draw (seed s uses [s * SEED_STRIDE, (s + 1) * SEED_STRIDE))."""
SEED_LIMIT = 1_000_000_000
"""Every synthetic seed is below this; the probes' seeds start at PROBE_SEED_BASE = 2 * 10**9."""
NAME_STYLES = ("snake", "camel", "kebab", "upper")
"""How invented multi-word names are joined (PascalCase is the perturbation experiment's held-out style)."""
KINDS = ("copy", "lookup", "name", "digits")
"""The kinds a `synthetic` document draws from (MAKERS below has one more: `mention`)."""


@dataclass(frozen=True)
class ReadingTask:
    """One task: `context` holds the fact, `cue` asks for it, `answer` is what follows the cue."""

    kind: str
    context: str
    cue: str
    answer: str
    key: str = ""
    """For lookups: the key asked about (it occurs exactly once in the context)."""

    @property
    def text(self) -> str:
        return self.context + self.cue + self.answer


def document_seed(run_seed: int, index: int) -> int:
    """The seed of synthetic document `index` for `run_seed`; a ConfigError when it would leave the
    training range (so it can never reach the probes' seeds)."""
    if not 0 <= run_seed < SEED_LIMIT // SEED_STRIDE:
        raise ConfigError(f"pre-training seed {run_seed} is out of range: synthetic documents need 0 <= seed < "
                          f"{SEED_LIMIT // SEED_STRIDE} (their seeds must stay below {SEED_LIMIT:,}, under the probes')",
                          hint="pass a --seed between 0 and 99")
    if not 0 <= index < SEED_STRIDE:
        raise ConfigError(f"synthetic document {index:,} is past the {SEED_STRIDE:,} one run seed may draw",
                          hint="train on fewer tokens, or give the synthetic source a smaller weight")
    return run_seed * SEED_STRIDE + index


def word(rng: random.Random) -> str:
    """An invented word of 2-3 syllables (perturb/naming.py's `coined` alphabet)."""
    return "".join(rng.choice(ONSETS) + rng.choice(VOWELS) for _ in range(rng.randint(2, 3)))


def name(rng: random.Random) -> str:
    """An invented 1-3 word identifier in a non-held-out style."""
    return join([word(rng) for _ in range(rng.randint(1, 3))], rng.choice(NAME_STYLES))


def random_string(rng: random.Random) -> str:
    """Something to copy verbatim: letters and digits, a hex id, a path, or invented words."""
    kind = rng.randrange(4)
    if kind == 0:
        return "".join(rng.choice(string.ascii_letters + string.digits) for _ in range(rng.randint(4, 16)))
    if kind == 1:
        return f"{rng.choice(['call', 'id', 'tx', 'job'])}_{rng.randrange(16 ** 8):08x}"
    if kind == 2:
        return "/".join(word(rng) for _ in range(rng.randint(2, 4))) + rng.choice([".py", ".txt", ".json", ""])
    return " ".join(word(rng) for _ in range(rng.randint(2, 5)))


def number(rng: random.Random, lo: int = 1, hi: int = 6) -> str:
    """A number with `lo`-`hi` digits before an optional decimal part."""
    whole = str(rng.randint(1, 9)) + "".join(rng.choice(string.digits) for _ in range(rng.randint(lo, hi) - 1))
    return whole + ("." + "".join(rng.choice(string.digits) for _ in range(rng.randint(1, 2))) if rng.random() < 0.3 else "")


def copy_task(rng: random.Random) -> ReadingTask:
    s = random_string(rng)
    context, cue = rng.choice([
        (f"Copy this exactly: {s}\n", "Copy: "),
        (f"Repeat after me: {s}\n", "> "),
        (f'string = "{s}"\n', 'print(string)  # prints '),
        (f"The code word is {s}.\n", "The code word, once more: "),
        (f"<text>{s}</text>\n", "Echo: "),
    ])
    return ReadingTask("copy", context, cue, s)


def _render_pairs(rng: random.Random, pairs: list[tuple[str, str]]) -> str:
    layout = rng.randrange(5)
    if layout == 0:
        return "".join(f"{k}: {v}\n" for k, v in pairs)
    if layout == 1:
        return "".join(f"{k} = {v}\n" for k, v in pairs)
    if layout == 2:
        return json.dumps(dict(pairs)) + "\n"
    if layout == 3:
        return "| key | value |\n|---|---|\n" + "".join(f"| {k} | {v} |\n" for k, v in pairs)
    return "".join(f"{k} -> {v}\n" for k, v in pairs)


def lookup_task(rng: random.Random) -> ReadingTask:
    """Invented keys with numbers or words as values; the asked key's position sets the distance."""
    keys: list[str] = []
    while len(keys) < rng.randint(2, 24):
        k = name(rng)
        if not any(k in other or other in k for other in keys):  # no key inside another: one match only
            keys.append(k)
    values = [number(rng) if rng.random() < 0.6 else word(rng) for _ in keys]
    key = rng.choice(keys)
    answer = values[keys.index(key)]
    cue = rng.choice([f"What is the value of {key}? Answer: ", f"{key} = ", f"lookup({key!r}) -> ",
                      f"The value for {key} is ", f"Q: {key}?\nA: "])
    return ReadingTask("lookup", _render_pairs(rng, list(zip(keys, values, strict=True))), cue, answer, key=key)


def name_task(rng: random.Random) -> ReadingTask:
    """A name defined once, some unrelated text, then the name written again."""
    n, what = name(rng), rng.choice(["function", "tool", "variable", "field", "command"])
    filler = " ".join(f"{word(rng)} {number(rng, 1, 3)}." for _ in range(rng.randint(0, 8)))
    context = rng.choice([
        f"The {what} is called {n}. {filler}\n",
        f'{{"name": "{n}", "description": "a {what}"}}\n{filler}\n',
        f"Define {what} {n}. {filler}\n",
    ])
    cue = rng.choice([f"Now use the {what}: ", f"To run it, call the {what} ", "Its name: "])
    return ReadingTask("name", context, cue, n)


def digits_task(rng: random.Random) -> ReadingTask:
    """A long number copied digit for digit, plain or inside a sentence."""
    d = number(rng, 4, 24)
    context, cue = rng.choice([
        (f"Number: {d}\n", "The same number: "),
        (f"The total was {d} dollars.\n", "Total: "),
        (f"result = {d}\n", "result == "),
        (f"Write down {d}.\n", "Written: "),
    ])
    return ReadingTask("digits", context, cue, d)


PROPER_ONSETS = ("b", "d", "f", "g", "h", "j", "k", "l", "m", "n", "p", "r", "s", "t", "v", "w", "z",
                 "br", "dr", "gl", "kr", "pl", "st", "tr", "sk", "ch", "sh", "fl", "gr", "th")
PROPER_CODAS = ("", "", "", "n", "r", "l", "s", "k", "m", "x", "t")
"""A wider syllable alphabet than `word`'s (clusters, closed syllables): names as users coin them."""
THINGS = ("project", "tool", "city", "robot", "river", "team", "ship", "planet", "village", "server",
          "company", "song", "book", "horse", "bridge", "lake", "street", "game", "bird", "engine",
          "library", "island", "school", "market", "garden", "machine", "festival", "mountain")
"""What a named entity is; one entity per thing in a task, so the question picks out one name."""
INTRODUCTIONS = ("The {thing} is called {name}.", "{name} is the name of the {thing}.", "Meet {name}, the new {thing}.",
                 "We named the {thing} {name}.", "{thing}: {name}", "Our {thing} goes by {name}.",
                 '{{"{thing}": "{name}"}}', "The {thing} ({name}) is ready.", "There is a {thing} named {name}.")
QUESTIONS = ("Q: What name does the {thing} have?\nA: ", "The name of the {thing} is ", "Which name was given to the {thing}? ",
             "Tell me the {thing}'s name. Answer with just the name.\n", "{thing} = ", "Name of the {thing}: ",
             "So the {thing} is ", "What do we call the {thing}? We call it ", "Who or what is the {thing}? ")
"""Never the probes' own wording ("What is the {thing} called? Reply with the name only.")."""


def proper_name(rng: random.Random) -> str:
    """An invented name of 1-3 syllables from the wider alphabet, as a user might write it:
    Capitalised, lower case, upper case, or two words joined snake/kebab/camel (never multi-word
    PascalCase, which the perturbation experiment holds out)."""
    def syllables() -> str:
        return "".join(rng.choice(PROPER_ONSETS) + rng.choice(VOWELS) + rng.choice(PROPER_CODAS)
                       for _ in range(rng.randint(1, 3)))
    style = rng.random()
    if style < 0.5:
        return syllables().capitalize()
    if style < 0.7:
        return syllables()
    if style < 0.8:
        return syllables().upper()
    return join([syllables(), syllables()], rng.choice(("snake", "kebab", "camel")))


def mention_task(rng: random.Random) -> ReadingTask:
    """1-4 entities named in varied sentences among filler, then a question about one of them.

    Why: the probes showed copying bound to the corpus's own templates: a name after "Its name:" was
    copied, the same name after "What is the city called? It is" was not, and names from a wider
    alphabet (closed syllables, capitals) were copied worse than `word`'s (docs/reading.md). Here
    the question's wording is drawn apart from the introduction's, so only reading the entity's name
    from where the context said it answers."""
    things = rng.sample(THINGS, rng.randint(1, 4))
    names: list[str] = []
    while len(names) < len(things):
        n = proper_name(rng)
        if not any(n.lower() in o.lower() or o.lower() in n.lower() for o in names):
            names.append(n)
    sentences = [rng.choice(INTRODUCTIONS).format(thing=t, name=n) for t, n in zip(things, names, strict=True)]
    sentences += [f"{word(rng).capitalize()} {rng.choice(('is', 'was', 'has'))} {number(rng, 1, 3)}." for _ in range(rng.randint(0, 4))]
    rng.shuffle(sentences)
    asked = rng.randrange(len(things))
    cue = rng.choice(QUESTIONS).format(thing=things[asked])
    return ReadingTask("mention", " ".join(sentences) + "\n", cue, names[asked], key=things[asked])


MAKERS: dict[str, Callable[[random.Random], ReadingTask]] = {
    "copy": copy_task, "lookup": lookup_task, "name": name_task, "digits": digits_task, "mention": mention_task}
"""Every task maker. A synthetic document draws from KINDS only (so the documents of a seed never
change when a kind is added); `mention` lives in its own source (`mentions`) and in SFT's turns."""


def mentions_text(seed: str) -> str:
    """A `mentions` corpus document: 2-6 mention tasks, each answered (seeds "mentions:<run seed>:<index>")."""
    rng = random.Random(seed)
    return "\n".join(mention_task(rng).text for _ in range(rng.randint(2, 6)))


def document_tasks(seed: int) -> list[ReadingTask]:
    """The 2-6 tasks of the synthetic document generated from `seed` (kinds drawn uniformly)."""
    rng = random.Random(seed)
    return [MAKERS[rng.choice(KINDS)](rng) for _ in range(rng.randint(2, 6))]


def document_text(seed: int) -> str:
    return "\n".join(task.text for task in document_tasks(seed))


REPEAT_PIECES = (2, 8)
"""Pieces (invented words and names, numbers, ids) in one repeated span."""


def long_number(rng: random.Random) -> str:
    """A number of 1-24 digits (and maybe a decimal part): the `numbers` source's pieces."""
    return number(rng, 1, 24)


def repeat_text(seed: str, numbers_only: bool = False) -> str:
    """A span of random pieces written 2-4 times: an induction warm-up. With `numbers_only` every
    piece is a number (the `numbers` source).

    Why: a tiny model learns in-context copying (an induction circuit) only after a plateau whose
    length grows with how few of its targets need copying; in the reading tasks only the answers do,
    and a 1.8M-token mixed run stayed on the plateau. Here every token after the span's first writing
    is a copy target, drawn from the same pieces the reading tasks use; with 85% of the tokens from
    here and 4 x 128 tokens per step the circuit appeared after ~5M tokens (docs/reading.md). `seed` is a string ("repeat:<run seed>:<index>"), a stream apart
    from the integer seeds of the reading tasks and the probes.

    Why `numbers_only`: a model copies a token only once it has often been trained to predict it, and
    the digit tokenizer's 1,000 three-digit tokens are each a few hundred of 3.7M tokens in the mix
    above; copied, they were right 1% of the time (docs/reading.md). Spans of numbers make every
    digit token a frequent copy target."""
    rng = random.Random(seed)
    makers = (long_number,) if numbers_only else (word, name, random_string, number)
    pieces = [rng.choice(makers)(rng) for _ in range(rng.randint(*REPEAT_PIECES))]
    span = rng.choice((" ", ", ", "\n")).join(pieces)
    return rng.choice(("\n", "\n\n", " ", "\n---\n")).join([span] * rng.randint(2, 4))


def problems(task: ReadingTask) -> list[str]:
    """What makes `task` unanswerable from its context (empty when it is fine): the checker."""
    found = []
    if not task.answer or task.answer not in task.context:
        found.append(f"answer {task.answer!r} is not in the context")
    if task.kind == "lookup":
        hits = len(re.findall(rf"(?<![\w-]){re.escape(task.key)}(?![\w-])", task.context))
        if hits != 1:
            found.append(f"key {task.key!r} occurs {hits} times in the context")
    return found
