"""Versioned weight files in one directory, shared by the pushers of every engine of a run.

Why shared: with K engines behind the router (engine/router.py) each version must be written once,
not K times — every engine's pusher asks this object for the version's file and the first one
writes it. Files are written atomically (base.write_atomically) and only the newest `keep` versions
are kept: an engine that is down needs the newest file to be re-admitted, never an older one.
Names carry a tag of this writer, so two runs sharing a directory never touch each other's files.
"""

from __future__ import annotations

import os
import threading
import uuid
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from forgerl.weights.base import write_atomically


class WeightDir:
    """`write(state_dict, version)` -> the path of that version's file (written once)."""

    def __init__(self, root: str | os.PathLike[str], *, keep: int = 2, fsync: bool = False, tag: str | None = None) -> None:
        if keep < 1:
            raise ValueError("keep must be >= 1: the newest version's file must stay")
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        self.keep, self.fsync = keep, fsync
        self.tag = tag or uuid.uuid4().hex[:8]
        self._versions: dict[int, Path] = {}
        self._lock = threading.Lock()  # the router pushes to its engines from several threads at once

    def name_of(self, version: int) -> str:
        return f"policy-{self.tag}-v{version:08d}.safetensors"

    def path_of(self, version: int) -> Path | None:
        return self._versions.get(version)

    def write(self, state_dict: Mapping[str, Any], version: int) -> Path:
        with self._lock:
            path = self._versions.get(version)
            if path is None or not path.is_file():
                path = self.root / self.name_of(version)
                write_atomically(state_dict, path, fsync=self.fsync)
                self._versions[version] = path
                for old in sorted(self._versions)[:-self.keep]:
                    self._versions.pop(old).unlink(missing_ok=True)
            return path

    def close(self) -> None:
        """Delete every file this writer made (the run is over)."""
        with self._lock:
            for path in self._versions.values():
                path.unlink(missing_ok=True)
            self._versions.clear()
