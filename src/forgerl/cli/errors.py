"""The one place where an exception that escapes a command becomes what the user reads.

A user's mistake (a typo'd config key, a missing directory, an unknown family, a port in use) is
shown as `error: <what is wrong>` and, where there is one, `hint: <what to do>` on stderr, exit
status 2. Anything else is a bug: one line naming it, a pointer to `--debug`, exit status 1.
`--debug` (or FORGERL_DEBUG=1) shows the full traceback instead. Kept free of heavy imports so
`forgerl --help` stays fast.
"""

from __future__ import annotations

import errno
import os
import sys
import traceback
from dataclasses import dataclass
from typing import TextIO

from forgerl.errors import ForgerlError

EXIT_USER_ERROR = 2
EXIT_BUG = 1
DEBUG_ENV = "FORGERL_DEBUG"
DEBUG_HINT = "run with --debug (or FORGERL_DEBUG=1) for the traceback"


@dataclass(frozen=True)
class UserError:
    """What a user-facing error says: the problem, and optionally what to do about it."""

    what: str
    hint: str | None = None


def add_hint(exc: ForgerlError, hint: str) -> ForgerlError:
    """`exc` with `hint` as its what-to-do line unless it already carries one: a command knows what
    the user should do next better than the library that raised (`raise add_hint(exc, ...)` re-raises
    the same error, so --debug still shows where it came from)."""
    if not getattr(exc, "hint", None):
        exc.hint = hint
    return exc


def debug_requested(argv: list[str]) -> bool:
    """--debug anywhere before a `--` separator, or FORGERL_DEBUG set to a true value."""
    head = argv[: argv.index("--")] if "--" in argv else argv
    return "--debug" in head or os.environ.get(DEBUG_ENV, "").strip().lower() in ("1", "true", "yes", "on")


def strip_debug(argv: list[str]) -> list[str]:
    """argv without --debug (before `--`), so it may follow the subcommand too (`forgerl train --debug`)."""
    if "--" in argv:
        cut = argv.index("--")
        return [a for a in argv[:cut] if a != "--debug"] + argv[cut:]
    return [a for a in argv if a != "--debug"]


def one_line(text: str) -> str:
    """Messages may span lines (pydantic, wrapped f-strings); the CLI prints each as one line."""
    return " ".join(text.split())


def describe_user_error(exc: BaseException) -> UserError | None:
    """The user-facing form of `exc`, or None when it is not a user's mistake (a bug)."""
    from pydantic import ValidationError

    if isinstance(exc, ForgerlError):
        return UserError(one_line(str(exc)), getattr(exc, "hint", None))
    if isinstance(exc, ValidationError):
        problems = "; ".join(f"{'.'.join(map(str, e['loc'])) or exc.title}: {e['msg']}" for e in exc.errors())
        return UserError(one_line(f"invalid {exc.title}: {problems}"), "correct the values named above")
    if isinstance(exc, KeyError) and exc.args and isinstance(exc.args[0], str) and exc.args[0].startswith("unknown "):
        return UserError(one_line(exc.args[0]))  # the registries' misses: unknown family, format, loss ...
    if isinstance(exc, OSError):
        return _describe_os_error(exc)
    return None


def _describe_os_error(exc: OSError) -> UserError | None:
    if exc.errno == errno.EADDRINUSE:
        return UserError(one_line(f"address already in use ({exc.strerror or exc})"),
                         "another process holds the port: stop it or choose another with --port")
    if exc.errno == errno.EADDRNOTAVAIL:
        return UserError(one_line(f"cannot bind that address ({exc.strerror or exc})"),
                         "pass a --host this machine owns, e.g. 127.0.0.1")
    if exc.filename is None:
        return None
    path = exc.filename
    hints = {
        errno.ENOENT: "check the path (relative paths are taken from the current directory)",
        errno.ENOTDIR: "a part of the path is a file, not a directory: check the path",
        errno.EISDIR: "give the path of a file, not a directory",
        errno.EACCES: "check the file's permissions, or choose a path you can read and write",
        errno.EEXIST: "choose another path, or remove the existing one",
        errno.ENOSPC: "free disk space or choose another location",
    }
    if exc.errno not in hints:
        return None
    return UserError(one_line(f"{exc.strerror or 'cannot use path'}: {path}"), hints[exc.errno])


def report(exc: BaseException, *, debug: bool, stream: TextIO | None = None) -> int:
    """Print `exc` for the user and return the exit status the process should end with."""
    out = stream or sys.stderr
    if debug:
        traceback.print_exception(exc, file=out)
    user = describe_user_error(exc)
    if user is not None:
        if not debug:
            out.write(f"error: {user.what}\n")
            if user.hint:
                out.write(f"hint: {one_line(user.hint)}\n")
        return EXIT_USER_ERROR
    if not debug:
        out.write(f"error: unexpected {type(exc).__name__}: {one_line(str(exc))[:300]}\n")
        out.write(f"hint: this is a bug in forgerl or a plug-in; {DEBUG_HINT}\n")
    return EXIT_BUG
