"""The cowork workplace: a mailbox, a calendar, notes and one budget spreadsheet, held in memory.

Why in memory: one episode's workplace is a few dozen records, built from the task (so a task is a
complete, JSON-serialisable description of its world) and thrown away afterwards; nothing needs a
database. The snapshot (`WorkplaceState`) is a pydantic model so it travels inside `Task.data`; the
`Workplace` wraps a deep copy and offers the operations the tools expose. Every operation on
untrusted input raises a `ToolError` saying what was wrong and how to fix it.
"""

from __future__ import annotations

import re

from pydantic import BaseModel, ConfigDict, Field

from forgerl.envs.cowork.formula import (
    CellRefError,
    FormulaError,
    RawCell,
    Sheet,
    expand_range,
    normalize_cell,
    parse_cell,
)
from forgerl.errors import ToolError

MAX_NOTE_CHARS = 4000
MAX_REPLY_CHARS = 4000
MAX_SEARCH_RESULTS = 10
_DATE_RE = re.compile(r"^\d{4}-\d{2}-\d{2}$")
_PLAIN_NUMBER_RE = re.compile(r"^[-+]?\$?(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?$|^[-+]?\$?\.\d+$")


class _Record(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Mail(_Record):
    id: str
    sender_name: str
    sender_email: str
    date: str  # ISO date
    subject: str
    body: str

    def header_line(self) -> str:
        return f"{self.id}  {self.date}  From: {self.sender_name} <{self.sender_email}>  Subject: {self.subject}"

    def full_text(self) -> str:
        return f"ID: {self.id}\nDate: {self.date}\nFrom: {self.sender_name} <{self.sender_email}>\nSubject: {self.subject}\n\n{self.body}"


class Event(_Record):
    id: str
    title: str
    date: str
    start: str  # HH:MM, 24 h
    end: str
    location: str
    attendees: list[str] = Field(default_factory=list)
    description: str = ""

    def line(self) -> str:
        who = ", ".join(self.attendees) or "-"
        extra = f"  Notes: {self.description}" if self.description else ""
        return f"{self.id}  {self.date} {self.start}-{self.end}  {self.title}  @ {self.location}  Attendees: {who}{extra}"


class Reply(_Record):
    """A mail the agent sent in reply to a mailbox mail: one of the artifacts the verifier reads."""

    in_reply_to: str
    to: str
    subject: str
    body: str


class WorkplaceState(_Record):
    """Everything in one workplace; serialisable, so a Task can carry its whole world."""

    mails: list[Mail] = Field(default_factory=list)
    events: list[Event] = Field(default_factory=list)
    notes: dict[str, str] = Field(default_factory=dict)  # title -> text
    cells: dict[str, float | str] = Field(default_factory=dict)  # the budget sheet, raw contents
    replies: list[Reply] = Field(default_factory=list)


def parse_cell_input(value: object) -> RawCell:
    """What `write_cell` stores for a value: numbers as numbers (also '1,234.50' or '$12'), a
    string starting with '=' as a formula, anything else as text."""
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise ToolError(f"a cell value must be a number or a string (text or '=formula'), got {value!r}")
    if isinstance(value, int | float):
        return float(value)
    stripped = value.strip()
    if stripped.startswith("="):
        return stripped
    if _PLAIN_NUMBER_RE.match(stripped):
        return float(stripped.replace(",", "").replace("$", ""))
    return value


def _format_value(value: float | str | None) -> str:
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    return f"{value:.2f}" if not value.is_integer() else str(int(value))


class Workplace:
    """The live workplace of one episode. Reads never change state; writes validate first."""

    def __init__(self, state: WorkplaceState) -> None:
        self.state = state.model_copy(deep=True)
        self.sheet = Sheet(self.state.cells)
        self.sheet.evaluate_all()  # a task's initial sheet must be consistent

    # --- mailbox --------------------------------------------------------------------------------

    def search_mail(self, query: str) -> list[Mail]:
        """Mails whose sender, subject or body contain every word of `query` (case-insensitive),
        newest first; an empty query lists the whole mailbox."""
        words = query.lower().split()
        hits = [
            mail
            for mail in self.state.mails
            if all(w in f"{mail.sender_name} {mail.sender_email} {mail.subject} {mail.body}".lower() for w in words)
        ]
        return sorted(hits, key=lambda m: (m.date, m.id), reverse=True)

    def mail(self, mail_id: str) -> Mail:
        for mail in self.state.mails:
            if mail.id == mail_id.strip():
                return mail
        known = ", ".join(m.id for m in self.state.mails[:5])
        raise ToolError(f"unknown mail id {mail_id!r} (ids look like {known}, ...); use search_mail to find ids")

    def send_reply(self, mail_id: str, body: str) -> Reply:
        original = self.mail(mail_id)
        if not body.strip():
            raise ToolError("the reply body is empty; write the message you want to send")
        if len(body) > MAX_REPLY_CHARS:
            raise ToolError(f"the reply is longer than {MAX_REPLY_CHARS} characters; shorten it")
        subject = original.subject if original.subject.lower().startswith("re:") else f"Re: {original.subject}"
        reply = Reply(in_reply_to=original.id, to=original.sender_email, subject=subject, body=body)
        self.state.replies.append(reply)
        return reply

    # --- calendar -------------------------------------------------------------------------------

    def events(self, date: str | None = None, query: str | None = None) -> list[Event]:
        if date is not None and not _DATE_RE.match(date.strip()):
            raise ToolError(f"bad date {date!r}: use the form YYYY-MM-DD, e.g. 2025-03-14, or leave it out")
        words = (query or "").lower().split()
        hits = [
            e
            for e in self.state.events
            if (date is None or e.date == date.strip())
            and all(w in f"{e.title} {e.location} {' '.join(e.attendees)} {e.description}".lower() for w in words)
        ]
        return sorted(hits, key=lambda e: (e.date, e.start, e.id))

    # --- notes ----------------------------------------------------------------------------------

    def note(self, title: str) -> str:
        key = self._note_key(title)
        if key is None:
            known = ", ".join(repr(t) for t in sorted(self.state.notes)) or "none"
            raise ToolError(f"no note titled {title!r}; existing notes: {known}")
        return self.state.notes[key]

    def write_note(self, title: str, text: str) -> bool:
        """Create or overwrite a note; returns True when it replaced an existing one."""
        if not title.strip():
            raise ToolError("a note needs a non-empty title")
        if len(text) > MAX_NOTE_CHARS:
            raise ToolError(f"the note is longer than {MAX_NOTE_CHARS} characters; shorten it")
        key = self._note_key(title)
        self.state.notes[key or title.strip()] = text
        return key is not None

    def _note_key(self, title: str) -> str | None:
        """Titles match case- and whitespace-insensitively: 'budget  CATEGORIES' finds 'Budget categories'."""
        wanted = " ".join(title.lower().split())
        return next((t for t in self.state.notes if " ".join(t.lower().split()) == wanted), None)

    # --- spreadsheet ----------------------------------------------------------------------------

    def read_sheet(self, cell_range: str | None = None) -> str:
        """The sheet as rows of `REF = value`, formula cells followed by their formula."""
        values = self.sheet.evaluate_all()
        refs = sorted(values, key=lambda r: parse_cell(r)[::-1])
        if cell_range:
            wanted = _cells_in(cell_range)
            refs = [r for r in refs if r in wanted]
        lines, current_row = [], None
        for ref in refs:
            row = parse_cell(ref)[1]
            raw = self.sheet.cells[ref]
            shown = _format_value(values[ref])
            if isinstance(raw, str) and raw.startswith("="):
                shown += f"   [formula {raw}]"
            if row != current_row:
                lines.append(f"row {row}:")
                current_row = row
            lines.append(f"  {ref} = {shown}")
        return "\n".join(lines) if lines else f"(no filled cells in {cell_range or 'the sheet'})"

    def write_cell(self, ref: str, value: object) -> float | str | None:
        """Store a value or formula, recompute, and return the cell's new value."""
        raw = parse_cell_input(value)
        ref = normalize_cell(ref)
        self.sheet.write(ref, raw)
        self.state.cells = dict(self.sheet.cells)
        return self.sheet.value(ref)


def _cells_in(cell_range: str) -> set[str]:
    parts = [p.strip() for p in cell_range.split(":")]
    if len(parts) == 1:
        return {normalize_cell(parts[0])}
    if len(parts) == 2:
        return set(expand_range(parts[0], parts[1]))
    raise CellRefError(f"bad range {cell_range!r}: write two corners like A1:D7, or one cell like B3")


__all__ = [
    "CellRefError",
    "Event",
    "FormulaError",
    "Mail",
    "Reply",
    "Workplace",
    "WorkplaceState",
    "parse_cell_input",
]
