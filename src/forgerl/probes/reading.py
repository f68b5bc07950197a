"""Probes 1-3: can a policy copy an invented name, copy digits, look a value up in its context?

Each question is one user turn rendered in the policy's chat format (the way the policy sees text:
the format's system prompt, user turn and generation prompt), answered greedily; the answer is the
reply's content with thinking stripped (score.py `reply_of`). Every probe returns a dict of plain
numbers (the JSON report is these dicts), with a few examples for a reader to look at.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import Any

from forgerl.chat import ChatFormat, encode_segments
from forgerl.probes.items import DISTANCE_BUCKETS, ProbeItem, coined_items, digit_items, kv_items
from forgerl.probes.reader import Reader
from forgerl.probes.score import (
    exact_match,
    first_digit_run,
    free_running_digits,
    reply_of,
    says_word,
    teacher_forced_digits,
)
from forgerl.stats import wilson_interval
from forgerl.types import Message

READING_PROBES = ("coined", "digits", "kv")
EXAMPLES = 3
"""Replies kept in the report per probe, to see what a score means."""


def prompt_ids(reader: Reader, fmt: ChatFormat, text: str) -> list[int]:
    return encode_segments(reader.tokenizer, fmt.render([Message(role="user", content=text)])).ids


def decode(reader: Reader, ids: Sequence[int]) -> str:
    return reader.tokenizer.decode(list(ids), skip_special_tokens=False, clean_up_tokenization_spaces=False)


def replies(reader: Reader, fmt: ChatFormat, items: Sequence[ProbeItem], max_tokens: int) -> list[tuple[str, bool]]:
    """(reply content, parsed) per item, all items generated in one batch."""
    completions = reader.complete([prompt_ids(reader, fmt, item.prompt) for item in items], max_tokens)
    return [reply_of(fmt, decode(reader, ids)) for ids in completions]


def rate(hits: Sequence[bool]) -> dict[str, Any]:
    """Accuracy with its Wilson 95% interval (items are independent draws)."""
    k, n = sum(hits), len(hits)
    low, high = wilson_interval(k, n)
    return {"n": n, "correct": k, "accuracy": k / n if n else 0.0, "ci_low": low, "ci_high": high}


def _examples(items: Sequence[ProbeItem], got: Sequence[tuple[str, bool]]) -> list[dict[str, str]]:
    return [{"answer": item.answer, "reply": reply[:160]} for item, (reply, _) in zip(items[:EXAMPLES], got, strict=False)]


def coined_copy(reader: Reader, fmt: ChatFormat, n: int, max_tokens: int) -> dict[str, Any]:
    """Probe 1: the invented name, spelt exactly, in the reply ("The river is called Zorvel." copies
    it as well as "Zorvel" does: the probe measures copying, not terseness); `name_only` is the strict
    exact match of the whole reply."""
    items = coined_items(n)
    got = replies(reader, fmt, items, max_tokens)
    pairs = list(zip(items, got, strict=True))
    return {**rate([says_word(reply, item.answer) for item, (reply, _) in pairs]),
            "name_only": rate([exact_match(reply, item.answer) for item, (reply, _) in pairs]),
            "unparsed": sum(not ok for _, ok in got), "examples": _examples(items, got)}


def teacher_forced(reader: Reader, fmt: ChatFormat, item: ProbeItem) -> list[bool] | None:
    """Per-digit flags of the correct reply under teacher forcing (score.py explains the alignment);
    None when the tokenizer's tokens do not decode one by one to the reply (not byte-level)."""
    prompt = prompt_ids(reader, fmt, item.prompt)
    body = fmt.render_assistant_body(Message(role="assistant", content=item.answer, reasoning=None))
    body_ids = reader.tokenizer.encode(body, add_special_tokens=False)
    pieces = [decode(reader, [i]) for i in body_ids]
    if "".join(pieces) != body:
        return None
    argmax = reader.argmax_next(prompt + body_ids)
    predicted = [decode(reader, [argmax[len(prompt) + j - 1]]) for j in range(len(body_ids))]
    start = body.rindex(item.answer)
    return teacher_forced_digits(pieces, predicted, start, start + len(item.answer))


def digit_copy(reader: Reader, fmt: ChatFormat, n: int, max_tokens: int) -> dict[str, Any]:
    """Probe 2: per-digit accuracy, free-running (greedy reply) and teacher-forced (one forward pass)."""
    items = digit_items(n)
    got = replies(reader, fmt, items, max_tokens)
    free = [free_running_digits(reply, item.answer) for item, (reply, _) in zip(items, got, strict=True)]
    forced = [teacher_forced(reader, fmt, item) for item in items]
    by_length: dict[str, list[bool]] = {}
    for item, flags in zip(items, free, strict=True):
        low = 4 * (len(item.answer) // 4)
        by_length.setdefault(f"{low}-{low + 3}", []).extend(flags)
    return {
        "n": n, "digits": sum(len(f) for f in free),
        "free_running_per_digit": _mean(d for f in free for d in f),
        "teacher_forced_per_digit": None if any(f is None for f in forced) else _mean(d for f in forced for d in f or []),
        "exact_match": rate([first_digit_run(reply) == item.answer for item, (reply, _) in zip(items, got, strict=True)]),
        "free_running_by_length": {k: _mean(v) for k, v in sorted(by_length.items(), key=lambda kv: int(kv[0].split("-")[0]))},
        "unparsed": sum(not ok for _, ok in got), "examples": _examples(items, got),
    }


def kv_lookup(reader: Reader, fmt: ChatFormat, n: int, max_tokens: int) -> dict[str, Any]:
    """Probe 3: the asked key's value (the reply's first digit run) per distance bucket."""
    items = kv_items(n)
    got = replies(reader, fmt, items, max_tokens)
    hits = [first_digit_run(reply) == item.answer for item, (reply, _) in zip(items, got, strict=True)]
    buckets = {label: rate([h for h, item in zip(hits, items, strict=True) if item.meta["bucket"] == label])
               for label, _, _ in DISTANCE_BUCKETS}
    return {**rate(hits), "by_distance": buckets, "unparsed": sum(not ok for _, ok in got),
            "examples": _examples(items, got)}


PROBES: dict[str, Callable[[Reader, ChatFormat, int, int], dict[str, Any]]] = {
    "coined": coined_copy, "digits": digit_copy, "kv": kv_lookup}


def run_reading_probes(reader: Reader, fmt: ChatFormat, n: int, probes: Sequence[str] = READING_PROBES,
                       max_tokens: int = 96, log: Callable[[str], None] | None = None) -> dict[str, Any]:
    """{probe: its result, with `seconds`} for each of `probes` (a subset of READING_PROBES)."""
    out = {}
    for name in probes:
        t0 = time.perf_counter()
        out[name] = {**PROBES[name](reader, fmt, n, max_tokens), "seconds": time.perf_counter() - t0}
        if log is not None:
            log(f"  {name}: done in {out[name]['seconds']:.0f} s")
    return out


def _mean(flags: Any) -> float:
    values = list(flags)
    return sum(values) / len(values) if values else 0.0
