"""The `dir` weight transport: a safetensors checkpoint on storage the engines' hosts share (NFS, a
cluster filesystem), for engines on other machines, where /dev/shm (`shm`, http_push.py) cannot reach.

The trainer writes each version once (files.WeightDir: atomically, fsynced, old versions deleted)
and posts only the file's *name* to each server's `/admin/weights`. Each server resolves the name
against the directory it was started with (`forgerl serve --weights-dir PATH`), because the same
storage is often mounted at different paths on different hosts; a name is never a path, so a
server reads nothing outside its own weights directory.
"""

from __future__ import annotations

from forgerl.weights.http_push import WeightPusher


class DirWeightPusher(WeightPusher):
    """A WeightPusher that posts `{"name": ...}`; give it `files=WeightDir(shared_path, fsync=True)`."""

    by_name = True


__all__ = ["DirWeightPusher"]
