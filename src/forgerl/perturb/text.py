"""System- and user-prompt perturbations, and keeping prompts true to renamed tools.

Prompts may name tools ("call submit_answer once"); after a rename that text would point at a tool
that no longer exists, so `mention_tools` rewrites every mention first. The edits below never touch
numbers, item names or other task data: typos go only into common function words, and irrelevant
context carries no digits, so the task stays exactly as solvable as before.
"""

from __future__ import annotations

import random
import re
from typing import Any

PERSONAS = (
    "You are Ada, a meticulous assistant who double-checks every step.",
    "You are a friendly helper working for a small grocery co-op.",
    "You are an autonomous agent operating inside a tool-calling harness.",
    "You are a concise assistant; you prefer actions over words.",
)
FORMAT_RULES = (
    "Keep your reasoning short.",
    "Do not use markdown in your answers.",
    "Think before every tool call.",
    "Never guess a value that a tool can give you.",
    "Reply in English.",
)
FILLER = (
    "This conversation may be logged for quality purposes.",
    "Tools are provided by the host application and may change between sessions.",
    "If something is unclear, rely on the tools rather than on memory.",
)
WORDING: dict[str, tuple[str, ...]] = {  # phrase -> rewordings (case-sensitive, whole words)
    "You answer": ("Your job is to answer", "You respond to"),
    "questions": ("queries", "requests"),
    "gives": ("returns", "provides"),
    "lists": ("shows", "returns"),
    "evaluates": ("computes", "works out"),
    "changes": ("converts",),
    "Make": ("Issue", "Send"),
    "When you know": ("Once you know", "As soon as you know"),
    "careful": ("diligent", "precise"),
    "solves": ("works through",),
    "every": ("each",),
    "then": ("and then", "after that"),
}
PARAPHRASES = (
    "{p}",
    "Question: {p}",
    "I need help with this. {p}",
    "{p} Thanks!",
    "Here is my task. {p}",
    "Could you work this out? {p}",
)
CONTEXT = (
    "I am planning a small party next week.",
    "My neighbour asked me about this yesterday.",
    "The shop closes early on Sundays.",
    "I already tried once but lost my notes.",
    "This is for a school exercise.",
)
TYPO_WORDS = {"what", "how", "much", "more", "does", "than", "total", "items", "the", "use", "then", "make",
              "with", "final", "number", "many", "each", "every", "please"}


def sentences(text: str) -> list[str]:
    return [s for s in re.split(r"(?<=[.!?])\s+", text.strip()) if s]


def mention_tools(text: str, mentions: dict[str, str]) -> str:
    """Replace every whole-word mention of an original tool name with how the episode shows it."""
    changed = {k: v for k, v in mentions.items() if k != v}
    if not changed:
        return text
    pattern = re.compile(r"(?<![\w-])(" + "|".join(re.escape(k) for k in sorted(changed, key=len, reverse=True)) + r")(?![\w-])")
    return pattern.sub(lambda m: changed[m.group(1)], text)


def perturb_system(text: str, strength: float, rng: random.Random, keep: tuple[str, ...] = ()) -> tuple[str, dict[str, Any]]:
    """Persona, wording, order, formatting rules, length: one edit at strength 0, up to all at 1.
    Shortening drops only sentences that mention none of `keep` (the shown tool names) and keeps
    at least one."""
    edits = ["persona", "wording", "order", "rules", "length"]
    rng.shuffle(edits)
    chosen = edits[: 1 + round(strength * (len(edits) - 1))]
    parts = sentences(text)
    params: dict[str, Any] = {"edits": sorted(chosen)}
    if "wording" in chosen:
        swapped = []
        for phrase, options in WORDING.items():
            pattern = re.compile(rf"\b{re.escape(phrase)}\b")
            if any(pattern.search(p) for p in parts):
                new = rng.choice(options)
                parts = [pattern.sub(new, p) for p in parts]
                swapped.append([phrase, new])
        params["wording"] = swapped
    if "order" in chosen and len(parts) > 1:
        order = list(range(len(parts)))
        rng.shuffle(order)
        parts = [parts[i] for i in order]
        params["order"] = order
    if "rules" in chosen:
        rules = rng.sample(FORMAT_RULES, 1 + round(strength))
        parts.extend(rules)
        params["rules"] = rules
    if "length" in chosen:
        if rng.random() < 0.5:
            filler = rng.sample(FILLER, 1 + round(strength * (len(FILLER) - 1)))
            parts.extend(filler)
            params["length"] = {"longer": filler}
        else:
            droppable = [i for i, p in enumerate(parts) if not any(k in p for k in keep)]
            dropped = sorted(rng.sample(droppable, min(len(droppable), len(parts) - 1, 1 + round(strength))))
            params["length"] = {"dropped": [parts[i] for i in dropped]}
            parts = [p for i, p in enumerate(parts) if i not in dropped]
    if "persona" in chosen:
        persona = rng.choice(PERSONAS)
        parts.insert(0, persona)
        params["persona"] = persona
    joiner = "\n" if params.get("length", {}).get("longer") else " "
    return joiner.join(parts), params


def _typo(word: str, rng: random.Random) -> str:
    i = rng.randrange(len(word) - 1)
    return word[:i] + word[i + 1] + word[i] + word[i + 2:]


def perturb_user(text: str, strength: float, rng: random.Random) -> tuple[str, dict[str, Any]]:
    """Paraphrase template, typos, irrelevant context, reordered constraints."""
    edits = ["paraphrase", "typos", "context", "reorder"]
    rng.shuffle(edits)
    chosen = edits[: 1 + round(strength * (len(edits) - 1))]
    params: dict[str, Any] = {"edits": sorted(chosen)}
    out = text
    if "reorder" in chosen:
        match = re.fullmatch(r"(.*?),\s*in ([\w ]+)\?(.*)", out, flags=re.DOTALL)
        if match:  # "What is X, in cents?" -> "Answer in cents. What is X?"
            out = f"Answer in {match.group(2)}. {match.group(1)}?{match.group(3)}"
            params["reorder"] = "unit first"
        else:
            parts = sentences(out)
            if len(parts) > 1:
                out = " ".join([parts[-1], *parts[:-1]])
                params["reorder"] = "last sentence first"
    if "typos" in chosen:
        tokens = re.split(r"(\W+)", out)
        spots = [i for i, t in enumerate(tokens) if t.lower() in TYPO_WORDS and len(t) >= 3]
        k = min(len(spots), 1 + round(strength * 2))
        hit = sorted(rng.sample(spots, k)) if spots else []
        for i in hit:
            tokens[i] = _typo(tokens[i], rng)
        out = "".join(tokens)
        params["typos"] = [tokens[i] for i in hit]
    if "context" in chosen:
        extra = rng.sample(CONTEXT, 1 + round(strength))
        before = rng.random() < 0.5
        out = " ".join([*extra, out] if before else [out, *extra])
        params["context"] = {"sentences": extra, "where": "before" if before else "after"}
    if "paraphrase" in chosen:
        template = rng.choice(PARAPHRASES[1:])
        out = template.format(p=out)
        params["paraphrase"] = template
    return out, params
