"""Sign-in for the review app: argon2 password hashes, expiring sessions, CSRF tokens.

- Passwords are hashed with argon2id (argon2-cffi, the reference implementation's bindings); the
  store keeps only the hash. Verification is constant-time and rehashes when parameters change.
- Sessions are random 256-bit tokens held in memory by the server (restarting it signs everyone
  out, which is fine for a local tool) and expire `ttl_s` after sign-in. The cookie is HttpOnly and
  SameSite=Strict.
- CSRF: every session carries its own random token; every POST form embeds it and the server
  compares it in constant time (synchronizer-token pattern). The sign-in form, before any session
  exists, uses a double-submit cookie instead.
- Throttling: `LoginThrottle` locks an account after a few failed sign-ins, and a client address
  after more (password spraying across names), for a lockout that doubles each time. It lives in
  memory: the app is one process (uvicorn, one worker), a restart needs the operator, and keeping
  it out of the store keeps attacker-driven writes off the run's durable file.
"""

from __future__ import annotations

import hmac
import math
import secrets
import threading
import time
from collections import OrderedDict, deque
from dataclasses import dataclass, field

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


@dataclass
class _Attempts:
    """Failed sign-ins of one account or one client address."""

    failures: deque[float] = field(default_factory=deque)
    in_flight: int = 0
    locked_until: float = 0.0
    lockouts: int = 0  # how many times locked since the last success: the next lockout is 2**lockouts longer


class LoginThrottle:
    """Refuses sign-in attempts after too many failures, per account and per client address.

    Protocol, per attempt: `admit(account, client)` returns None (go ahead: verify the password) or
    the seconds to wait; an admitted attempt ends with exactly one of `succeeded`, `failed` or
    `finished` (neither: e.g. a bad form). Attempts in flight count against the limit, so many
    concurrent guesses cannot slip past it. `max_failures` failures of one account within
    `window_s` lock it for `lockout_s`, doubling with each further lockout up to `max_lockout_s`; a
    success clears the account's record. A client address gets `max_client_failures` (more, since
    colleagues may share one); a success does not clear it, so a valid account of one's own cannot
    launder guesses at others. The account lock applies from every address: that lets someone lock
    a user out for a while, which is the price of stopping online guessing; the lockout is bounded.
    Thread-safe; memory is bounded by `max_entries` (the oldest unlocked records go first).
    """

    def __init__(self, *, max_failures: int = 5, max_client_failures: int = 20, window_s: float = 900.0,
                 lockout_s: float = 300.0, max_lockout_s: float = 3600.0, max_entries: int = 100_000,
                 clock=time.monotonic) -> None:
        if min(max_failures, max_client_failures, max_entries) < 1 or min(window_s, lockout_s, max_lockout_s) <= 0:
            raise ValueError("throttle limits, window and lockouts must be positive")
        self.max_failures, self.max_client_failures = max_failures, max_client_failures
        self.window_s, self.lockout_s, self.max_lockout_s = window_s, lockout_s, max_lockout_s
        self.max_entries = max_entries
        self._clock = clock
        self._records: OrderedDict[tuple[str, str], _Attempts] = OrderedDict()
        self._lock = threading.Lock()

    def _keys(self, account: str, client: str) -> tuple[tuple[tuple[str, str], int], ...]:
        return (("account", account[:256]), self.max_failures), (("client", client), self.max_client_failures)

    def admit(self, account: str, client: str) -> float | None:
        """None when this attempt may verify a password, else the seconds until one may."""
        with self._lock:
            now = self._clock()
            waits = [self._wait(self._record(key, now), limit, now) for key, limit in self._keys(account, client)]
            if any(wait is not None for wait in waits):
                return max(wait for wait in waits if wait is not None)
            for key, _ in self._keys(account, client):
                self._records[key].in_flight += 1
            self._evict()
            return None

    def failed(self, account: str, client: str) -> None:
        with self._lock:
            now = self._clock()
            for key, limit in self._keys(account, client):
                record = self._record(key, now)
                record.in_flight = max(0, record.in_flight - 1)
                record.failures.append(now)
                if len(record.failures) >= limit:
                    record.failures.clear()
                    record.locked_until = now + min(self.lockout_s * 2 ** record.lockouts, self.max_lockout_s)
                    record.lockouts += 1
            self._evict()

    def succeeded(self, account: str, client: str) -> None:
        with self._lock:
            (account_key, _), (client_key, _) = self._keys(account, client)
            self._records.pop(account_key, None)
            client_record = self._records.get(client_key)
            if client_record is not None:
                client_record.in_flight = max(0, client_record.in_flight - 1)

    def finished(self, account: str, client: str) -> None:
        """An admitted attempt that neither succeeded nor failed (it never reached the password)."""
        with self._lock:
            for key, _ in self._keys(account, client):
                record = self._records.get(key)
                if record is not None:
                    record.in_flight = max(0, record.in_flight - 1)

    def tracked(self) -> int:
        """How many accounts and addresses have a record (for tests and monitoring)."""
        with self._lock:
            return len(self._records)

    def _record(self, key: tuple[str, str], now: float) -> _Attempts:
        record = self._records.get(key)
        if record is None:
            record = self._records[key] = _Attempts()
        self._records.move_to_end(key)
        while record.failures and record.failures[0] <= now - self.window_s:
            record.failures.popleft()
        if not record.failures and record.locked_until + self.window_s <= now and record.in_flight == 0:
            record.lockouts = 0  # a quiet window after the last lockout: start over at the base lockout
        return record

    def _wait(self, record: _Attempts, limit: int, now: float) -> float | None:
        if record.locked_until > now:
            return record.locked_until - now
        if len(record.failures) + record.in_flight >= limit:
            return 1.0  # the remaining tries are in flight; one of them may lock the key
        return None

    def _evict(self) -> None:
        """Drop the least recently touched records past `max_entries`, keeping locked ones while any
        unlocked record is left to drop."""
        now = self._clock()
        excess = len(self._records) - self.max_entries
        if excess <= 0:
            return
        for key in [k for k, r in self._records.items() if r.locked_until <= now and r.in_flight == 0][:excess]:
            del self._records[key]
            excess -= 1
        for key in list(self._records)[:max(0, excess)]:
            del self._records[key]


def retry_after_text(seconds: float) -> str:
    """'try again in 5 minutes' / '... in 1 minute' / '... in 30 seconds', rounded up."""
    if seconds >= 60:
        minutes = math.ceil(seconds / 60)
        return f"try again in {minutes} minute{'s' if minutes != 1 else ''}"
    whole = max(1, math.ceil(seconds))
    return f"try again in {whole} second{'s' if whole != 1 else ''}"
