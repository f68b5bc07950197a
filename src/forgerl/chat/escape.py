"""Keeping a format's markers out of the text it carries (issue 27).

Message content, reasoning, tool-call arguments and tool results are model- and world-controlled.
If such text contains a marker of the format (`</parameter>`, `[e~[`, `<|im_end|>` ...), the
rendered conversation says something its author did not: a tool result that "ends" the message,
an argument the parser cuts short. Two escapes, both applied only where a marker actually occurs,
so text without markers renders byte for byte as before (the shipped tokenizer is trained on it):

* Free text (content, reasoning, user and system text, tool results, M2 argument values) gets a
  WORD JOINER (U+2060, `MARKER_BREAK`) after the first character of every marker occurrence, and
  every WORD JOINER already in the text is doubled. Decoding halves the doubled ones and drops
  the single ones, so the escape is exactly invertible, and the escaped text contains no marker:
  neither the parser nor the tokenizer (added tokens are matched on raw text) can see one. A
  marker that would form across the edge of the text and the fixed text around it (a user message
  ending in `]~!b` before M2's `[e~[`) is broken at the edge the same way.
* JSON (tool calls in Hermes and json_tools, tool listings) uses JSON's own escape: the marker's
  first character inside a string literal is written as `\\uXXXX`. Any JSON parser reads it back,
  so the text stays standard for other tools (vLLM's parsers included).

Text that no escape can make safe (an M2 tool name containing `"`) is a `RenderError` instead.
Everything here is linear in the text: one regular expression of literal alternatives, no
backtracking.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from typing import Any

from forgerl.errors import ForgerlError, ParseError

MARKER_BREAK = "\u2060"  # WORD JOINER: invisible, and practically absent from real text
_DOUBLE_BREAK = MARKER_BREAK * 2


class RenderError(ForgerlError, ValueError):
    """A message that the chat format cannot write down faithfully (e.g. a tool name containing
    the quote that ends M2's name attribute). Raised at render time, naming the field."""


def check_markers(markers: Iterable[str], owner: str) -> tuple[str, ...]:
    """The markers, validated: each must be at least two characters (a one-character marker cannot
    be broken by inserting anything inside it) and must not contain MARKER_BREAK."""
    out: list[str] = []
    for m in markers:
        if not isinstance(m, str) or len(m) < 2:
            raise ValueError(f"{owner}: marker {m!r} must be a string of at least 2 characters to be escapable")
        if MARKER_BREAK in m:
            raise ValueError(f"{owner}: marker {m!r} must not contain U+2060 (the escape character)")
        if m not in out:
            out.append(m)
    return tuple(out)


class MarkerEscaper:
    """Escapes and unescapes text for one set of markers (a format's reserved strings)."""

    def __init__(self, markers: Iterable[str], owner: str = "chat format") -> None:
        self.markers = check_markers(markers, owner)
        longest_first = sorted(self.markers, key=len, reverse=True)
        # A zero-width lookahead finds every start, overlapping ones included.
        alternatives = "|".join(re.escape(m) for m in longest_first)
        self._starts = re.compile(f"(?=({alternatives}))") if alternatives else None
        self._reach = max((len(m) for m in self.markers), default=1) - 1

    # --- free text ----------------------------------------------------------------------------
    def escape(self, text: str, before: str = "", after: str = "") -> str:
        """`text` with every marker occurrence broken, including one that would form with the
        last characters of `before` or the first of `after` (the fixed text around it)."""
        if not text or self._starts is None:
            return text
        before = before[-self._reach :]
        after = after[: self._reach]
        cuts = self._cut_points(before + text + after, len(before), len(text))
        if not cuts and MARKER_BREAK not in text:
            return text
        pieces, last = [], 0
        for cut in cuts:
            pieces.append(text[last:cut])
            last = cut
        pieces.append(text[last:])
        return MARKER_BREAK.join(p.replace(MARKER_BREAK, _DOUBLE_BREAK) for p in pieces)

    def _cut_points(self, joined: str, start: int, length: int) -> list[int]:
        """Positions in the text (0..length) where a MARKER_BREAK goes."""
        cuts: list[int] = []
        for m in self._starts.finditer(joined, max(0, start - self._reach)):  # type: ignore[union-attr]
            p, end = m.start(), m.start() + len(m.group(1))
            if p >= start + length:
                break  # begins in `after`: not the text's doing
            if p >= start:
                cut = p - start + 1  # after the marker's first character
            elif end > start:
                cut = 0  # the marker begins in `before` and reaches into the text
            else:
                continue
            if not cuts or cuts[-1] != cut:
                cuts.append(cut)
        return cuts

    def unescape(self, text: str, where: str) -> str:
        """The text `escape` was given. Raises ParseError when `text` holds a raw marker: sampled
        text with a marker in it cannot have come from `escape`, so it would not re-render to the
        same tokens (and a role marker in content is malformed output anyway)."""
        self.require_no_marker(text, where, ParseError)
        return remove_marker_breaks(text)

    def find_marker(self, text: str) -> tuple[int, str] | None:
        """The first marker occurrence in `text` as (position, marker), or None."""
        if self._starts is None:
            return None
        m = self._starts.search(text)
        return (m.start(), m.group(1)) if m else None

    def require_no_marker(self, text: str, where: str, error: type[Exception] = RenderError) -> None:
        """Raise `error` naming `where` and the marker when `text` contains one."""
        found = self.find_marker(text)
        if found is not None:
            pos, marker = found
            verb = "cannot contain" if error is RenderError else "contains"
            raise error(
                f"{where} {verb} the format marker {marker!r} (at character {pos}); "
                + ("remove or rename it" if error is RenderError else "markers may only appear where the format puts them")
            )

    # --- JSON ---------------------------------------------------------------------------------
    def dumps(self, value: Any, where: str) -> str:
        """json.dumps(value, ensure_ascii=False), with marker starts inside strings \\u-escaped.
        Identical to json.dumps when no string holds a marker."""
        text = json.dumps(value, ensure_ascii=False)
        if self.find_marker(text) is None:
            return text
        text = self._dumps_value(value)
        self.require_no_marker(text, where)  # a marker spanning JSON syntax: cannot be escaped
        return text

    def _dumps_value(self, value: Any) -> str:
        if isinstance(value, str):
            return self._dumps_str(value)
        if isinstance(value, Mapping):
            items = (f"{self._dumps_str(k if isinstance(k, str) else json.dumps(k))}: {self._dumps_value(v)}" for k, v in value.items())
            return "{" + ", ".join(items) + "}"
        if isinstance(value, (list, tuple)):
            return "[" + ", ".join(self._dumps_value(v) for v in value) + "]"
        return json.dumps(value, ensure_ascii=False)

    def _dumps_str(self, s: str) -> str:
        cuts = [m.start() for m in self._starts.finditer(s)] if self._starts is not None else []
        if not cuts:
            return json.dumps(s, ensure_ascii=False)
        out, last = ['"'], 0
        for p in cuts:
            out.append(json.dumps(s[last:p], ensure_ascii=False)[1:-1])
            out.append(_json_unicode_escape(s[p]))
            last = p + 1
        out.append(json.dumps(s[last:], ensure_ascii=False)[1:-1])
        return "".join(out) + '"'


def _json_unicode_escape(char: str) -> str:
    """One character as JSON \\u escape(s): '<' -> \\u003c; beyond the BMP, a surrogate pair."""
    code = ord(char)
    if code < 0x10000:
        return f"\\u{code:04x}"
    code -= 0x10000
    return f"\\u{0xD800 + (code >> 10):04x}\\u{0xDC00 + (code & 0x3FF):04x}"


def remove_marker_breaks(text: str) -> str:
    """Undo `MarkerEscaper.escape` without checking for markers: for text already split off by a
    parser (or a streamer) that knows where the markers are."""
    if MARKER_BREAK not in text:
        return text
    return MARKER_BREAK.join(part.replace(MARKER_BREAK, "") for part in text.split(_DOUBLE_BREAK))


class StreamUnescaper:
    """`remove_marker_breaks` for text that arrives in pieces (server-sent deltas): a run of
    MARKER_BREAKs at the end of a piece is held back until the next piece shows where it ends,
    since "⁠" + "⁠" must give one MARKER_BREAK, not two dropped ones. Call `flush` when the
    channel (reasoning, content) is over; `feed` pieces in order."""

    def __init__(self) -> None:
        self._held = ""

    def feed(self, piece: str) -> str:
        text = self._held + piece
        keep = len(text) - len(text.rstrip(MARKER_BREAK))
        self._held = text[len(text) - keep :] if keep else ""
        return remove_marker_breaks(text[: len(text) - keep])

    def flush(self) -> str:
        text, self._held = self._held, ""
        return remove_marker_breaks(text)
