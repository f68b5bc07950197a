"""The gateway's state and its Python API: open a session, authenticate it, run its tools, end it.

The HTTP app (app.py) is a thin layer over this; an in-process driver (a trainer that runs
black-box agents, a test) can use the same object directly. Ending a session scores it with its
environment, exactly as the white-box agent loop does, and appends the trajectory to the store
before the call returns (acknowledged means durable).
"""

from __future__ import annotations

import asyncio
import hmac
import logging
import secrets
import time
import uuid
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from forgerl.agent.recording import score_episode
from forgerl.agent.tools import INFRA_BOUNDARIES, close_env, run_tool_call
from forgerl.chat.base import ChatFormat
from forgerl.envs.base import make_env, sample_task
from forgerl.gateway.sessions import Session, key_digest, new_key
from forgerl.types import Boundary, Failure, Message, ToolCall, Trajectory, TrajectoryStatus

if TYPE_CHECKING:
    from forgerl.engine.base import Engine
    from forgerl.envs.base import Task
    from forgerl.store import TrajectoryStore

log = logging.getLogger(__name__)


class GatewayError(Exception):
    """A request the gateway refuses: becomes an OpenAI-style error with `status`."""

    def __init__(self, status: int, message: str, *, code: str | None = None, param: str | None = None) -> None:
        super().__init__(message)
        self.status, self.message, self.code, self.param = status, message, code, param


def unauthorized(message: str) -> GatewayError:
    return GatewayError(401, message, code="invalid_api_key")


@dataclass
class OpenedSession:
    session: Session
    api_key: str  # shown once: the gateway keeps only its digest


class Gateway:
    """Sessions over one engine and chat format; finished trajectories go to `store` (run `run_id`).

    `restore_reasoning`: give back reasoning that an agent's client dropped from a reply this
    session produced (sessions.py), so such agents still extend one token-exact branch.
    `admin_key`: the bearer token of the admin API (open, list, read and end any session). When
    None a random one is made (read it from `gateway.admin_key`; `forgerl gateway` prints it):
    admin is never "whoever is not a session", because a dead or guessed key would then be admin.
    `admin=False` switches the admin API off (403); sessions are then opened in-process only.
    """

    def __init__(
        self, engine: Engine, chat_format: ChatFormat, *, store: TrajectoryStore | None = None,
        run_id: str | None = None, admin_key: str | None = None, session_ttl_s: float = 3600.0,
        tool_timeout_s: float | None = 300.0, served_model_name: str | None = None, keep_finished: int = 10_000,
        restore_reasoning: bool = True, admin: bool = True,
    ) -> None:
        if session_ttl_s <= 0:
            raise ValueError(f"session_ttl_s must be > 0, got {session_ttl_s}")
        if admin_key is not None and len(admin_key) < 16:
            raise ValueError("admin_key must be at least 16 characters (a guessable key is no key); "
                             "leave it unset to have one generated")
        if not admin and admin_key is not None:
            raise ValueError("admin=False switches the admin API off: do not pass an admin_key with it")
        self.engine, self.fmt = engine, chat_format
        self.store = store
        self.admin_key: str | None = (admin_key or new_admin_key()) if admin else None
        self._admin_digest = key_digest(self.admin_key).encode() if self.admin_key is not None else None
        self.run_id = run_id if run_id is not None or store is None else store.add_run({"source": "gateway"})
        self.session_ttl_s, self.tool_timeout_s = session_ttl_s, tool_timeout_s
        self.restore_reasoning = restore_reasoning
        self.model_name = served_model_name or engine.model_name
        self.sessions: dict[str, Session] = {}
        self._by_digest: dict[str, str] = {}
        self.finished: dict[str, Trajectory] = {}  # session id -> trajectory (the newest `keep_finished`)
        self._keep_finished = keep_finished
        self.counters = {"sessions_opened": 0, "sessions_ended": 0, "sessions_expired": 0, "calls": 0}

    # --- sessions -----------------------------------------------------------------------------
    def open_session(
        self, *, family: str | None = None, seed: int = 0, difficulty: int | None = None, task: Task | None = None,
        group_id: str | None = None, metadata: dict[str, Any] | None = None, ttl_s: float | None = None,
    ) -> OpenedSession:
        """A new session. With `family` (or a `task`, whose family is used) an environment is made
        and reset: its opening messages and tools are the session's task; without, the session only
        records calls and its reward comes with `end`."""
        ttl = self.session_ttl_s if ttl_s is None else ttl_s
        if ttl <= 0:
            raise GatewayError(400, f"ttl_s must be > 0, got {ttl}", param="ttl_s")
        env = None
        opening: list[Message] = []
        tools = []
        if task is not None or family is not None:
            try:
                task = task if task is not None else sample_task(family or "", seed, difficulty)
                env = make_env(task.family, seed)
                opening = env.reset(task)
                tools = env.tools()
            except (KeyError, ValueError) as exc:
                raise GatewayError(400, f"cannot make the task: {exc.args[0] if exc.args else exc}",
                                   param="family") from None
        sid = f"sess_{uuid.uuid4().hex[:20]}"
        key = new_key()
        traj = Trajectory(task_id=task.id if task else "", group_id=group_id, chat_format=self.fmt.name,
                          tools=tools, messages=list(opening),
                          metadata={"source": "gateway", "session_id": sid, "new_roots": [], **(metadata or {})})
        if task is not None:
            traj.family, traj.difficulty = task.family, task.difficulty
        session = Session(sid, key_digest(key), time.time() + ttl, traj, env, task, tools, opening)
        self.sessions[sid] = session
        self._by_digest[session.key_digest] = sid
        self.counters["sessions_opened"] += 1
        return OpenedSession(session, key)

    def authenticate(self, authorization: str | None) -> Session:
        """The live session a bearer credential belongs to; 401 for unknown, ended or expired."""
        key = bearer(authorization)
        if key is None:
            raise unauthorized("missing credential: send 'Authorization: Bearer <session api_key>'")
        sid = self._by_digest.get(key_digest(key))
        session = self.sessions.get(sid) if sid is not None else None
        if session is None:
            raise unauthorized("unknown or expired session credential; open a new session")
        if session.expired():
            raise unauthorized(f"session {session.id} expired; open a new session")
        return session

    def is_admin(self, authorization: str | None) -> bool:
        """True only for the admin key, compared in constant time (as digests, so not even its
        length leaks)."""
        key = bearer(authorization)
        if key is None or self._admin_digest is None:
            return False
        return hmac.compare_digest(key_digest(key).encode(), self._admin_digest)

    def check_admin(self, authorization: str | None) -> None:
        if self.is_admin(authorization):
            return
        if self._admin_digest is None:
            raise GatewayError(403, "the admin API is off on this gateway (started with admin=False); open "
                                    "sessions in-process with Gateway.open_session", code="admin_disabled")
        key = bearer(authorization)
        if key is not None and key_digest(key) in self._by_digest:
            raise GatewayError(403, "a session credential cannot use the admin API", code="forbidden")
        raise unauthorized("this endpoint needs the gateway's admin key as 'Authorization: Bearer <key>' "
                           "(printed by `forgerl gateway` at start, or FORGERL_GATEWAY_ADMIN_KEY)")

    def session_for(self, sid: str, authorization: str | None, *, admin_ok: bool = False) -> Session:
        """Session `sid`, acting with `authorization`: its own key, or (when `admin_ok`) the admin key.
        Another session's key is a 403: it is authenticated, but not for this session."""
        if admin_ok and self.is_admin(authorization):
            session = self.sessions.get(sid)
            if session is None:
                raise GatewayError(404, f"no live session {sid!r}", code="session_not_found")
            return session
        session = self.authenticate(authorization)
        if session.id != sid:
            raise GatewayError(403, f"this credential belongs to another session, not {sid}", code="forbidden")
        return session

    # --- tools and ending ---------------------------------------------------------------------
    async def call_tool(self, session: Session, name: str, arguments: dict[str, Any],
                        call_id: str | None = None) -> tuple[str, bool]:
        """Run one of the session's environment tools; (observation, is_error). Never raises for a
        tool's own failure: like in the white-box loop, it is an observation and a recorded error."""
        if session.env is None:
            raise GatewayError(400, "this session has no environment, so it has no tools to run",
                               code="no_environment")
        ids = {"id": call_id} if call_id else {}
        call = ToolCall(**ids, name=name, arguments=arguments)
        outcome = await run_tool_call(session.env, call, session.tools, len(session.trajectory.calls),
                                      self.tool_timeout_s)
        failure = outcome.failure
        if failure is not None and failure.boundary in INFRA_BOUNDARIES:
            # the sandbox or verifier broke, not the agent: the session ends FAILED at that boundary
            # (no reward, kept out of the loss), like the white-box loop does (contract 4)
            await self.end_session(session, status=TrajectoryStatus.FAILED, failure=failure,
                                   reason=f"{failure.boundary.value} failure: {failure.message}")
        elif failure is not None:
            session.trajectory.errors.append(failure)
        return outcome.message.content, failure is not None

    async def end_session(self, session: Session, *, status: TrajectoryStatus = TrajectoryStatus.COMPLETED,
                          reason: str = "ended by the client", reward: float | None = None,
                          failure: Failure | None = None) -> Trajectory:
        """Close the session (its credential stops working), score it and store the trajectory."""
        if session.ended:
            raise GatewayError(409, f"session {session.id} already ended", code="session_ended")
        session.ended = True
        self._forget(session)
        traj = session.trajectory
        traj.status = status
        traj.end_reason = reason
        try:
            if status == TrajectoryStatus.FAILED:
                traj.failure = failure or Failure(boundary=Boundary.AGENT, message=reason, turn=len(traj.calls))
                traj.reward, traj.reward_breakdown = None, {}
            elif session.env is not None:
                score_episode(traj, session.env)  # the agent loop's scorer: a verifier crash is FAILED
            elif reward is not None:
                traj.reward, traj.reward_breakdown = float(reward), {"client": float(reward)}
        finally:
            if session.env is not None:
                await close_env(session.env, traj)
        await self._keep(session, traj)
        self.counters["sessions_ended"] += 1
        return traj

    async def expire(self, now: float | None = None) -> list[Trajectory]:
        """End every session past its deadline as FAILED (timeout): an abandoned rollout is an
        infrastructure failure, kept out of the loss but stored."""
        out = []
        for session in [s for s in self.sessions.values() if s.expired(now) and not s.ended]:
            traj = await self.cut_off(session, "session expired before it was ended", reason="session expired")
            self.counters["sessions_expired"] += 1
            out.append(traj)
        return out

    def _forget(self, session: Session) -> None:
        self.sessions.pop(session.id, None)
        self._by_digest.pop(session.key_digest, None)

    async def cut_off(self, session: Session, message: str, *, reason: str) -> Trajectory:
        """End a live session the client did not end (it expired, the gateway is stopping): FAILED
        at the timeout boundary, no reward (kept out of the loss), environment closed, stored."""
        session.ended = True
        self._forget(session)
        traj = session.trajectory
        traj.status, traj.reward, traj.reward_breakdown = TrajectoryStatus.FAILED, None, {}
        traj.failure = Failure(boundary=Boundary.TIMEOUT, message=message, turn=len(traj.calls))
        traj.end_reason = reason
        if session.env is not None:
            await close_env(session.env, traj)
        await self._keep(session, traj)
        return traj

    async def _keep(self, session: Session, traj: Trajectory) -> None:
        if self.store is not None and self.run_id is not None:
            await asyncio.to_thread(self.store.add_trajectory, traj, self.run_id)
        self.finished[session.id] = traj
        while len(self.finished) > self._keep_finished:
            self.finished.pop(next(iter(self.finished)))


def new_admin_key() -> str:
    """A fresh admin credential (256 random bits), told apart from session keys by its prefix."""
    return "fgw-admin-" + secrets.token_urlsafe(32)


def bearer(authorization: str | None) -> str | None:
    if not authorization:
        return None
    scheme, _, token = authorization.partition(" ")
    token = token.strip()
    return token if scheme.lower() == "bearer" and token else None
