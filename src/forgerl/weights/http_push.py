"""Weight transport to a `forgerl serve` process: a safetensors file plus an HTTP push.

    pusher = WeightPusher("http://127.0.0.1:8000", admin_token=token)
    ...after each optimizer step:
    result = pusher.push(inference_weights(policy), version)   # also feeds pusher.alarm

`push` writes the state dict as one safetensors file into a shared directory (`/dev/shm` when it
exists: shared memory, no disk I/O), renamed into place so the server never sees a partial file,
then posts its path and version to the server's `/admin/weights` (server/admin.py), which drains
in-flight requests and swaps the weights. Old files are removed once a newer version is loaded.

A restarted server starts from its own initial weights: `restore()` (called by the engine
client's ServerWatch when the server is back, engine/remote.py) sees the new process in the
server's instance header and posts the newest loaded file again, with its version.

Failed pushes feed the stale-weights alarm (alarm.py).
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from forgerl.weights.alarm import StaleWeightsAlarm
from forgerl.weights.base import PushResult, default_shared_dir, write_atomically

if TYPE_CHECKING:
    from forgerl.weights.files import WeightDir

log = logging.getLogger(__name__)

# The server's process id header (server/admin.py; not imported, to keep FastAPI out of the trainer).
INSTANCE_HEADER = "x-forgerl-server-instance"


class WeightPusher:
    """Pushes new weights with a version to a `forgerl serve` process (see the module docstring)."""

    by_name = False  # post the file's path (the server reads the trainer's path); DirWeightPusher posts its name

    def __init__(self, base_url: str, *, admin_token: str, shared_dir: str | os.PathLike[str] | None = None,
                 mode: str = "drain", drain_timeout_s: float = 60.0, timeout_s: float = 300.0,
                 alarm: StaleWeightsAlarm | None = None, transport: Any = None, files: WeightDir | None = None) -> None:
        import httpx

        self.base_url = base_url.rstrip("/")
        # `files`: a directory shared with the pushers of other engines (engine/router.py): each version
        # is written once for all of them, and the WeightDir, not this pusher, deletes old files.
        self.files = files
        self.shared_dir = files.root if files is not None else Path(shared_dir) if shared_dir is not None else default_shared_dir()
        self.shared_dir.mkdir(parents=True, exist_ok=True)
        self.mode, self.drain_timeout_s = mode, drain_timeout_s
        self.alarm = alarm if alarm is not None else StaleWeightsAlarm()
        self._http = httpx.Client(timeout=timeout_s, headers={"Authorization": f"Bearer {admin_token}"},
                                  transport=transport)
        self._files: list[Path] = []
        self.loaded: tuple[int, str | None] | None = None  # (version, server instance) of the newest push that landed

    def push(self, state_dict: Mapping[str, Any], version: int, *, force: bool = False) -> PushResult:
        """Write, post, verify; never raises for a failed push (the alarm does the shouting),
        except StaleWeightsError when the alarm is set to raise. `force` loads the weights even if
        the server holds a newer version (a trainer attaching to a server it did not start)."""
        t0 = time.perf_counter()
        if self.files is not None:
            path = self.files.write(state_dict, version)
        else:
            path = self.shared_dir / f"policy_v{version:08d}.safetensors"
            write_atomically(state_dict, path)
        size = path.stat().st_size
        t1 = time.perf_counter()
        result = PushResult(version=version, ok=False, engine_version=None, bytes=size, save_s=t1 - t0)
        self._post(path, version, force, result)
        result.request_s = time.perf_counter() - t1
        result.total_s = time.perf_counter() - t0
        if result.ok:
            if path not in self._files:
                self._files.append(path)
            for old in self._files[:-1]:  # the engine holds the newest; earlier files are done with
                if self.files is None:
                    old.unlink(missing_ok=True)
            self._files = self._files[-1:]
        else:
            if path not in self._files and self.files is None:  # never delete the file of the version the engine holds
                path.unlink(missing_ok=True)
            log.error("weight push of version %d failed: %s", version, result.error)
        self.alarm.check(version, result.engine_version)
        return result

    def _post(self, path: Path, version: int, force: bool, result: PushResult) -> None:
        import httpx

        try:
            where = {"name": path.name} if self.by_name else {"path": str(path.resolve())}
            resp = self._http.post(f"{self.base_url}/admin/weights", json={
                **where, "version": version, "mode": self.mode, "drain_timeout_s": self.drain_timeout_s, "force": force})
            body = resp.json()
            if resp.status_code == 200:
                result.ok, result.server, result.engine_version = True, body, body["policy_version"]
                self.loaded = (version, resp.headers.get(INSTANCE_HEADER))
            else:
                result.error = f"HTTP {resp.status_code}: {body.get('error', {}).get('message', body)}"
                result.engine_version = self.engine_version()
        except (httpx.HTTPError, ValueError, KeyError) as exc:
            result.error = f"{type(exc).__name__}: {exc}"

    def engine_version(self) -> int | None:
        """The engine's policy version, or None when it cannot be reached."""
        info = self.engine_info()
        return None if info is None else info[0]

    def engine_info(self) -> tuple[int, str | None] | None:
        """(policy version, server instance id), or None when the engine cannot be reached."""
        import httpx

        try:
            resp = self._http.get(f"{self.base_url}/admin/weights")
            if resp.status_code != 200:
                return None
            return int(resp.json()["policy_version"]), resp.headers.get(INSTANCE_HEADER)
        except (httpx.HTTPError, ValueError, KeyError):
            return None

    def restore(self) -> PushResult | None:
        """After the server came back: if it is another process than the one that loaded our
        newest weights (a restart: it started from its own initial weights), post that file again,
        with its version. None when there is nothing to do (same process, or nothing pushed yet)."""
        if self.loaded is None or not self._files:
            return None
        version, instance = self.loaded
        info = self.engine_info()
        if info is not None and info[1] == instance and info[0] >= version:
            return None
        log.warning("the inference server restarted (it reports %s); pushing policy version %d again",
                    "nothing" if info is None else f"version {info[0]}", version)
        t0 = time.perf_counter()
        result = PushResult(version=version, ok=False, engine_version=None, bytes=self._files[-1].stat().st_size)
        self._post(self._files[-1], version, True, result)
        result.request_s = result.total_s = time.perf_counter() - t0
        if not result.ok:
            log.error("restoring policy version %d on the restarted server failed: %s", version, result.error)
        return result

    def reload(self, version: int) -> bool:
        """Make the server serve `version` (the router re-admitting an engine): True at once when it
        does, else post that version's file again (force: a restarted server starts at its own
        version 0) and True when it landed. False when no file of `version` is at hand."""
        info = self.engine_info()
        if info is not None and info[0] == version and (self.loaded is None or self.loaded[1] in (None, info[1])):
            return True
        path = self.files.path_of(version) if self.files is not None else next(
            (f for f in self._files if f.name == f"policy_v{version:08d}.safetensors"), None)
        if path is None or not path.is_file():
            return False
        result = PushResult(version=version, ok=False, engine_version=None, bytes=path.stat().st_size)
        self._post(path, version, True, result)
        if not result.ok:
            log.error("loading policy version %d into %s failed: %s", version, self.base_url, result.error)
        return result.ok

    def close(self) -> None:
        self._http.close()
        if self.files is not None:
            return  # the shared WeightDir owns the files (closed by whoever made it)
        for f in self._files:
            f.unlink(missing_ok=True)
        try:
            self.shared_dir.rmdir()
        except OSError:
            pass

    def __enter__(self) -> WeightPusher:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
