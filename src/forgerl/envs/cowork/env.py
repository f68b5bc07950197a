"""The cowork environment: office tools over a workplace, scored on the artifacts left behind.

The agent gets a mailbox, a calendar, notes and a budget sheet (see `workplace.py`) through ten
small tools, does what the user asked, and calls `submit`. The reward is the verifier's verdict
on the final workplace (`verifier.py`: all-or-nothing score, per-component fractions in the
breakdown), plus process counts (tool and format errors) that a reward may use as penalties.
Arguments are re-checked here even though the agent loop checks them against the schemas: an
environment may be driven by any agent program, and model output is untrusted.
"""

from __future__ import annotations

from typing import Any

from pydantic import ValidationError

from forgerl.envs.base import Environment, Family, Task, checked_tool, register_family
from forgerl.envs.cowork.generator import DIFFICULTIES, FAMILY, generate_task, sample_task
from forgerl.envs.cowork.verifier import VerifierSpec
from forgerl.envs.cowork.verifier import verify as verify_workplace
from forgerl.envs.cowork.workplace import MAX_SEARCH_RESULTS, Workplace, WorkplaceState
from forgerl.envs.rewards import Verdict
from forgerl.errors import ConfigError, ToolError, VerifierError
from forgerl.types import Message, ToolCall, ToolSpec, Trajectory

SYSTEM_PROMPT = (
    "You are an office assistant with access to the user's mailbox, calendar, notes and budget "
    "spreadsheet. Look things up with the tools before acting (never guess a number), make the "
    "changes the user asks for, then call submit. Spreadsheet cells hold numbers, text or formulas "
    "such as =SUM(B2:B6) or =B4-C4; formulas recalculate automatically."
)


def _tool(name: str, description: str, properties: dict[str, Any], required: tuple[str, ...] = ()) -> ToolSpec:
    return ToolSpec(
        name=name,
        description=description,
        parameters={"type": "object", "properties": properties, "required": list(required), "additionalProperties": False},
    )


def _text(description: str) -> dict[str, str]:
    return {"type": "string", "description": description}


TOOLS = [
    _tool("search_mail", "Search the mailbox: mails whose sender, subject or body contain every word of the query, newest first. An empty query lists all mails.", {"query": _text("Words to look for, e.g. 'invoice Acme'")}),
    _tool("read_mail", "Read one mail in full.", {"mail_id": _text("The mail id from search_mail, e.g. m3")}, ("mail_id",)),
    _tool("list_events", "List calendar events, optionally only on one date and/or matching words in title, location, attendees or notes.", {"date": _text("YYYY-MM-DD"), "query": _text("Words to look for")}),
    _tool("list_notes", "List the titles of all notes.", {}),
    _tool("read_note", "Read a note by its title.", {"title": _text("The note's title (case-insensitive)")}, ("title",)),
    _tool("write_note", "Create a note, or replace the text of the note with this title.", {"title": _text("The note's title"), "text": _text("The full text of the note")}, ("title", "text")),
    _tool("read_sheet", "Show the budget sheet: every filled cell with its value (formulas with their computed value).", {"range": _text("Optional cell or range, e.g. A1:D7 or C4")}),
    _tool(
        "write_cell",
        "Write one cell of the budget sheet: a number, a text, or a formula starting with '=' (cells, + - * /, parentheses, SUM/MIN/MAX/AVERAGE/ROUND/ABS). The sheet recalculates.",
        {"cell": _text("Cell reference, e.g. C4"), "value": {"type": ["number", "string"], "description": "A number, a text, or a formula like =C4+120.50"}},
        ("cell", "value"),
    ),
    _tool("send_reply", "Reply to a mail (to its sender). If you reply to the same mail again, the latest reply is the one that counts.", {"mail_id": _text("The id of the mail you are answering"), "body": _text("The reply text")}, ("mail_id", "body")),
    _tool("submit", "Call once when the work is finished; ends the episode.", {"summary": _text("Optional short summary of what you did")}),
]


def _string(call: ToolCall, key: str, *, required: bool) -> str | None:
    value = call.arguments.get(key)
    if value is None:
        if required:
            raise ToolError(f"{call.name} needs the argument {key!r}")
        return None
    if not isinstance(value, str):
        raise ToolError(f"{call.name}: argument {key!r} must be a string, got {type(value).__name__} {value!r}")
    return value


class CoworkEnv(Environment):
    family = FAMILY

    def __init__(self, seed: int = 0) -> None:
        self.seed = seed
        self.task: Task | None = None
        self._spec: VerifierSpec | None = None
        self._workplace: Workplace | None = None
        self._submitted = False
        self._tool_calls = 0

    @property
    def done(self) -> bool:
        return self._submitted

    @property
    def workplace(self) -> Workplace:
        if self._workplace is None:
            raise ToolError("the environment has no task yet: call reset(task) first")
        return self._workplace

    def tools(self) -> list[ToolSpec]:
        return list(TOOLS)

    def reset(self, task: Task) -> list[Message]:
        try:
            state = WorkplaceState.model_validate(task.data["workplace"])
            spec = VerifierSpec.model_validate(task.verifier)
        except (KeyError, ValidationError) as exc:
            raise ConfigError(f"task {task.id!r} is not a valid cowork task (need data.workplace and a cowork verifier spec from forgerl.envs.cowork.generator): {exc}") from None
        self.task, self._spec, self._workplace = task, spec, Workplace(state)
        self._submitted, self._tool_calls = False, 0
        return [Message(role="system", content=SYSTEM_PROMPT), Message(role="user", content=task.prompt)]

    async def execute(self, call: ToolCall) -> str:
        workplace = self.workplace
        if self._submitted:
            raise ToolError("the work was already submitted; no further tool calls are accepted")
        checked_tool(call, TOOLS)
        self._tool_calls += 1
        return getattr(self, f"_tool_{call.name}")(workplace, call)

    # --- tools ----------------------------------------------------------------------------------

    def _tool_search_mail(self, workplace: Workplace, call: ToolCall) -> str:
        query = _string(call, "query", required=False) or ""
        hits = workplace.search_mail(query)
        if not hits:
            return f"No mail matches {query!r}. Try fewer or other words (every word must appear)."
        shown = [m.header_line() for m in hits[:MAX_SEARCH_RESULTS]]
        more = f"\n... and {len(hits) - MAX_SEARCH_RESULTS} more; add words to narrow the search" if len(hits) > MAX_SEARCH_RESULTS else ""
        return f"{len(hits)} mail(s) match {query!r}:\n" + "\n".join(shown) + more

    def _tool_read_mail(self, workplace: Workplace, call: ToolCall) -> str:
        return workplace.mail(_string(call, "mail_id", required=True) or "").full_text()

    def _tool_list_events(self, workplace: Workplace, call: ToolCall) -> str:
        date, query = _string(call, "date", required=False), _string(call, "query", required=False)
        events = workplace.events(date=date, query=query)
        if not events:
            return "No events match." + (" Try without the date or with fewer words." if date or query else "")
        return "\n".join(e.line() for e in events)

    def _tool_list_notes(self, workplace: Workplace, call: ToolCall) -> str:
        titles = sorted(workplace.state.notes)
        return "Notes:\n" + "\n".join(f"- {t}" for t in titles) if titles else "There are no notes yet."

    def _tool_read_note(self, workplace: Workplace, call: ToolCall) -> str:
        title = _string(call, "title", required=True) or ""
        return f"{title}\n\n{workplace.note(title)}"

    def _tool_write_note(self, workplace: Workplace, call: ToolCall) -> str:
        title, text = _string(call, "title", required=True) or "", _string(call, "text", required=True) or ""
        replaced = workplace.write_note(title, text)
        return f"Note {title.strip()!r} {'updated' if replaced else 'created'}."

    def _tool_read_sheet(self, workplace: Workplace, call: ToolCall) -> str:
        return workplace.read_sheet(_string(call, "range", required=False))

    def _tool_write_cell(self, workplace: Workplace, call: ToolCall) -> str:
        cell = _string(call, "cell", required=True) or ""
        if "value" not in call.arguments:
            raise ToolError("write_cell needs the argument 'value' (a number, a text or an =formula)")
        value = workplace.write_cell(cell, call.arguments["value"])
        shown = f"{value:.2f}" if isinstance(value, float) else repr(value)
        return f"{cell.strip().upper().replace('$', '')} = {shown}. The sheet was recalculated."

    def _tool_send_reply(self, workplace: Workplace, call: ToolCall) -> str:
        reply = workplace.send_reply(_string(call, "mail_id", required=True) or "", _string(call, "body", required=True) or "")
        return f"Reply sent to {reply.to} ({reply.subject})."

    def _tool_submit(self, workplace: Workplace, call: ToolCall) -> str:
        _string(call, "summary", required=False)
        self._submitted = True
        return "Work submitted. The episode is over."

    # --- verification ---------------------------------------------------------------------------

    def verify(self, trajectory: Trajectory) -> Verdict:
        """The artifact check; `Environment.reward` adds the process signals (envs/rewards.py)."""
        if self.task is None or self._spec is None or self._workplace is None:
            raise VerifierError("reward() called before reset(): no task to verify against")
        outcome, parts, checks = verify_workplace(self._spec, self._workplace.state)
        parts |= {"submitted": float(self._submitted), "tool_calls": float(self._tool_calls)}
        evidence = {
            "checked": "the final workplace: sheet cells after recalculation, untouched cells, replies and notes",
            "template": self.task.data.get("template"),
            "difficulty": self.task.difficulty,
            "checks": [c.model_dump(mode="json") for c in checks],
        }
        return Verdict(outcome=outcome, parts=parts, evidence=evidence)

    def gold_solution(self, task: Task) -> list[list[ToolCall]]:
        if task.gold is None:
            raise ConfigError(f"task {task.id!r} carries no gold path; cowork tasks come with one from generate_task")
        return [list(round_) for round_ in task.gold]


COWORK_FAMILY = Family(
    name=FAMILY,
    make_env=CoworkEnv,
    sample_task=sample_task,
    description="Office work: find invoices, events and notes; update the budget sheet; reply. Difficulty 1-3.",
    difficulties=DIFFICULTIES,
    generate=generate_task,
    noop=lambda task: [[ToolCall(name="submit", arguments={})]],  # submit without doing the work
)
register_family(COWORK_FAMILY)
