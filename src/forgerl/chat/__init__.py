"""Chat formats: messages + tools -> token ids with trainable masks, and completion parsing."""

from forgerl.chat.base import ChatFormat, ParsedCompletion, Rendered, Segment, encode_segments, get_format, list_formats

__all__ = ["ChatFormat", "ParsedCompletion", "Rendered", "Segment", "encode_segments", "get_format", "list_formats"]
