"""How a trajectory's JSON is kept in the `payload` column.

Trajectories are mostly lists of token ids and logprobs: JSON text of digits that zlib shrinks
several-fold. Small ones are kept as plain UTF-8 so `sqlite3 store.sqlite` stays readable by eye;
past `COMPRESS_ABOVE_BYTES` they are deflated. The `payload_encoding` column says which, so the
threshold can change without touching old rows.
"""

from __future__ import annotations

import zlib
from typing import Literal

from forgerl.store.errors import StoreError

PayloadEncoding = Literal["json", "zlib"]

COMPRESS_ABOVE_BYTES = 4096
ZLIB_LEVEL = 6  # zlib's default: most of level 9's ratio at a fraction of its time


def encode_payload(json_text: str, *, compress_above: int = COMPRESS_ABOVE_BYTES) -> tuple[bytes, PayloadEncoding]:
    """UTF-8 bytes of `json_text`, deflated when longer than `compress_above` bytes."""
    raw = json_text.encode("utf-8")
    if len(raw) > compress_above:
        return zlib.compress(raw, ZLIB_LEVEL), "zlib"
    return raw, "json"


def decode_payload(payload: bytes, encoding: str) -> str:
    """The JSON text back from a stored payload; a corrupt or unknown encoding is a StoreError."""
    if encoding == "json":
        return bytes(payload).decode("utf-8")
    if encoding == "zlib":
        try:
            return zlib.decompress(payload).decode("utf-8")
        except zlib.error as exc:
            raise StoreError(f"a stored trajectory payload is corrupt ({exc}); run PRAGMA integrity_check") from exc
    raise StoreError(f"unknown payload encoding {encoding!r}: the file was written by a newer forgerl; upgrade forgerl")
