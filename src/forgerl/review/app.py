"""The review web app (FastAPI, server-rendered; no JavaScript).

Every page needs a signed-in expert: a GET without a session is redirected to /login, any other
method gets 401. Every POST carries the session's CSRF token (403 without it). Responses carry a
Content-Security-Policy that allows no scripts at all, plus nosniff / frame-deny / no-referrer /
no-store headers. After a successful POST the app redirects (303) to a GET page, with a message
chosen from a fixed list (nothing the client sends is reflected into it).
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import functools
import json
import math
import os
import secrets
import statistics
import threading
from collections import Counter
from collections.abc import Mapping
from typing import Any
from urllib.parse import quote, urlencode

from fastapi import FastAPI, Form, Query, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from forgerl.review.auth import (
    DEFAULT_SESSION_TTL_S,
    LOGIN_CSRF_COOKIE,
    SESSION_COOKIE,
    LoginThrottle,
    Session,
    SessionStore,
    hash_password,
    retry_after_text,
    tokens_match,
    verify_password,
)
from forgerl.review.evidence import EvidenceRefused, read_screenshot
from forgerl.review.labels import agreement, label_queue, record_comment, record_preference, record_rubric
from forgerl.review.render import trajectory_view
from forgerl.review.rubric import DEFAULT_RUBRIC, Rubric
from forgerl.review.templates import make_environment
from forgerl.store import LabelRecord, StoreError, TrajectoryStore, UnknownRecordError
from forgerl.types import TrajectoryStatus

PAGE_SIZE = 200
"""Rows per page of the trajectory list: enough to scan, small enough to render instantly."""
MAX_CONCURRENT_VERIFICATIONS = 4
"""argon2id verification takes ~64 MiB and tens of milliseconds each: cap how many run at once so a
burst of sign-ins cannot exhaust memory (the rest wait for a slot in their worker threads)."""
_CSP = ("default-src 'none'; style-src 'unsafe-inline'; img-src 'self'; form-action 'self'; "
        "frame-ancestors 'none'; base-uri 'none'")
_MESSAGES = {"score": "score saved", "comment": "comment added", "preference": "preference saved",
             "signed-out": "signed out"}


class NotSignedIn(Exception):
    pass


class BadRequest(Exception):
    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.status = status


def _safe_next(url: str | None) -> str:
    """Only a local path may follow sign-in (no open redirect to another site)."""
    if not url or not url.startswith("/") or url.startswith("//") or "\\" in url:
        return "/"
    return url


def _float_or_none(name: str, value: str | None) -> float | None:
    if value is None or value.strip() == "":
        return None
    try:
        number = float(value)
    except ValueError:
        raise BadRequest(f"{name} must be a number, got {value!r}") from None
    if not math.isfinite(number):
        raise BadRequest(f"{name} must be a finite number")
    return number


def _int_or_none(name: str, value: str | None) -> int | None:
    if value is None or value.strip() == "":
        return None
    try:
        return int(value)
    except ValueError:
        raise BadRequest(f"{name} must be a whole number, got {value!r}") from None


def _page_number(value: str | None, n_pages: int) -> int:
    """The 1-based page asked for; a 400 that names the valid range for anything else (also for
    a page past the end: a stale bookmark should say so rather than show an empty table)."""
    if value is None or value.strip() == "":
        return 1
    problem = f"page must be a whole number from 1 to {n_pages}"
    text = value.strip()
    if not (text.isascii() and text.isdigit()) or len(text) > 12:
        raise BadRequest(f"{problem}, got {value[:20]!r}{'…' if len(value) > 20 else ''}")
    number = int(text)
    if not 1 <= number <= n_pages:
        raise BadRequest(f"{problem}, got {number}")
    return number


def _page_links(filters: Mapping[str, Any], page: int, n_pages: int) -> dict[str, str]:
    """first/prev/next/last hrefs that keep every filter (empty filters are left out of the URL)."""
    kept = {k: str(v) for k, v in filters.items() if v is not None and v != ""}

    def href(n: int) -> str:
        query = urlencode(kept | ({"page": n} if n > 1 else {}))
        return f"/trajectories?{query}" if query else "/trajectories"

    links = {}
    if page > 1:
        links |= {"first": href(1), "prev": href(page - 1)}
    if page < n_pages:
        links |= {"next": href(page + 1), "last": href(n_pages)}
    return links


def _row_count(total: int, page: int) -> str:
    """'rows 201–400 of 1,234': where this page sits in the whole result."""
    if total == 0:
        return "no matching trajectories"
    first = (page - 1) * PAGE_SIZE + 1
    return f"rows {first:,}–{min(total, page * PAGE_SIZE):,} of {total:,}"


def _label_summary(lab: LabelRecord) -> str:
    p = lab.payload
    if lab.kind == "rubric":
        text = " · ".join(f"{k} {v}" for k, v in p.get("scores", {}).items())
        return text + (f" — {p['note']}" if p.get("note") else "")
    if lab.kind == "preference":
        loser = lab.other_trajectory_id if p.get("preferred") == lab.trajectory_id else lab.trajectory_id
        return f"preferred {p.get('preferred')} over {loser}: {p.get('reason', '')}"
    if lab.kind == "comment":
        return f"message {p.get('message_index')}: {p.get('text', '')}"
    return json.dumps(p, sort_keys=True)


@functools.cache
def _dummy_hash() -> str:
    """Verified against when the name is unknown, so a wrong name costs as long as a wrong password."""
    return hash_password(secrets.token_urlsafe(16))


def create_app(run_dir: str | os.PathLike[str], *, rubric: Rubric = DEFAULT_RUBRIC,
               session_ttl_s: float = DEFAULT_SESSION_TTL_S, rm_scores: Mapping[str, float] | None = None,
               secure_cookies: bool = False, login_throttle: LoginThrottle | None = None) -> FastAPI:
    """The app over the store in `run_dir`. `rm_scores` (trajectory id -> reward-model score) feed
    the label queue; `secure_cookies` marks cookies Secure and sends HSTS (set it whenever the app is
    served over HTTPS); `login_throttle` limits failed sign-ins (default: LoginThrottle())."""
    store = TrajectoryStore(run_dir)
    sessions = SessionStore(session_ttl_s)
    throttle = login_throttle if login_throttle is not None else LoginThrottle()
    verify_slots = threading.BoundedSemaphore(MAX_CONCURRENT_VERIFICATIONS)
    templates = make_environment()
    @contextlib.asynccontextmanager
    async def lifespan(_: FastAPI):
        yield
        store.close()

    app = FastAPI(title="forgerl review", docs_url=None, redoc_url=None, openapi_url=None, lifespan=lifespan)
    app.state.store, app.state.sessions = store, sessions
    app.state.login_throttle, app.state.secure_cookies = throttle, secure_cookies

    def page(name: str, request: Request, session: Session | None, status: int = 200, **context: Any) -> HTMLResponse:
        msg_key = request.query_params.get("msg")
        context.setdefault("message", _MESSAGES.get(msg_key or ""))
        context.setdefault("error", False)
        html = templates.get_template(name).render(expert=session.expert if session else None,
                                                   csrf_token=session.csrf_token if session else "", **context)
        return HTMLResponse(html, status_code=status)

    def signed_in(request: Request) -> Session:
        session = sessions.get(request.cookies.get(SESSION_COOKIE))
        if session is None:
            raise NotSignedIn()
        return session

    def checked(request: Request, csrf_token: str | None) -> Session:
        session = signed_in(request)
        if not tokens_match(session.csrf_token, csrf_token):
            raise BadRequest("missing or wrong CSRF token: reload the page and submit the form again", 403)
        return session

    @app.middleware("http")
    async def security_headers(request: Request, call_next):
        response: Response = await call_next(request)
        response.headers["Content-Security-Policy"] = _CSP
        response.headers["X-Content-Type-Options"] = "nosniff"
        response.headers["X-Frame-Options"] = "DENY"
        response.headers["Referrer-Policy"] = "no-referrer"
        response.headers["Cache-Control"] = "no-store"
        if secure_cookies:
            response.headers["Strict-Transport-Security"] = "max-age=31536000"
        return response

    @app.exception_handler(NotSignedIn)
    async def _not_signed_in(request: Request, exc: NotSignedIn) -> Response:
        if request.method == "GET":
            target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
            return RedirectResponse(f"/login?next={quote(target, safe='')}", status_code=303)
        return HTMLResponse("sign in first", status_code=401)

    @app.exception_handler(BadRequest)
    async def _bad_request(request: Request, exc: BadRequest) -> Response:
        session = sessions.get(request.cookies.get(SESSION_COOKIE))
        return page("runs", request, session, status=exc.status, runs=[], message=str(exc), error=True)

    @app.exception_handler(UnknownRecordError)
    async def _unknown(request: Request, exc: UnknownRecordError) -> Response:
        session = sessions.get(request.cookies.get(SESSION_COOKIE))
        if session is None:
            return await _not_signed_in(request, NotSignedIn())
        return page("runs", request, session, status=404, runs=[], message=str(exc), error=True)

    # -- sign-in -------------------------------------------------------------------------------

    def set_cookie(response: Response, key: str, value: str, max_age: int) -> None:
        response.set_cookie(key, value, max_age=max_age, httponly=True, samesite="strict", secure=secure_cookies,
                            path="/")

    @app.get("/login")
    def login_form(request: Request, next: str = "/") -> Response:
        token = secrets.token_urlsafe(32)
        response = page("login", request, None, login_csrf=token, next_url=_safe_next(next))
        set_cookie(response, LOGIN_CSRF_COOKIE, token, 3600)
        return response

    @app.post("/login")
    def login(request: Request, name: str = Form(""), password: str = Form(""), csrf_token: str = Form(""),
              next: str = Form("/")) -> Response:
        # A plain `def`: FastAPI runs it in a worker thread, so the slow argon2 check never blocks the loop.
        if not tokens_match(request.cookies.get(LOGIN_CSRF_COOKIE), csrf_token):
            raise BadRequest("missing or wrong CSRF token: reload the sign-in page and try again", 403)
        client = request.client.host if request.client else "unknown"
        wait = throttle.admit(name, client)
        if wait is not None:
            response = page("login", request, None, status=429, login_csrf=csrf_token, next_url=_safe_next(next),
                            message="too many failed sign-ins for this account or from this address; "
                                    f"{retry_after_text(wait)}", error=True)
            response.headers["Retry-After"] = str(math.ceil(wait))
            return response
        try:
            record = store.get_expert(name) if name else None
            with verify_slots:
                ok = verify_password(record.password_hash if record else _dummy_hash(), password)
            ok = ok and record is not None
        except BaseException:
            throttle.finished(name, client)
            raise
        if not ok:
            throttle.failed(name, client)
            return page("login", request, None, status=401, login_csrf=csrf_token, next_url=_safe_next(next),
                        message="unknown expert or wrong password", error=True)
        throttle.succeeded(name, client)
        token, _ = sessions.create(name)
        response = RedirectResponse(_safe_next(next), status_code=303)
        set_cookie(response, SESSION_COOKIE, token, int(sessions.ttl_s))
        response.delete_cookie(LOGIN_CSRF_COOKIE, path="/")
        return response

    @app.post("/logout")
    def logout(request: Request, csrf_token: str = Form("")) -> Response:
        checked(request, csrf_token)
        sessions.drop(request.cookies.get(SESSION_COOKIE))
        response = RedirectResponse("/login?msg=signed-out", status_code=303)
        response.delete_cookie(SESSION_COOKIE, path="/")
        return response

    # -- browsing ------------------------------------------------------------------------------

    def label_counts() -> Counter[str]:
        counts: Counter[str] = Counter()
        for lab in store.labels(current_only=True):
            counts[lab.trajectory_id] += 1
            if lab.other_trajectory_id:
                counts[lab.other_trajectory_id] += 1
        return counts

    @app.get("/")
    def runs(request: Request) -> Response:
        session = signed_in(request)
        counts = label_counts()
        out = []
        for run in store.runs():
            rows = store.query_rows(run_id=run.id)
            rewards = [r["reward"] for r in rows if r["reward"] is not None]
            out.append({"id": run.id, "status": run.status, "n": len(rows),
                        "mean_reward": f"{statistics.fmean(rewards):.3f}" if rewards else "—",
                        "n_labels": sum(counts[r["id"]] for r in rows)})
        return page("runs", request, session, runs=out)

    @app.get("/trajectories")
    def trajectories(request: Request, run: str | None = None, family: str | None = None, status: str | None = None,
                     min_reward: str | None = None, max_reward: str | None = None, step: str | None = None,
                     perturbation: str | None = None, q: str | None = None,
                     page_asked: str | None = Query(None, alias="page")) -> Response:
        session = signed_in(request)
        f = {"run": run or None, "family": family or None, "status": status or None,
             "min_reward": _float_or_none("min_reward", min_reward),
             "max_reward": _float_or_none("max_reward", max_reward),
             "step": _int_or_none("step", step), "perturbation": perturbation or None, "q": (q or "").strip() or None}
        if f["perturbation"] not in (None, "yes", "no"):
            raise BadRequest("perturbation must be yes, no or empty")
        # Pages are slices of one stable order (created_at, then storage sequence: a total order),
        # so walking the pages shows every matching trajectory exactly once.
        try:
            filters = {"run_id": f["run"], "family": f["family"], "status": f["status"],
                       "min_reward": f["min_reward"], "max_reward": f["max_reward"], "step": f["step"]}
            if f["perturbation"] or f["q"]:
                matches = search_matches(filters, f["q"], f["perturbation"])
                total = len(matches)
                n_pages = max(1, math.ceil(total / PAGE_SIZE))
                number = _page_number(page_asked, n_pages)
                rows = matches[(number - 1) * PAGE_SIZE:number * PAGE_SIZE]
            else:
                total = store.count(**filters)
                n_pages = max(1, math.ceil(total / PAGE_SIZE))
                number = _page_number(page_asked, n_pages)
                rows = store.query_rows(**filters, limit=number * PAGE_SIZE)[(number - 1) * PAGE_SIZE:]
        except StoreError as exc:
            raise BadRequest(str(exc)) from None
        counts = label_counts()
        for row in rows:
            row["n_labels"] = counts[row["id"]]
        families = sorted({r["family"] for r in store.query_rows() if r["family"]})
        return page("list", request, session, f=f, rows=rows, families=families,
                    statuses=[s.value for s in TrajectoryStatus], row_count=_row_count(total, number),
                    page_number=number, n_pages=n_pages, links=_page_links(f, number, n_pages))

    def search_matches(filters: dict[str, Any], q: str | None, perturbation: str | None) -> list[dict[str, Any]]:
        """Rows whose stored JSON (or id) contains `q` and whose perturbation is as asked: a scan of
        the payloads, in the store's order."""
        needle = (q or "").lower()
        rows = []
        for row, text in store.iter_export_rows(**filters):
            if needle and needle not in text.lower() and needle not in row["id"].lower():
                continue
            if perturbation:
                has = json.loads(text).get("perturbations") is not None  # current schema: the store upgrades old payloads
                if has != (perturbation == "yes"):
                    continue
            rows.append(row)
        return rows

    def labels_for_view(trajectory_id: str) -> list[dict[str, Any]]:
        return [{"expert": lab.expert, "kind": lab.kind, "rubric_version": lab.rubric_version,
                 "when": _dt.datetime.fromtimestamp(lab.created_at, _dt.UTC).strftime("%Y-%m-%d %H:%M UTC"),
                 "summary": _label_summary(lab)} for lab in store.labels(trajectory_id, current_only=True)]

    @app.get("/t/{trajectory_id}")
    def trajectory(request: Request, trajectory_id: str, tokens: int = 0) -> Response:
        session = signed_in(request)
        traj = store.get_trajectory(trajectory_id)
        siblings = [r["id"] for r in store.query_rows() if r["task_id"] == traj.task_id and r["id"] != traj.id]
        mine = [lab for lab in store.labels(trajectory_id, expert=session.expert, kind="rubric", current_only=True)
                if lab.rubric_version == rubric.version]
        return page("trajectory", request, session, v=trajectory_view(traj), tokens=bool(tokens), rubric=rubric,
                    siblings=siblings[:5], labels=labels_for_view(trajectory_id),
                    my_scores=mine[-1].payload["scores"] if mine else {},
                    my_note=mine[-1].payload.get("note", "") if mine else "")

    @app.get("/t/{trajectory_id}/screenshot/{index}")
    def screenshot(request: Request, trajectory_id: str, index: int) -> Response:
        """A screenshot an AppDev verdict of the trajectory names, by its index (evidence.py decides
        what may be read: PNG files inside the trajectory's evidence directory only)."""
        signed_in(request)
        evidence = store.get_trajectory(trajectory_id).metadata.get("reward_evidence")
        try:
            data = read_screenshot(evidence, index)
        except EvidenceRefused as exc:
            return Response(f"screenshot {index} not served: {exc}", status_code=404, media_type="text/plain")
        return Response(data, media_type="image/png")

    # -- labelling -----------------------------------------------------------------------------

    @app.post("/t/{trajectory_id}/rubric")
    async def save_rubric(request: Request, trajectory_id: str) -> Response:
        form = await request.form()
        session = checked(request, form.get("csrf_token"))
        scores: dict[str, int] = {}
        for item in rubric.items:
            raw = form.get(f"score_{item.name}")
            if raw is None or raw == "":
                raise BadRequest(f"score every rubric item: {item.name!r} has no score")
            value = _int_or_none(item.name, str(raw))
            assert value is not None
            scores[item.name] = value
        try:
            record_rubric(store, trajectory_id, session.expert, rubric, scores, str(form.get("note", ""))[:4000])
        except ValueError as exc:
            raise BadRequest(str(exc)) from None
        return RedirectResponse(f"/t/{quote(trajectory_id, safe='')}?msg=score", status_code=303)

    @app.post("/t/{trajectory_id}/comment")
    def save_comment(request: Request, trajectory_id: str, csrf_token: str = Form(""),
                     message_index: str = Form(""), text: str = Form("")) -> Response:
        session = checked(request, csrf_token)
        index = _int_or_none("message_index", message_index)
        if index is None or not text.strip():
            raise BadRequest("a comment needs a message and some text")
        try:
            record_comment(store, trajectory_id, session.expert, index, text.strip(), rubric.version)
        except ValueError as exc:
            raise BadRequest(str(exc)) from None
        return RedirectResponse(f"/t/{quote(trajectory_id, safe='')}?msg=comment#step-{index}", status_code=303)

    @app.get("/compare")
    def compare(request: Request, a: str, b: str | None = None) -> Response:
        session = signed_in(request)
        ta = store.get_trajectory(a)
        if b is None:
            others = [r["id"] for r in store.query_rows() if r["task_id"] == ta.task_id and r["id"] != a]
            if not others:
                raise BadRequest(f"no other trajectory of task {ta.task_id!r} to compare {a!r} with")
            b = others[0]
        tb = store.get_trajectory(b)
        if ta.task_id != tb.task_id or a == b:
            raise BadRequest("an A/B comparison needs two different trajectories of the same task")
        prefs = [lab for lab in store.labels(a, kind="preference", current_only=True)
                 if {lab.trajectory_id, lab.other_trajectory_id} == {a, b}]
        mine = [lab for lab in prefs if lab.expert == session.expert]
        others = [{"expert": lab.expert, **lab.payload} for lab in prefs if lab.expert != session.expert]
        return page("compare", request, session, a=trajectory_view(ta), b=trajectory_view(tb), others=others,
                    mine=mine[-1].payload["preferred"] if mine else None,
                    my_reason=mine[-1].payload["reason"] if mine else "")

    @app.post("/compare")
    def save_preference(request: Request, csrf_token: str = Form(""), a: str = Form(""), b: str = Form(""),
                        preferred: str = Form(""), reason: str = Form("")) -> Response:
        session = checked(request, csrf_token)
        ta, tb = store.get_trajectory(a), store.get_trajectory(b)
        if ta.task_id != tb.task_id:
            raise BadRequest("an A/B comparison needs two trajectories of the same task")
        if not reason.strip():
            raise BadRequest("say why: a preference needs a reason")
        try:
            record_preference(store, a, b, session.expert, preferred, reason.strip(), rubric.version)
        except (ValueError, StoreError) as exc:
            raise BadRequest(str(exc)) from None
        return RedirectResponse(f"/compare?a={quote(a, safe='')}&b={quote(b, safe='')}&msg=preference", status_code=303)

    @app.get("/agreement")
    def agreement_page(request: Request) -> Response:
        session = signed_in(request)
        return page("agreement", request, session, ag=agreement(store, rubric))

    @app.get("/queue")
    def queue_page(request: Request) -> Response:
        session = signed_in(request)
        entries = label_queue(store, rubric, expert=session.expert, rm_scores=rm_scores)
        return page("queue", request, session, entries=entries, has_rm=rm_scores is not None)

    return app
