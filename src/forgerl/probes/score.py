"""Scoring the probes: the reply a policy gave, exact matches, per-digit alignments.

Digits and tokens. Tokenizers merge digits (the project's BPE writes `4821390765` as `48|213|90|765`),
so "per-digit" must be defined on characters, not tokens:

* free-running: the first run of digits in the reply is compared with the target position by
  position; a digit the reply lacks counts wrong, extra digits after the target's length are ignored
  (the reply's exact match is reported beside it);
* teacher-forced: the correct reply, without reasoning (M2's prompt opened `<think>`, so its reply
  starts by closing it), is tokenized as the format renders it; the policy's argmax token
  at each position is read from one forward pass given the correct prefix, and a digit counts right
  when the predicted token, laid over the correct token's span, has that digit at that place. A
  predicted token shorter than the correct one leaves the digits it does not cover wrong (`4` for
  `48`: the 4 right, the 8 wrong).
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from forgerl.chat import ChatFormat
from forgerl.errors import ParseError

_WRAPPERS = "\"'`*_ \t\n"
_TRAILING = ".!?,;:"


def reply_of(fmt: ChatFormat, completion: str) -> tuple[str, bool]:
    """(the reply's content with thinking stripped, whether the format could parse it). An
    unparsable completion (thinking never closed, say) still gets read: the text after the thinking
    marker if there is one, else all of it, up to the end-of-message marker. A probe measures
    reading, not format discipline; the count of unparsed replies is reported beside the scores."""
    try:
        return fmt.parse(completion).content, True
    except ParseError:
        text = completion.split(fmt.end_of_message, 1)[0]
        if fmt.think_end in text:
            text = text.split(fmt.think_end, 1)[1]
        return text, False


def normalize_reply(text: str) -> str:
    """Strip surrounding whitespace, quotes, backticks and emphasis, then trailing punctuation."""
    text = text.strip(_WRAPPERS).rstrip(_TRAILING).strip(_WRAPPERS)
    return text


def exact_match(reply: str, answer: str) -> bool:
    """Case-sensitive equality after `normalize_reply`: `"Zorvel."` matches `Zorvel`, `zorvel` does not."""
    return normalize_reply(reply) == answer


def says_word(reply: str, word: str) -> bool:
    """`word`, spelt exactly (case included), appears in `reply` with no letter glued to either side:
    "The river is called Zorvel." says Zorvel; "Zorvels" and "zorvel" do not."""
    return re.search(rf"(?<![^\W\d_]){re.escape(word)}(?![^\W\d_])", reply) is not None


def first_digit_run(text: str) -> str:
    """The first maximal run of digits in `text` ('' when there is none)."""
    found = re.search(r"\d+", text)
    return found.group(0) if found else ""


def free_running_digits(reply: str, target: str) -> list[bool]:
    """One flag per target digit: the reply's first digit run has the same digit at that position."""
    run = first_digit_run(reply)
    return [i < len(run) and run[i] == digit for i, digit in enumerate(target)]


def token_spans(pieces: Sequence[str]) -> list[tuple[int, int]]:
    """Character span of each token, given the text each token decodes to, in order."""
    spans, at = [], 0
    for piece in pieces:
        spans.append((at, at + len(piece)))
        at += len(piece)
    return spans


def teacher_forced_digits(pieces: Sequence[str], predicted: Sequence[str], start: int, end: int) -> list[bool]:
    """One flag per character of text[start:end] (the digits), where text = ''.join(pieces) is the
    correct reply token by token and predicted[j] is the text of the policy's argmax token at token
    j's place (given the correct tokens before it)."""
    if len(pieces) != len(predicted):
        raise ValueError(f"{len(pieces)} tokens but {len(predicted)} predictions")
    text, spans = "".join(pieces), token_spans(pieces)
    if not 0 <= start <= end <= len(text):
        raise ValueError(f"span [{start}, {end}) is outside the {len(text)}-character reply")
    flags = []
    for at in range(start, end):
        j = next(j for j, (lo, hi) in enumerate(spans) if lo <= at < hi)
        offset = at - spans[j][0]
        flags.append(offset < len(predicted[j]) and predicted[j][offset] == text[at])
    return flags
