"""The terminal family's hidden test: a list of checks the verifier runs after `submit`.

A task's test lives in `task.verifier["checks"]` (and `task.verifier["probes"]`), never in the
workspace, and is interpreted here, by the verifier, not by anything the agent can replace:

* file checks (`file`, `sha256`, `absent`, `tree`, `mode`, `archive`) read the workspace from
  the host after the agent's processes are gone. Paths are walked component by component with
  `lstat`, so a planted symlink (to /etc/shadow, or to a file elsewhere in the workspace) fails
  the check instead of being followed; archives are listed and their members hashed without being
  extracted, with caps on members and bytes;
* `git` checks run plumbing commands (`cat-file`, `rev-parse`, `rev-list`, `log --format`) by the
  absolute path /usr/bin/git in a new sandbox run on the same workspace, with global/system config
  off and the repository-config hooks that could run a program disabled (fsmonitor, hooks,
  signature display); no check uses a command that runs filters or diff drivers. Their output is
  compared here, so the agent's config cannot forge a verdict, only describe its repository;
* `run` checks start a *fresh* sandbox holding a copy of the workspace's text files with the
  task's original files laid over it (`overrides`: the service's code, a build's sources), run the
  verifier's own script (given on stdin to /bin/bash, PATH fixed to system directories) and
  compare its stdout here, with expected values that never enter any sandbox.

`probes` are values read from the workspace right after the setup script ran (e.g. the hash of the
commit that introduced a string): they are the expected answers a check compares with, held by the
environment, so rewriting history after setup cannot move the target.
"""

from __future__ import annotations

import hashlib
import io
import os
import stat
import tarfile
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from forgerl.envs.sandbox import Limits, Sandbox, create_sandbox
from forgerl.errors import VerifierError

SYSTEM_PATH = "/usr/local/bin:/usr/bin:/bin"
GIT = "/usr/bin/git"
GIT_SAFE = ["-c", "core.fsmonitor=false", "-c", "core.hooksPath=/dev/null", "-c", "log.showSignature=false",
            "-c", "safe.directory=*", "--no-pager"]
GIT_ENV = ["GIT_CONFIG_GLOBAL=/dev/null", "GIT_CONFIG_NOSYSTEM=1", "GIT_DIR=.git", "GIT_WORK_TREE=.",
           "GIT_OPTIONAL_LOCKS=0", "GIT_TERMINAL_PROMPT=0", "HOME=/nonexistent"]
MAX_FILE_BYTES = 4_000_000
MAX_ARCHIVE_MEMBERS = 500
MAX_COPY_FILES = 400
MAX_COPY_BYTES = 4_000_000
CHECK_LIMITS = Limits(wall_s=60.0, cpu_s=60.0, memory_mb=1024, max_procs=64)
GIT_PLUMBING = {"cat-file", "rev-parse", "rev-list", "log", "ls-tree"}


def normalize(text: str) -> str:
    """Compare text outputs modulo trailing whitespace on lines and blank lines at either end."""
    return "\n".join(line.rstrip() for line in text.strip("\n").splitlines())


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def git_blob_sha(data: bytes) -> str:
    """The object id git gives a file's content (sha1 of 'blob <len>\\0' + content)."""
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()  # noqa: S324 — git's id, not security


@dataclass
class CheckResult:
    name: str
    ok: bool
    detail: str = ""


def _walk(root: Path, rel: str) -> tuple[Path | None, str]:
    """`rel` under `root` without following any symlink; (path, "") or (None, why not)."""
    if not rel or rel.startswith("/") or "\0" in rel:
        return None, f"bad path {rel!r}"
    path = root
    for part in Path(rel).parts:
        if part in ("..", "."):
            return None, f"path {rel!r} leaves the workspace"
        path = path / part
        try:
            info = os.lstat(path)
        except FileNotFoundError:
            return None, f"{rel} does not exist"
        except OSError as exc:
            return None, f"{rel}: {exc.strerror}"
        if stat.S_ISLNK(info.st_mode):
            return None, f"{rel} goes through a symlink ({path.relative_to(root)})"
    return path, ""


def read_bytes(root: Path, rel: str) -> tuple[bytes | None, str]:
    """A regular file's bytes (capped), or None and why."""
    path, why = _walk(root, rel)
    if path is None:
        return None, why
    info = os.lstat(path)
    if not stat.S_ISREG(info.st_mode):
        return None, f"{rel} is not a regular file"
    if info.st_size > MAX_FILE_BYTES:
        return None, f"{rel} is larger than {MAX_FILE_BYTES} bytes"
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
    with os.fdopen(fd, "rb") as fh:
        return fh.read(MAX_FILE_BYTES + 1), ""


def regular_files(root: Path, rel_dir: str = "") -> list[str] | str:
    """Every regular file under `rel_dir`, relative to it and sorted; a symlink or special file
    anywhere below is reported (a string) instead of skipped."""
    if rel_dir:
        base, why = _walk(root, rel_dir)
        if base is None:
            return why
    else:
        base = root
    found: list[str] = []
    for dirpath, dirnames, filenames in os.walk(base):
        for name in [*dirnames, *filenames]:
            full = os.path.join(dirpath, name)
            mode = os.lstat(full).st_mode
            if stat.S_ISLNK(mode):
                return f"{os.path.relpath(full, root)} is a symlink"
            if not stat.S_ISDIR(mode) and not stat.S_ISREG(mode):
                return f"{os.path.relpath(full, root)} is not a regular file"
            if stat.S_ISREG(mode):
                found.append(os.path.relpath(full, base))
    return sorted(found)


def archive_members(data: bytes, fmt: str) -> dict[str, str] | str:
    """{member name: sha256} of an archive's regular files, read without extracting."""
    members: dict[str, str] = {}
    try:
        if fmt == "zip":
            with zipfile.ZipFile(io.BytesIO(data)) as archive:
                infos = archive.infolist()
                if len(infos) > MAX_ARCHIVE_MEMBERS:
                    return f"more than {MAX_ARCHIVE_MEMBERS} members"
                for info in infos:
                    if info.is_dir():
                        continue
                    if info.file_size > MAX_FILE_BYTES:
                        return f"member {info.filename} is too large"
                    members[info.filename.removeprefix("./")] = sha256(archive.read(info))
            return members
        with tarfile.open(fileobj=io.BytesIO(data), mode="r:*") as archive:
            for count, info in enumerate(archive):
                if count >= MAX_ARCHIVE_MEMBERS:
                    return f"more than {MAX_ARCHIVE_MEMBERS} members"
                if info.isdir():
                    continue
                if not info.isreg():
                    return f"member {info.name} is not a regular file (links are not accepted)"
                if info.size > MAX_FILE_BYTES:
                    return f"member {info.name} is too large"
                handle = archive.extractfile(info)
                members[info.name.removeprefix("./")] = sha256(handle.read() if handle else b"")
        return members
    except (tarfile.TarError, zipfile.BadZipFile, OSError, EOFError, ValueError) as exc:
        return f"not a readable {fmt} archive ({type(exc).__name__}: {exc})"


def git_argv(args: list[str]) -> list[str]:
    """The hardened git command line for plumbing `args` (refuses anything else: the check list
    comes from a task file, which is hostile input too)."""
    if not args or args[0] not in GIT_PLUMBING:
        raise VerifierError(f"git check {args!r}: only {sorted(GIT_PLUMBING)} may run in a terminal test")
    return ["/usr/bin/env", "-i", f"PATH={SYSTEM_PATH}", *GIT_ENV, GIT, *GIT_SAFE, *args]


async def run_git(sandbox: Sandbox, args: list[str]) -> tuple[bool, str]:
    result = await sandbox.run(git_argv(args), limits=CHECK_LIMITS)
    if result.timed_out:
        raise VerifierError(f"git {' '.join(args)} timed out in the verifier")
    return result.exit_code == 0, result.stdout


def workspace_copy(root: Path) -> dict[str, str]:
    """The workspace's regular UTF-8 text files outside .git (capped; symlinks and special files
    skipped, never followed), for a fresh check sandbox."""
    files: dict[str, str] = {}
    total = 0
    for dirpath, dirnames, filenames in os.walk(root):
        if dirpath == str(root):
            dirnames[:] = [d for d in dirnames if d not in (".git", ".tmp")]
        dirnames.sort()
        for name in sorted(filenames):
            rel = os.path.relpath(os.path.join(dirpath, name), root)
            if len(files) >= MAX_COPY_FILES or not stat.S_ISREG(os.lstat(os.path.join(dirpath, name)).st_mode):
                continue
            data, _ = read_bytes(root, rel)
            if data is None or total + len(data) > MAX_COPY_BYTES:
                continue
            try:
                files[rel] = data.decode("utf-8")
            except UnicodeDecodeError:
                continue
            total += len(data)
    return files


async def run_fresh(files: dict[str, str], script: str, backend: str) -> tuple[int | None, str, str]:
    """The verifier's `script` in a new sandbox holding `files`: (exit code, stdout, stderr)."""
    async with create_sandbox(files, limits=CHECK_LIMITS, backend=backend) as fresh:
        result = await fresh.run(["/usr/bin/env", "-i", f"PATH={SYSTEM_PATH}", "HOME=/nonexistent", "LANG=C.UTF-8",
                                  "/bin/bash", "--noprofile", "--norc", "-s"], stdin=script)
    if result.timed_out:
        return None, result.stdout, "timed out"
    return result.exit_code, result.stdout, result.stderr


async def capture_probes(sandbox: Sandbox, probes: dict[str, Any]) -> dict[str, str]:
    """Read each probe (a git plumbing query) right after setup; a probe that fails is a broken task."""
    values = {}
    for name, spec in probes.items():
        ok, out = await run_git(sandbox, list(spec["git"]))
        if not ok or not out.strip():
            raise VerifierError(f"probe {name!r} ({spec}) found nothing after the setup script: the task is broken")
        values[name] = normalize(out)
    return values


def _expected(check: dict[str, Any], probes: dict[str, str]) -> str:
    """A check's expected text: its own, or probe values read after setup (several joined by spaces)."""
    if "probe" not in check:
        return str(check["text"])
    names = check["probe"] if isinstance(check["probe"], list) else [check["probe"]]
    missing = [n for n in names if n not in probes]
    if missing:
        raise VerifierError(f"check {check.get('name', check['op'])!r} needs probes {missing} that the task does not define")
    return " ".join(probes[n] for n in names)


async def run_check(check: dict[str, Any], sandbox: Sandbox, probes: dict[str, str],
                    overrides: dict[str, str]) -> CheckResult:
    """One check of the hidden test against the workspace as the agent left it."""
    op, name = check["op"], check.get("name") or f"{check['op']}:{check.get('path', check.get('dir', ''))}"
    root = sandbox.workspace
    if op == "absent":
        path, _ = _walk(root, check["path"])
        return CheckResult(name, path is None and not os.path.lexists(root / check["path"]), "still there")
    if op in ("file", "sha256", "archive"):
        data, why = read_bytes(root, check["path"])
        if data is None:
            return CheckResult(name, False, why)
        if op == "sha256":
            return CheckResult(name, sha256(data) == check["sha256"], "content differs")
        if op == "archive":
            members = archive_members(data, check["format"])
            if isinstance(members, str):
                return CheckResult(name, False, members)
            return CheckResult(name, members == check["members"], f"members {sorted(members)}")
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError:
            return CheckResult(name, False, "not UTF-8 text")
        return CheckResult(name, normalize(text) == normalize(_expected(check, probes)), "text differs")
    if op == "tree":
        listed = regular_files(root, check["dir"])
        if isinstance(listed, str):
            return CheckResult(name, False, listed)
        return CheckResult(name, listed == sorted(check["files"]), f"found {listed[:20]}")
    if op == "mode":
        path, why = _walk(root, check["path"])
        if path is None:
            return CheckResult(name, False, why)
        mode = stat.S_IMODE(os.lstat(path).st_mode)
        return CheckResult(name, mode == int(check["mode"], 8), f"mode {mode:o}")
    if op == "git":
        ok, out = await run_git(sandbox, list(check["args"]))
        expected = _expected(check, probes)
        if check.get("blob_of"):  # HEAD's blob equals the working file's content
            data, why = read_bytes(root, check["blob_of"])
            expected = git_blob_sha(data) if data is not None else "<missing working file>"
        return CheckResult(name, ok and normalize(out) == normalize(expected), f"git printed {out.strip()[:200]!r}")
    if op == "run":
        files = {**workspace_copy(root), **overrides, **check.get("files", {})}
        code, out, err = await run_fresh(files, check["script"], sandbox.backend)
        good = code == 0 and normalize(out) == normalize(check["stdout"])
        return CheckResult(name, good, f"exit {code}; stdout {out.strip()[-200:]!r}; stderr {err.strip()[-300:]!r}")
    raise VerifierError(f"unknown terminal check op {op!r}; the task file is broken")
