"""Naming styles for tools and parameters: synonyms, prefixes, casing, invented words.

Names are split into words (snake_case, camelCase, kebab-case all split), then re-joined in the
style drawn for the episode. One style per episode, for tools and parameters alike: real scaffolds
are internally consistent, and a held-out style (say PascalCase) must be entirely new to the policy.
"""

from __future__ import annotations

import random
import re

# Word-level synonyms: enough to rename every built-in family's tools and parameters.
SYNONYMS: dict[str, tuple[str, ...]] = {
    "get": ("fetch", "read", "retrieve"),
    "basket": ("cart", "bag"),
    "lookup": ("find", "query", "search"),
    "calculator": ("calc", "compute", "evaluate"),
    "convert": ("transform", "rescale"),
    "submit": ("send", "finalize", "report"),
    "answer": ("result", "solution"),
    "person": ("name", "owner", "who"),
    "item": ("product", "thing", "article"),
    "table": ("field", "kind", "attribute"),
    "expression": ("expr", "formula"),
    "value": ("amount", "quantity", "number"),
    "from": ("source", "src"),
    "to": ("target", "dst"),
    "unit": ("measure", "units"),
    "read": ("open", "load"),
    "file": ("document", "doc"),
    "write": ("save", "store"),
    "list": ("show", "enumerate"),
    "run": ("execute", "exec"),
    "search": ("find", "query"),
    "send": ("dispatch", "post"),
    "email": ("mail", "message"),
    "weather": ("forecast",),
    "time": ("clock",),
    "city": ("place", "location"),
    "query": ("q", "terms"),
    "payload": ("data", "body"),
    "operation": ("action", "op", "mode"),
    "input": ("args", "params", "request"),
}
PREFIXES = ("tool_", "fn_", "do_", "api_", "x_")
ONSETS = ("b", "d", "f", "g", "k", "l", "m", "n", "p", "r", "s", "t", "v", "z", "ch", "sh", "br", "tr")
VOWELS = ("a", "e", "i", "o", "u", "ai", "ou")
"""Syllables of the `coined` style's invented words: 18 x 7 = 126 syllables, so 2-3 syllable words
number in the millions and a policy cannot memorise a rewrite; it has to read names from the prompt."""


def words(name: str) -> list[str]:
    """'get_basket' / 'getBasket' / 'Get-Basket' -> ['get', 'basket']."""
    spaced = re.sub(r"(?<=[a-z0-9])(?=[A-Z])", "_", name)
    return [w.lower() for w in re.split(r"[_\-\s.]+", spaced) if w]


def join(parts: list[str], style: str) -> str:
    if style == "camel":
        return parts[0] + "".join(p.capitalize() for p in parts[1:])
    if style == "pascal":
        return "".join(p.capitalize() for p in parts)
    if style == "kebab":
        return "-".join(parts)
    if style == "upper":
        return "_".join(parts).upper()
    return "_".join(parts)


class Namer:
    """Renames names in one style, deterministically (the same name always gets the same new name
    within an episode) and without collisions inside one namespace."""

    def __init__(self, style: str, rng: random.Random) -> None:
        self.style = style
        self.prefix = rng.choice(PREFIXES)
        self._rng = rng
        self._word_choice: dict[str, str] = {}
        self._coined: set[str] = set()

    def _coin(self, word: str) -> str:
        """An invented word of 2-3 syllables for `word`, distinct from every other coined word."""
        if word not in self._word_choice:
            new = word
            while new == word or new in self._coined:
                new = "".join(self._rng.choice(ONSETS) + self._rng.choice(VOWELS)
                              for _ in range(self._rng.randint(2, 3)))
            self._coined.add(new)
            self._word_choice[word] = new
        return self._word_choice[word]

    def _synonym(self, word: str) -> str:
        if word not in self._word_choice:
            options = SYNONYMS.get(word)
            self._word_choice[word] = self._rng.choice(options) if options else word
        return self._word_choice[word]

    def rename(self, name: str, taken: set[str] | None = None, *, prefix: bool = True) -> str:
        """The new name; `taken` holds the names already used in the same namespace (updated)."""
        parts = words(name) or [name]
        if self.style == "synonym":
            new = join([self._synonym(w) for w in parts], "snake")
        elif self.style == "coined":
            new = join([self._coin(w) for w in parts], "snake")
        elif self.style == "prefix":
            new = (self.prefix if prefix else "") + "_".join(parts)
        else:
            new = join(parts, self.style)
        if taken is not None:
            base, n = new, 2
            while new in taken:
                new = f"{base}{n}" if self.style in ("camel", "pascal") else join([*words(base), str(n)], self.style)
                n += 1
            taken.add(new)
        return new
