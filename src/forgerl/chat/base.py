"""The chat-format contract (DESIGN.md contract 3).

A format renders messages + tools to *segments* of text, each marked trainable or not, and parses
a completion back into reasoning, content and tool calls. Token ids come from `encode_segments`,
which encodes every run of same-mask segments on its own: a full render and an incremental render
(the previous prompt + the sampled completion + `render_continuation`) then give the same ids by
construction, provided the format cuts its segments at the same places in both. Tests check it.

Where the boundaries are, for an assistant message inside a turn:

    [... gen prompt]  [completion body ... end-of-message]  [after-end text + next messages ...]
     non-trainable     trainable (what the model samples)    non-trainable (render_continuation)
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar

from forgerl.types import Message, ToolCall, ToolSpec

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase


@dataclass(frozen=True)
class Segment:
    text: str
    trainable: bool = False


@dataclass
class ParsedCompletion:
    reasoning: str | None = None
    content: str = ""
    tool_calls: list[ToolCall] = field(default_factory=list)

    def to_message(self) -> Message:
        return Message(role="assistant", content=self.content, reasoning=self.reasoning, tool_calls=self.tool_calls)


@dataclass
class Rendered:
    ids: list[int]
    mask: list[int]  # 1 where the token is trainable (assistant output), else 0


class ChatFormat(ABC):
    """Base of every chat format. Subclasses set the class attributes and implement the methods."""

    name: ClassVar[str]
    # Markers that must be single tokens (added to a tokenizer as special tokens where missing).
    special_tokens: ClassVar[tuple[str, ...]]
    # The marker that ends an assistant message; the engine stops on it.
    end_of_message: ClassVar[str]
    # True when rendering the whole history gives the same ids as incremental appends inside a turn.
    incremental_exact: ClassVar[bool] = True
    # Streaming needs to know, without parsing, where thinking and tool calls start and end:
    # the thinking markers, whether the generation prompt already opened the thinking block (M2:
    # the model never writes the opening marker), and the marker that begins the tool-call block.
    think_start: ClassVar[str]
    think_end: ClassVar[str]
    prompt_opens_think: ClassVar[bool]
    tool_call_start: ClassVar[str]

    @abstractmethod
    def render(
        self, messages: Sequence[Message], tools: Sequence[ToolSpec] = (), add_generation_prompt: bool = True
    ) -> list[Segment]:
        """The whole conversation. Assistant message bodies are trainable segments."""

    @abstractmethod
    def render_continuation(
        self,
        messages: Sequence[Message],
        tools: Sequence[ToolSpec] = (),
        add_generation_prompt: bool = True,
        completion_closed: bool = True,
    ) -> list[Segment]:
        """What follows an assistant completion: the text a full render puts after its
        end-of-message marker (plus the marker itself when `completion_closed` is False, i.e. the
        completion was cut by a token limit), then `messages` (tool results or a user message),
        then the generation prompt."""

    @abstractmethod
    def parse(self, text: str, tools: Sequence[ToolSpec] = ()) -> ParsedCompletion:
        """Split a completion (text after the generation prompt, end marker optional) into
        reasoning, content and tool calls. Raises ParseError, and nothing else, on malformed input."""

    @abstractmethod
    def render_assistant_body(self, message: Message) -> str:
        """The text a model should sample for `message`, end-of-message marker included."""


_REGISTRY: dict[str, type[ChatFormat]] = {}


def register(cls: type[ChatFormat]) -> type[ChatFormat]:
    _REGISTRY[cls.name] = cls
    return cls


def get_format(name: str, **kwargs: Any) -> ChatFormat:
    from forgerl.chat import formats  # noqa: F401  (registers the built-in formats)

    try:
        return _REGISTRY[name](**kwargs)
    except KeyError:
        known = ", ".join(sorted(_REGISTRY))
        raise KeyError(f"unknown chat format {name!r}; registered formats: {known}") from None


def list_formats() -> list[str]:
    from forgerl.chat import formats  # noqa: F401

    return sorted(_REGISTRY)


def encode_segments(tokenizer: PreTrainedTokenizerBase, segments: Sequence[Segment]) -> Rendered:
    """Token ids and trainable mask for segments: each run of same-mask segments encoded alone."""
    ids: list[int] = []
    mask: list[int] = []
    run: list[str] = []
    run_trainable = False

    def flush() -> None:
        if run:
            piece = tokenizer.encode("".join(run), add_special_tokens=False)
            ids.extend(piece)
            mask.extend([int(run_trainable)] * len(piece))
            run.clear()

    for seg in segments:
        if not seg.text:
            continue
        if seg.trainable != run_trainable:
            flush()
            run_trainable = seg.trainable
        run.append(seg.text)
    flush()
    return Rendered(ids=ids, mask=mask)


def segments_text(segments: Sequence[Segment]) -> str:
    return "".join(s.text for s in segments)
