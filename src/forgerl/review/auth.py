"""Sign-in for the review app: argon2 password hashes, expiring sessions, CSRF tokens.

- Passwords are hashed with argon2id (argon2-cffi, the reference implementation's bindings); the
  store keeps only the hash. Verification is constant-time and rehashes when parameters change.
- Sessions are random 256-bit tokens held in memory by the server (restarting it signs everyone
  out, which is fine for a local tool) and expire `ttl_s` after sign-in. The cookie is HttpOnly and
  SameSite=Strict.
- CSRF: every session carries its own random token; every POST form embeds it and the server
  compares it in constant time (synchronizer-token pattern). The sign-in form, before any session
  exists, uses a double-submit cookie instead.
"""

from __future__ import annotations

import hmac
import secrets
import threading
import time
from dataclasses import dataclass

SESSION_COOKIE = "forgerl_review_session"
LOGIN_CSRF_COOKIE = "forgerl_review_login_csrf"
DEFAULT_SESSION_TTL_S = 8 * 3600.0


def _hasher():  # argon2-cffi is an optional dependency: import it where it is used
    try:
        from argon2 import PasswordHasher
    except ImportError as exc:  # pragma: no cover - depends on the install
        raise RuntimeError("the review app needs argon2-cffi: pip install -e '.[review]'") from exc
    return PasswordHasher()


def hash_password(password: str) -> str:
    if len(password) < 8:
        raise ValueError("a password needs at least 8 characters")
    return _hasher().hash(password)


def verify_password(password_hash: str, password: str) -> bool:
    from argon2.exceptions import InvalidHashError, VerificationError

    try:
        return bool(_hasher().verify(password_hash, password))
    except (VerificationError, InvalidHashError):
        return False


def tokens_match(expected: str | None, given: str | None) -> bool:
    """Constant-time comparison; a missing token never matches."""
    if not expected or not given:
        return False
    return hmac.compare_digest(expected.encode(), given.encode())


@dataclass(frozen=True)
class Session:
    expert: str
    csrf_token: str
    expires_at: float


class SessionStore:
    """Server-side sessions keyed by an unguessable token. Thread-safe; expired ones are dropped
    when looked up (and swept on every sign-in)."""

    def __init__(self, ttl_s: float = DEFAULT_SESSION_TTL_S, clock=time.time) -> None:
        if ttl_s <= 0:
            raise ValueError(f"session ttl must be positive, got {ttl_s}")
        self.ttl_s = ttl_s
        self._clock = clock
        self._sessions: dict[str, Session] = {}
        self._lock = threading.Lock()

    def create(self, expert: str) -> tuple[str, Session]:
        token = secrets.token_urlsafe(32)
        session = Session(expert, secrets.token_urlsafe(32), self._clock() + self.ttl_s)
        with self._lock:
            now = self._clock()
            self._sessions = {t: s for t, s in self._sessions.items() if s.expires_at > now}
            self._sessions[token] = session
        return token, session

    def get(self, token: str | None) -> Session | None:
        if not token:
            return None
        with self._lock:
            session = self._sessions.get(token)
            if session is not None and session.expires_at <= self._clock():
                del self._sessions[token]
                return None
            return session

    def drop(self, token: str | None) -> None:
        with self._lock:
            self._sessions.pop(token or "", None)
