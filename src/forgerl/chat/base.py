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

from forgerl.chat.escape import RenderError, check_markers
from forgerl.errors import ConfigError
from forgerl.plugins import add_registrar, load_plugins, plugin_hint
from forgerl.types import Message, ToolCall, ToolSpec

__all__ = [
    "ChatFormat",
    "ParsedCompletion",
    "RenderError",
    "Rendered",
    "Segment",
    "encode_segments",
    "get_format",
    "list_formats",
    "register_format",
    "reserved_markers",
    "unregister_format",
]

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
    """Base of every chat format: the minimal contract (render, continue, parse) with nothing
    shared. Most formats should subclass `forgerl.chat.TurnFormat` instead, which implements all
    four methods from a format's literal strings and a few hooks (docs/formats.md).

    A direct subclass takes on every guarantee itself: the full render equals prompt + sampled
    body + `render_continuation` on token ids; `parse(render_assistant_body(m))` gives `m` back for
    any text, markers of the format included; free text never produces a marker of the format in
    the rendered text; `parse` raises only ParseError and runs in linear time. tests/chat checks
    all of this for every registered format.
    """

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

_REQUIRED = ("name", "special_tokens", "end_of_message", "think_start", "think_end", "prompt_opens_think", "tool_call_start")


def register_format(cls: type[ChatFormat], *, replace: bool = False) -> type[ChatFormat]:
    """Make `cls` available as `get_format(cls.name)` (and to everything that takes a format name:
    configs, `--format`, perturbations). Usable as a class decorator.

    Checks what every caller relies on before it can break a rollout: the class is a concrete
    ChatFormat, sets every required marker, and its markers can be escaped (at least two
    characters, no U+2060). A name that is taken raises unless `replace=True`, so two formats
    cannot silently shadow each other.
    """

    if not (isinstance(cls, type) and issubclass(cls, ChatFormat)):
        raise ConfigError(f"register_format takes a ChatFormat subclass, got {cls!r}")
    missing = [a for a in _REQUIRED if not hasattr(cls, a)]
    if missing:
        raise ConfigError(f"chat format {cls.__name__} does not set {', '.join(missing)}; set them as class attributes")
    if getattr(cls, "__abstractmethods__", None):
        raise ConfigError(
            f"chat format {cls.__name__} does not implement {', '.join(sorted(cls.__abstractmethods__))}"
        )
    name = cls.name
    if not isinstance(name, str) or not name:
        raise ConfigError(f"chat format {cls.__name__} needs a non-empty string `name`")
    try:
        reserved_markers(cls)
    except ValueError as e:
        raise ConfigError(str(e)) from None
    if name in _REGISTRY and _REGISTRY[name] is not cls and not replace:
        raise ConfigError(
            f"a chat format named {name!r} is already registered ({_REGISTRY[name].__qualname__}); "
            "choose another name or pass replace=True"
        )
    _REGISTRY[name] = cls
    return cls


def unregister_format(name: str) -> None:
    """Remove a registered format (tests that register a format of their own clean up with it)."""
    if _REGISTRY.pop(name, None) is None:
        raise KeyError(f"no chat format named {name!r} is registered")


register = register_format  # the former private name, kept for existing imports


def _register_entry_point(obj: object) -> bool:
    """A ChatFormat class named by a `forgerl.formats` entry point (forgerl/plugins.py)."""
    if not (isinstance(obj, type) and issubclass(obj, ChatFormat)):
        return False
    if _REGISTRY.get(obj.name) is not obj:
        register_format(obj)
    return True


add_registrar(_register_entry_point)


def reserved_markers(fmt: ChatFormat | type[ChatFormat]) -> tuple[str, ...]:
    """Every string a format reserves for its own structure: free text that contains one is
    escaped on render (see forgerl.chat.escape). `special_tokens` plus the streaming markers plus,
    where the format declares them, `call_markers` and `extra_markers`."""
    found = [
        *fmt.special_tokens,
        fmt.end_of_message,
        fmt.think_start,
        fmt.think_end,
        fmt.tool_call_start,
        *getattr(fmt, "call_markers", ()),
        *getattr(fmt, "extra_markers", ()),
    ]
    return check_markers(found, f"chat format {fmt.name!r}")


def get_format(name: str, **kwargs: Any) -> ChatFormat:
    from forgerl.chat import formats  # noqa: F401  (registers the built-in formats)

    cls = _REGISTRY.get(name)
    if cls is None:  # a user's format may come from a plug-in not loaded yet (forgerl/plugins.py)

        load_plugins()
        cls = _REGISTRY.get(name)
    if cls is None:
        known = ", ".join(sorted(_REGISTRY))
        raise KeyError(f"unknown chat format {name!r}; registered formats: {known}; {plugin_hint()}")
    return cls(**kwargs)


def list_formats() -> list[str]:
    from forgerl.chat import formats  # noqa: F401

    load_plugins()

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
