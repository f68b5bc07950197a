"""Turning a growing completion text into reasoning / content deltas for SSE streaming.

Why a state machine instead of re-parsing every step: a chat format's `parse` wants a whole
completion, and a half-written tool call is not parseable. So while streaming we only split on the
thinking markers and hold everything from the tool-call start marker on; at the end the whole
completion is parsed once (`finish`) and the tool calls go out in one delta. Text that could be the
beginning of a marker (`</th` of `</think>`, a partial stop string) and trailing whitespace are held
back until the next token decides, so the concatenated deltas equal what the non-streaming response
would say (chat formats strip the whitespace around reasoning and content).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Literal

from forgerl.chat.base import ParsedCompletion
from forgerl.chat.escape import StreamUnescaper

Channel = Literal["reasoning", "content"]


def cut_at_markers(text: str, markers: Sequence[str], start: int = 0) -> str:
    """Text up to the first occurrence of any marker (end-of-message, stop strings), exclusive.

    Markers are looked for from `start` on (a caller that already scanned a prefix says so)."""
    cut = len(text)
    for m in markers:
        if m:
            i = text.find(m, max(0, start - len(m) + 1))
            if 0 <= i < cut:
                cut = i
    return text[:cut]


def partial_marker_len(text: str, markers: Sequence[str], end: int | None = None) -> int:
    """Length of the longest suffix of `text[:end]` that is a proper prefix of some marker."""
    end = len(text) if end is None else end
    best = 0
    for m in markers:
        for k in range(min(len(m) - 1, end), best, -1):
            if text.endswith(m[:k], 0, end):
                best = k
                break
    return best


class IncrementalDecoder:
    """Text of a growing id list at O(window) cost per token instead of decoding everything again.

    Decodes a small window of already-seen tokens plus the new ones and keeps the part past the
    window: the window gives tokenizers that depend on the left neighbour (SentencePiece's leading
    space) their context, and a trailing U+FFFD (half a UTF-8 character) waits for the next token.
    """

    def __init__(self, decode: Callable[[list[int]], str]) -> None:
        self._decode = decode
        self.ids: list[int] = []
        self.text = ""
        self._prefix = 0  # window start
        self._read = 0  # ids up to here are already in `text`

    def push(self, token_id: int) -> str:
        self.ids.append(token_id)
        seen = self._decode(self.ids[self._prefix : self._read])
        now = self._decode(self.ids[self._prefix :])
        if len(now) <= len(seen) or now.endswith("\ufffd"):
            return ""
        delta = now[len(seen) :]
        self.text += delta
        self._prefix, self._read = self._read, len(self.ids)
        return delta


@dataclass
class DeltaSplitter:
    """Feed the cumulative completion text; get (channel, text) deltas that are safe to send.

    `in_think` is True when the generation prompt already opened the thinking block (M2), so the
    completion starts as reasoning. Otherwise a completion that starts with `think_start` opens it.
    `think_pad` (between a think marker and the reasoning) and `think_sep` (between the closing
    marker and the content) are dropped exactly, as the format's parse drops them. The rule that
    keeps streaming honest: every delta is a prefix of what the final parse will say, so `finish`
    only ever has to append.
    """

    think_start: str | None
    think_end: str | None
    tool_call_start: str | None
    stop_markers: Sequence[str] = ()
    in_think: bool = False
    think_pad: str = ""
    think_sep: str = ""
    emitted: dict[Channel, str] = field(default_factory=lambda: {"reasoning": "", "content": ""})
    text: str = ""
    _pos: int = 0
    _phase: str = "start"
    # Free text arrives escaped (forgerl.chat.escape): clients get it unescaped, per channel.
    _unescape: dict[str, StreamUnescaper] = field(
        default_factory=lambda: {"reasoning": StreamUnescaper(), "content": StreamUnescaper()}
    )

    def __post_init__(self) -> None:
        if self.in_think and self.think_end:
            self._phase = "think"
        elif not self.think_start:
            self._phase = "content"

    @property
    def saw_tool_call(self) -> bool:
        return self._phase == "tool"

    def feed(self, text: str) -> list[tuple[Channel, str]]:
        """`text` is the whole completion decoded so far. Returns the new deltas, in order."""
        text = cut_at_markers(text, self.stop_markers, start=self._pos)
        self.text = text
        # A trailing U+FFFD is an incomplete UTF-8 sequence: the next token completes it.
        safe = len(text.rstrip("\ufffd"))
        out: list[tuple[Channel, str]] = []
        while True:
            before = (self._phase, self._pos)
            if self._phase == "start":
                self._step_start(text, safe)
            elif self._phase == "pad":
                self._skip(text, safe, self.think_pad, "think")
            elif self._phase == "think":
                self._step_channel(text, safe, "reasoning", self.think_end or "", "sep", out)
            elif self._phase == "sep":
                self._skip(text, safe, self.think_sep, "content")
            elif self._phase == "content":
                self._step_channel(text, safe, "content", self.tool_call_start or "", "tool", out)
            if (self._phase, self._pos) == before:
                return out

    def _step_start(self, text: str, safe: int) -> None:
        assert self.think_start
        rest = text[self._pos : safe]
        if rest.startswith(self.think_start):
            self._pos += len(self.think_start)
            self._phase = "pad"
        elif not self.think_start.startswith(rest):  # cannot become a think block any more
            self._phase = "content"

    def _skip(self, text: str, safe: int, prefix: str, next_phase: str) -> None:
        """Drop `prefix` if the text continues with it; wait while that is still undecided."""
        rest = text[self._pos : safe]
        if rest.startswith(prefix):
            self._pos += len(prefix)
            self._phase = next_phase
        elif not prefix.startswith(rest):
            self._phase = next_phase

    def _step_channel(
        self, text: str, safe: int, channel: Channel, marker: str, next_phase: str, out: list[tuple[Channel, str]]
    ) -> None:
        idx = text.find(marker, self._pos) if marker else -1
        if idx >= 0:
            self._emit(text[self._pos : idx], channel, out)
            self._send(self._unescape[channel].flush(), channel, out)
            self._pos = idx + len(marker)
            self._phase = next_phase
            return
        markers = [m for m in (marker, *self.stop_markers) if m]
        end = safe - partial_marker_len(text, markers, safe)
        if end > self._pos:
            self._pos += self._emit(text[self._pos : end], channel, out)

    def _emit(self, piece: str, channel: Channel, out: list[tuple[Channel, str]]) -> int:
        """Send `piece` without its trailing whitespace (a format may strip it); return chars sent."""
        body = piece.rstrip()
        self._send(self._unescape[channel].feed(body), channel, out)
        return len(body)

    def _send(self, text: str, channel: Channel, out: list[tuple[Channel, str]]) -> None:
        if text:
            self.emitted[channel] += text
            out.append((channel, text))

    def finish(self, parsed: ParsedCompletion | None) -> list[tuple[Channel, str]]:
        """Deltas still owed once the completion is over.

        With a parse, whatever the parse says beyond what was streamed (e.g. content after a
        tool-call block). Without one (the completion did not parse), the raw held-back text goes
        out on the channel we were in, so nothing the model wrote is lost.
        """
        out: list[tuple[Channel, str]] = []
        if parsed is not None:
            for channel, full in (("reasoning", parsed.reasoning or ""), ("content", parsed.content)):
                done = self.emitted[channel]  # type: ignore[index]
                if full.startswith(done) and len(full) > len(done):
                    rest = full[len(done) :]
                    self.emitted[channel] += rest  # type: ignore[index]
                    out.append((channel, rest))  # type: ignore[arg-type]
            return out
        rest = self.text[self._pos :]
        if self._phase == "tool" and self.tool_call_start:
            rest = self.tool_call_start + rest
        channel: Channel = "reasoning" if self._phase in ("think", "pad") else "content"
        unescape = self._unescape[channel]
        self._send(unescape.feed(rest.rstrip()) + unescape.flush(), channel, out)
        return out
