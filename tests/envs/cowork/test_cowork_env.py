"""The cowork family end to end: for every difficulty and many seeds the gold path scores 1.0 and a
no-op 0.0 (contract 5); tasks are determined by their seed; the tools refuse bad input with
messages that say what to do; wrong work (a distractor invoice, a wrong number) scores 0."""

from __future__ import annotations

import asyncio
import json

import pytest

from forgerl.envs.base import Task, family_info, make_env, run_gold, sample_task
from forgerl.envs.cowork import DIFFICULTIES, TOOLS, CoworkEnv, generate_task
from forgerl.envs.cowork.generator import TEMPLATES
from forgerl.errors import ConfigError, ToolError, VerifierError
from forgerl.types import ToolCall, Trajectory

SEEDS = range(25)
ALL = [(seed, difficulty) for difficulty in DIFFICULTIES for seed in SEEDS]


def execute(env: CoworkEnv, name: str, **arguments) -> str:
    return asyncio.run(env.execute(ToolCall(name=name, arguments=arguments)))


def ready(seed: int = 0, difficulty: int = 1) -> tuple[CoworkEnv, Task]:
    env, task = CoworkEnv(seed), generate_task(seed, difficulty)
    env.reset(task)
    return env, task


@pytest.mark.parametrize(("seed", "difficulty"), ALL)
def test_gold_scores_one_and_no_op_scores_zero(seed, difficulty):
    task = generate_task(seed, difficulty)
    trajectory, result = asyncio.run(run_gold(CoworkEnv(seed), task))
    failed = [c for c in result.evidence["verifier"]["checks"] if not c["passed"]]
    assert result.score == 1.0 and trajectory.reward == 1.0, failed
    assert result.breakdown["all_passed"] == 1.0 and result.breakdown["submitted"] == 1.0

    env = CoworkEnv(seed)
    env.reset(task)
    no_op = env.reward(Trajectory(task_id=task.id))
    assert no_op.score == 0.0 and no_op.breakdown["checks_passed"] < 1.0


@pytest.mark.parametrize(("seed", "difficulty"), ALL[::5])
def test_looking_everything_up_without_writing_scores_zero(seed, difficulty):
    env, task = ready(seed, difficulty)
    reads = {"search_mail", "read_mail", "list_events", "read_note", "read_sheet", "submit"}
    for round_ in task.gold:
        for call in round_:
            if call.name in reads:
                asyncio.run(env.execute(call))
    assert env.done and env.reward(Trajectory()).score == 0.0


def test_tasks_are_determined_by_seed_and_difficulty_and_survive_json():
    for seed, difficulty in [(0, 1), (7, 2), (11, 3)]:
        task = generate_task(seed, difficulty)
        assert task == generate_task(seed, difficulty)
        assert task.difficulty == difficulty and task.verifier["type"] == "cowork_artifacts"
        again = Task.model_validate(json.loads(task.model_dump_json()))
        assert again == task
        assert asyncio.run(run_gold(CoworkEnv(), again))[1].score == 1.0
    assert generate_task(1, 2) != generate_task(2, 2)
    assert generate_task(1, 1).prompt != generate_task(1, 3).prompt


def test_every_template_is_drawn_and_difficulty_grows():
    seen = {d: {generate_task(s, d).data["template"] for s in range(30)} for d in DIFFICULTIES}
    assert seen == {d: set(TEMPLATES[d]) for d in DIFFICULTIES}
    for seed in range(10):
        rounds = [len(generate_task(seed, d).gold) for d in DIFFICULTIES]
        assert rounds[0] < rounds[2] and rounds[1] < rounds[2]
        hard = {c.name for r in generate_task(seed, 3).gold for c in r}
        assert {"search_mail", "read_mail", "list_events", "read_note", "read_sheet", "write_cell", "send_reply"} <= hard


def test_registry_draws_cowork_tasks_at_each_difficulty():
    family = family_info("cowork")
    assert family.difficulties == DIFFICULTIES
    assert sample_task("cowork", 4, difficulty=3) == generate_task(4, 3)
    assert isinstance(make_env("cowork", 0), CoworkEnv)
    assert {sample_task("cowork", s).difficulty for s in range(6)} == set(DIFFICULTIES)
    with pytest.raises(ValueError, match="difficulty"):
        generate_task(0, 4)


def _total_due(body: str) -> float:
    line = next(line for line in body.splitlines() if line.startswith("Total due:"))
    return float(line.split("$")[1].replace(",", ""))


def test_booking_the_distractor_invoice_or_a_wrong_amount_scores_zero():
    for seed in range(6):
        task = generate_task(seed, 3)
        env = CoworkEnv()
        env.reset(task)
        vendor, booked_right = task.answer["vendor"], task.answer["invoice_total"]
        invoices = [m for m in env.workplace.state.mails if m.sender_name == vendor and m.subject.startswith("Invoice")]
        assert len(invoices) == 2  # the target and the same vendor's invoice for another event
        distractor = next(_total_due(m.body) for m in invoices if not m.body.count(f"${booked_right:,.2f}"))
        write = next(c for r in task.gold for c in r if c.name == "write_cell")
        for wrong in (write.arguments["value"] - booked_right + distractor, write.arguments["value"] + 0.01):
            env.reset(task)
            for round_ in task.gold:
                for call in round_:
                    if call.name == "write_cell":
                        call = ToolCall(name="write_cell", arguments={"cell": write.arguments["cell"], "value": wrong})
                    asyncio.run(env.execute(call))
            result = env.reward(Trajectory())
            assert result.score == 0.0 and result.breakdown["sheet"] < 1.0


def test_right_sheet_wrong_reply_shows_partial_credit():
    env, task = ready(0, 2)
    for round_ in task.gold:
        for call in round_:
            if call.name == "send_reply":
                call = ToolCall(name="send_reply", arguments={"mail_id": call.arguments["mail_id"], "body": "Done, booked."})
            asyncio.run(env.execute(call))
    result = env.reward(Trajectory())
    assert result.score == 0.0
    assert result.breakdown["sheet"] == 1.0 and result.breakdown["reply"] == 0.0 and 0 < result.breakdown["checks_passed"] < 1
    checks = result.evidence["verifier"]["checks"]
    assert all({"name", "expected", "found", "passed"} <= set(c) for c in checks)


def test_formula_and_formatted_number_writes_are_accepted_by_value():
    seed = next(s for s in range(50) if generate_task(s, 1).data["template"] == "invoice_to_sheet")
    for value in ("={old}+{amount}", "{new:,.2f}", "${new}"):
        env, task = ready(seed, 1)
        write = next(c for r in task.gold for c in r if c.name == "write_cell")
        cell, new = write.arguments["cell"], write.arguments["value"]
        old = env.workplace.sheet.value(cell)
        text = value.format(old=old, amount=round(new - old, 2), new=new)
        assert "recalculated" in execute(env, "write_cell", cell=cell, value=text)
        assert env.reward(Trajectory()).score == 1.0, text


# --- tools ---------------------------------------------------------------------------------------


def test_tools_have_json_schemas_that_forbid_unknown_arguments():
    assert {t.name for t in TOOLS} == {
        "search_mail", "read_mail", "list_events", "list_notes", "read_note", "write_note",
        "read_sheet", "write_cell", "send_reply", "submit",
    }
    for tool in TOOLS:
        assert tool.parameters["type"] == "object" and tool.parameters["additionalProperties"] is False
        assert set(tool.parameters["required"]) <= set(tool.parameters["properties"]) and tool.description


def test_reading_tools_show_the_workplace():
    env, task = ready(0, 3)
    assert "match" in execute(env, "search_mail", query="")
    assert "No mail matches" in execute(env, "search_mail", query="zebra quantum")
    mail = env.workplace.state.mails[0]
    assert mail.body in execute(env, "read_mail", mail_id=f" {mail.id} ")
    assert "Budget categories" in execute(env, "list_notes")
    assert "Which budget category" in execute(env, "read_note", title="budget CATEGORIES")
    event = env.workplace.state.events[0]
    assert event.title in execute(env, "list_events", date=event.date)
    sheet = execute(env, "read_sheet")
    assert "D7 = " in sheet and "[formula =B7-C7]" in sheet
    assert execute(env, "read_sheet", range="A1:B1").count("=") == 2


@pytest.mark.parametrize(
    ("name", "arguments", "message"),
    [
        ("read_mail", {"mail_id": "m999"}, "unknown mail id 'm999'.*search_mail"),
        ("send_reply", {"mail_id": "x1", "body": "hi"}, "unknown mail id"),
        ("send_reply", {"mail_id": "m1", "body": "  "}, "reply body is empty"),
        ("write_cell", {"cell": "C", "value": 1}, "bad cell reference 'C'"),
        ("write_cell", {"cell": "AA1", "value": 1}, "outside the sheet"),
        ("write_cell", {"cell": "C999", "value": 1}, "outside the sheet"),
        ("write_cell", {"cell": "E1", "value": "=1/0"}, "division by zero"),
        ("write_cell", {"cell": "E1", "value": "=SUM(B2:B6"}, "missing|ends too early"),
        ("write_cell", {"cell": "B2", "value": "=D2+1"}, "circular reference: B2 -> D2 -> B2"),
        ("write_cell", {"cell": "E1", "value": "=A2*2"}, "holds text"),
        ("write_cell", {"cell": "E1", "value": True}, "number or a string"),
        ("write_cell", {"cell": "E1"}, "needs the argument 'value'"),
        ("read_sheet", {"range": "A1:B2:C3"}, "bad range"),
        ("list_events", {"date": "March 3"}, "YYYY-MM-DD"),
        ("read_note", {"title": "Secret plans"}, "no note titled 'Secret plans'; existing notes: "),
        ("write_note", {"title": " ", "text": "x"}, "non-empty title"),
        ("write_note", {"title": "t", "text": "x" * 5000}, "longer than"),
        ("read_mail", {"mail_id": 3}, "must be a string"),
        ("read_mail", {}, "needs the argument 'mail_id'"),
        ("search_mail", {"query": "x", "folder": "inbox"}, "unexpected arguments \\['folder'\\]"),
        ("delete_mail", {"mail_id": "m1"}, "unknown tool 'delete_mail'; available: search_mail"),
    ],
)
def test_tool_errors_say_what_was_wrong(name, arguments, message):
    env, _ = ready(0, 3)
    before = env.workplace.state.model_copy(deep=True)
    with pytest.raises(ToolError, match=message):
        execute(env, name, **arguments)
    assert env.workplace.state == before  # a refused call changes nothing


def test_writes_change_the_workplace():
    env, _ = ready(0, 1)
    assert "created" in execute(env, "write_note", title="Todo", text="call Acme")
    assert "updated" in execute(env, "write_note", title="todo", text="done")
    assert execute(env, "read_note", title="TODO").endswith("done")
    total_before = env.workplace.sheet.value("D7")
    assert execute(env, "write_cell", cell="$c$2", value=0) == "C2 = 0.00. The sheet was recalculated."
    assert env.workplace.sheet.value("D7") > total_before
    mail = env.workplace.state.mails[0]
    assert "Re: " in execute(env, "send_reply", mail_id=mail.id, body="Thanks!")
    assert env.workplace.state.replies[-1].to == mail.sender_email


def test_submit_ends_the_episode_and_later_calls_are_refused():
    env, _ = ready(0, 1)
    assert not env.done
    execute(env, "submit", summary="nothing")
    assert env.done
    with pytest.raises(ToolError, match="already submitted"):
        execute(env, "read_sheet")


def test_reset_starts_from_the_task_again_and_does_not_leak_state():
    env, task = ready(0, 1)
    execute(env, "write_note", title="scratch", text="x")
    env.reset(task)
    assert "scratch" not in env.workplace.state.notes and not env.done
    assert "scratch" not in json.dumps(task.data)


def test_bad_tasks_and_missing_reset_are_clear_errors():
    with pytest.raises(VerifierError, match="before reset"):
        CoworkEnv().reward(Trajectory())
    with pytest.raises(ToolError, match="reset"):
        execute(CoworkEnv(), "read_sheet")
    with pytest.raises(ConfigError, match="not a valid cowork task"):
        CoworkEnv().reset(Task(id="t", family="arithmetic", prompt="2+2?"))
