"""Chat formats: messages + tools -> token ids with trainable masks, and completion parsing.

To add a format: subclass `TurnFormat` (or `ChatFormat`), register it with `register_format`, and
see docs/formats.md for what the hooks must do.
"""

from forgerl.chat.base import (
    ChatFormat,
    ParsedCompletion,
    Rendered,
    RenderError,
    Segment,
    encode_segments,
    get_format,
    list_formats,
    register_format,
    reserved_markers,
    unregister_format,
)
from forgerl.chat.escape import MARKER_BREAK, StreamUnescaper, remove_marker_breaks
from forgerl.chat.turns import RawCall, TurnFormat

__all__ = [
    "MARKER_BREAK",
    "ChatFormat",
    "ParsedCompletion",
    "RawCall",
    "RenderError",
    "StreamUnescaper",
    "Rendered",
    "Segment",
    "TurnFormat",
    "encode_segments",
    "get_format",
    "list_formats",
    "register_format",
    "remove_marker_breaks",
    "reserved_markers",
    "unregister_format",
]
