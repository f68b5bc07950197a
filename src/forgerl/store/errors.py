"""Errors the store raises. Each says what was wrong and what to do about it.

They subclass `forgerl.errors.ForgerlError` so a caller that catches forgerl's errors catches these;
they live here (not in forgerl/errors.py) until the lead decides whether storage is a boundary of
its own.
"""

from __future__ import annotations

from forgerl.errors import ForgerlError


class StoreError(ForgerlError):
    """The store could not do what was asked (bad input, unreadable file, closed store)."""


class DuplicateTrajectoryError(StoreError, ValueError):
    """A trajectory id that is already stored: the store is append-only."""


class UnknownRecordError(StoreError, KeyError):
    """A run or trajectory id that is not in the store."""

    def __str__(self) -> str:  # KeyError quotes its message; keep it readable
        return str(self.args[0]) if self.args else ""


class SchemaVersionError(StoreError):
    """The file's schema is newer than this forgerl understands."""


class StorageError(StoreError):
    """The file system under the store failed a write (an I/O error, or no space left). The failed
    write was rolled back, so nothing of it is kept and every write acknowledged before it is intact;
    the store works again once the disk does (retry the write)."""


class StorageFullError(StorageError):
    """The disk (or quota) holding the store is full (SQLITE_FULL): free space, then retry."""
