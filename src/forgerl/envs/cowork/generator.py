"""Seeded cowork tasks: a small workplace, a request, the verifier spec and the gold path.

A task is drawn from `(seed, difficulty)` and is a complete description of its world (mailbox,
calendar, notes, budget sheet), so an environment rebuilt from the task is identical on every worker.
The difficulty dial counts lookups and artifacts:

1. one lookup + one write: book an invoice into the sheet, or copy an event into a note;
2. two lookups + a sheet write + a reply: book an invoice and confirm the new remaining, or compute a
   contractor's fee from a timesheet mail and a rates note, book it and confirm it;
3. several lookups across mailbox, calendar and notes + a sheet update + a reply: a manager's mail
   asks to book "the invoice for <event>" (the vendor is not named, the category is in a note, the
   date is only in the calendar) and to reply with the vendor, the new budget total and the date.

Every world has distractors (other vendors' invoices, a second invoice from the same vendor for
another event, other contractors' timesheets, invoices showing a subtotal and tax before the
total), so a lookup has to read the right record. Money is drawn in whole cents and the expected
cells are computed from cents, so they are exact.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import Any

from forgerl.envs.base import Task
from forgerl.envs.cowork.verifier import CellCheck, Fact, MessageCheck, VerifierSpec
from forgerl.envs.cowork.workplace import Event, Mail, WorkplaceState
from forgerl.types import ToolCall

FAMILY = "cowork"
DIFFICULTIES = (1, 2, 3)
YEAR = 2025

FIRST_NAMES = "Priya Tom Lena Marcus Aiko Jonas Fatima Diego Ingrid Samuel Chloe Ravi Nora Felix Amara Viktor".split()
LAST_NAMES = "Shah Berger Novak Okafor Tanaka Lindqvist Haddad Moreno Dahl Mensah Laurent Iyer Keller Costa".split()
VENDORS = [  # name, mail domain, what they invoice for
    ("Acme Office Supply", "acme-office.example", "office supplies"),
    ("Northwind Catering", "northwind-catering.example", "catering"),
    ("Pixelforge Software", "pixelforge.example", "software licences"),
    ("Summit Travel", "summit-travel.example", "travel booking"),
    ("Brightline Print", "brightline.example", "printing"),
    ("Cobalt Cloud", "cobalt-cloud.example", "cloud hosting"),
    ("Greenleaf Plants", "greenleaf.example", "office plants"),
    ("Harbor AV Rentals", "harbor-av.example", "AV equipment rental"),
    ("Lumen Training", "lumen-training.example", "training course"),
    ("Redwood Venues", "redwood-venues.example", "venue hire"),
]
CATEGORIES = ["Travel", "Software", "Office", "Team events", "Marketing", "Training", "Client events", "Facilities"]
EVENT_TITLES = [
    "Spring offsite",
    "Client dinner with Orbis",
    "Quarterly planning",
    "Product launch party",
    "Security workshop",
    "Partner summit",
    "Design sprint kickoff",
    "Board review",
    "Hackathon finals",
    "Customer advisory day",
]
LOCATIONS = ["Room 4B", "Harbor Hall", "Main auditorium", "Skyline Lounge", "Library room", "Studio 2", "Garden terrace"]
TAX_RATES = (0.08, 0.10, 0.20)
HOURLY_RATES = (45, 60, 75, 85, 90, 110, 120)
SHEET_ROWS = 5  # categories in the budget sheet (rows 2..6), totals in row 7
TOTAL_ROW = SHEET_ROWS + 2
RATES_NOTE = "Contractor rates"
CATEGORIES_NOTE = "Budget categories"


def money(cents: int) -> str:
    return f"{cents / 100:,.2f}"


@dataclass
class _World:
    """The workplace while it is being built, with the facts the templates need in cents."""

    rng: random.Random
    month: int
    people: list[str]
    categories: list[str]
    budget_cents: list[int]
    spent_cents: list[int]
    mails: list[dict[str, Any]] = field(default_factory=list)
    events: list[dict[str, Any]] = field(default_factory=list)
    notes: dict[str, str] = field(default_factory=dict)

    def date(self, low: int = 1, high: int = 28) -> str:
        return f"{YEAR}-{self.month:02d}-{self.rng.randint(low, high):02d}"

    def add_mail(self, key: str, sender_name: str, sender_email: str, subject: str, body: str) -> None:
        self.mails.append(dict(key=key, sender_name=sender_name, sender_email=sender_email, date=self.date(), subject=subject, body=body))

    def row_of(self, category: str) -> int:
        return self.categories.index(category) + 2

    def cells(self) -> dict[str, float | str]:
        cells: dict[str, float | str] = {"A1": "Category", "B1": "Budget", "C1": "Spent", "D1": "Remaining"}
        for i, name in enumerate(self.categories):
            row = i + 2
            cells |= {f"A{row}": name, f"B{row}": self.budget_cents[i] / 100, f"C{row}": self.spent_cents[i] / 100, f"D{row}": f"=B{row}-C{row}"}
        last = TOTAL_ROW - 1
        cells |= {f"A{TOTAL_ROW}": "Total", f"B{TOTAL_ROW}": f"=SUM(B2:B{last})", f"C{TOTAL_ROW}": f"=SUM(C2:C{last})", f"D{TOTAL_ROW}": f"=B{TOTAL_ROW}-C{TOTAL_ROW}"}
        return cells

    def build(self) -> tuple[WorkplaceState, dict[str, str]]:
        """Shuffle records, give them opaque ids, and return the state plus key -> mail id."""
        self.rng.shuffle(self.mails)
        ids = {m["key"]: f"m{i + 1}" for i, m in enumerate(self.mails)}
        mails = [Mail(id=ids[m["key"]], **{k: v for k, v in m.items() if k != "key"}) for m in self.mails]
        self.rng.shuffle(self.events)
        events = [Event(id=f"e{i + 1}", **e) for i, e in enumerate(self.events)]
        return WorkplaceState(mails=mails, events=events, notes=dict(self.notes), cells=self.cells()), ids


def _person(rng: random.Random, taken: set[str]) -> str:
    while True:
        name = f"{rng.choice(FIRST_NAMES)} {rng.choice(LAST_NAMES)}"
        if name not in taken:
            taken.add(name)
            return name


def _email(name: str) -> str:
    return name.lower().replace(" ", ".") + "@ourco.example"


def _new_world(rng: random.Random) -> _World:
    taken: set[str] = set()
    people = [_person(rng, taken) for _ in range(8)]
    categories = rng.sample(CATEGORIES, SHEET_ROWS)
    budget = [rng.randrange(10, 41) * 50_000 for _ in categories]  # 5,000.00 .. 20,000.00
    spent = [rng.randint(b // 5, b * 3 // 5) for b in budget]  # 20% .. 60% used
    world = _World(rng, rng.randint(3, 10), people, categories, budget, spent)
    world.add_mail("newsletter", "OurCo News", "news@ourco.example", "This week at OurCo", "Welcome to our new colleagues! The cafeteria opens at 8:00 from Monday.")
    world.add_mail("it", "IT Helpdesk", "it@ourco.example", "Password rotation", f"Please rotate your password before {world.date()}.")
    return world


def _invoice(world: _World, key: str, vendor: tuple[str, str, str], purpose: str | None = None) -> int:
    """Add an invoice mail; returns its total in cents. Subtotal and tax appear before the total."""
    rng = world.rng
    name, domain, what = vendor
    subtotal = rng.randint(5_000, 150_000)
    tax = round(subtotal * rng.choice(TAX_RATES))
    total = subtotal + tax
    number = f"INV-{rng.randint(1000, 9999)}"
    about = f"{what} for the {purpose}" if purpose else what
    body = (
        f"Dear customer,\n\nplease find below invoice {number} for {about}.\n\n"
        f"Subtotal: ${money(subtotal)}\nTax: ${money(tax)}\nTotal due: ${money(total)}\n\n"
        f"Payment within 30 days. Thank you for your business,\n{name}"
    )
    world.add_mail(key, name, f"billing@{domain}", f"Invoice {number}", body)
    return total


def _distractor_invoices(world: _World, vendors: list[tuple[str, str, str]], count: int) -> None:
    for i, vendor in enumerate(vendors[:count]):
        _invoice(world, f"other-invoice-{i}", vendor)


def _events(world: _World, titles: list[str]) -> list[dict[str, Any]]:
    rng = world.rng
    for title in titles:
        start = rng.randint(8, 17)
        minute = rng.choice((0, 15, 30, 45))
        attendees = rng.sample(world.people, 3)
        world.events.append(
            dict(title=title, date=world.date(), start=f"{start:02d}:{minute:02d}", end=f"{start + 1:02d}:{minute:02d}", location=rng.choice(LOCATIONS), attendees=attendees)
        )
    return world.events


def _sheet_checks(world: _World, category: str, add_cents: int, label: str) -> VerifierSpec:
    """Cells that must hold the booked amount after recalculation, and cells that must not change."""
    i, row = world.categories.index(category), world.row_of(category)
    spent = world.spent_cents[i] + add_cents
    remaining = world.budget_cents[i] - spent
    total_spent = sum(world.spent_cents) + add_cents
    total_remaining = sum(world.budget_cents) - total_spent
    target = f"C{row}"
    return VerifierSpec(
        cells=[
            CellCheck(cell=target, expected=spent / 100, label=f"{category} spent including {label}"),
            CellCheck(cell=f"D{row}", expected=remaining / 100, label=f"{category} remaining"),
            CellCheck(cell=f"C{TOTAL_ROW}", expected=total_spent / 100, label="total spent"),
            CellCheck(cell=f"D{TOTAL_ROW}", expected=total_remaining / 100, label="total remaining"),
        ],
        unchanged={ref: raw for ref, raw in world.cells().items() if ref != target},
    )


def _call(name: str, **arguments: Any) -> dict[str, Any]:
    return {"name": name, "arguments": arguments}


# --- templates: each returns (prompt, state, verifier spec, gold rounds, facts for Task.answer) ---

Generated = tuple[str, WorkplaceState, VerifierSpec, list[list[dict[str, Any]]], dict[str, Any]]


def _invoice_to_sheet(world: _World, reply: bool) -> Generated:
    rng = world.rng
    vendors = rng.sample(VENDORS, 5)
    vendor, category = vendors[0], rng.choice(world.categories)
    total = _invoice(world, "target", vendor)
    _distractor_invoices(world, vendors[1:], 3)
    _events(world, rng.sample(EVENT_TITLES, 3))
    state, ids = world.build()
    spec = _sheet_checks(world, category, total, f"the {vendor[0]} invoice")
    row, mail_id = world.row_of(category), ids["target"]
    new_spent = spec.cells[0].expected
    prompt = f"Find the invoice from {vendor[0]} in the mailbox and add its total to the Spent amount of the {category} row in the budget sheet."
    gold = [[_call("search_mail", query=vendor[0])], [_call("read_mail", mail_id=mail_id)], [_call("read_sheet")], [_call("write_cell", cell=f"C{row}", value=new_spent)]]
    if reply:
        remaining = spec.cells[1].expected
        prompt += f" Then reply to the invoice mail with the amount you booked and the new Remaining for {category}."
        spec.replies.append(
            MessageCheck(target=mail_id, facts=[Fact(kind="number", value=total / 100, label="the invoice total"), Fact(kind="number", value=remaining, label=f"the new {category} remaining")])
        )
        body = f"Thank you. We booked ${money(total)} to {category}; the {category} budget now has ${money(round(remaining * 100))} remaining."
        gold.append([_call("send_reply", mail_id=mail_id, body=body)])
    gold.append([_call("submit")])
    return prompt, state, spec, gold, {"vendor": vendor[0], "invoice_total": total / 100, "category": category}


def _event_to_note(world: _World) -> Generated:
    rng = world.rng
    titles = rng.sample(EVENT_TITLES, 5)
    events = _events(world, titles)
    event = events[0]
    _distractor_invoices(world, rng.sample(VENDORS, 3), 3)
    state, _ = world.build()
    note_title = f"{event['title']} details"
    spec = VerifierSpec(
        notes=[
            MessageCheck(
                target=note_title,
                facts=[
                    Fact(kind="date", value=event["date"], label="the date"),
                    Fact(kind="time", value=event["start"], label="the start time"),
                    Fact(kind="text", value=event["location"], label="the location"),
                ],
            )
        ]
    )
    prompt = f"Look up the '{event['title']}' event in the calendar and write a note titled '{note_title}' with its date, start time and location."
    text = f"{event['title']}: {event['date']} at {event['start']} in {event['location']}."
    gold = [[_call("list_events", query=event["title"])], [_call("write_note", title=note_title, text=text)], [_call("submit")]]
    return prompt, state, spec, gold, {"date": event["date"], "start": event["start"], "location": event["location"]}


def _contractor_fee(world: _World) -> Generated:
    rng = world.rng
    contractors = world.people[:3]
    rates = rng.sample(HOURLY_RATES, len(contractors))
    world.notes[RATES_NOTE] = "Hourly rates (USD) for our contractors:\n" + "\n".join(f"- {p}: ${r}/hour" for p, r in zip(contractors, rates, strict=True))
    month_name = ["January", "February", "March", "April", "May", "June", "July", "August", "September", "October", "November", "December"][world.month - 1]
    hours = []
    for i, person in enumerate(contractors):
        worked = rng.randint(10, 120) / 2  # half hours
        hours.append(worked)
        world.add_mail(f"timesheet-{i}", person, _email(person), f"Timesheet for {month_name}", f"Hi,\n\nI worked {worked:g} hours in {month_name}. Let me know if anything is unclear.\n\n{person}")
    _distractor_invoices(world, rng.sample(VENDORS, 3), 3)
    _events(world, rng.sample(EVENT_TITLES, 3))
    state, ids = world.build()
    person, rate, worked = contractors[0], rates[0], hours[0]
    fee_cents = round(worked * rate * 100)
    category = rng.choice(world.categories)
    spec = _sheet_checks(world, category, fee_cents, f"{person}'s fee")
    spec.replies.append(MessageCheck(target=ids["timesheet-0"], facts=[Fact(kind="number", value=fee_cents / 100, label="the fee")]))
    row, old_spent = world.row_of(category), world.spent_cents[world.categories.index(category)] / 100
    prompt = (
        f"{person} sent their timesheet for {month_name}. Compute their fee (hours from the timesheet mail times their rate "
        f"in the '{RATES_NOTE}' note), add it to the Spent amount of the {category} row in the budget sheet, and reply to "
        "the timesheet mail confirming the fee."
    )
    gold = [
        [_call("search_mail", query=f"{person} timesheet"), _call("read_note", title=RATES_NOTE)],
        [_call("read_mail", mail_id=ids["timesheet-0"])],
        [_call("read_sheet")],
        [_call("write_cell", cell=f"C{row}", value=f"={old_spent:.2f}+{worked:g}*{rate}")],
        [_call("send_reply", mail_id=ids["timesheet-0"], body=f"Thanks {person.split()[0]}, your fee of ${money(fee_cents)} is booked.")],
        [_call("submit")],
    ]
    return prompt, state, spec, gold, {"contractor": person, "hours": worked, "rate": rate, "fee": fee_cents / 100, "category": category}


def _event_invoice(world: _World) -> Generated:
    rng = world.rng
    titles = rng.sample(EVENT_TITLES, 4)
    events = _events(world, titles)
    event, other_event = events[0], events[1]
    vendors = rng.sample(VENDORS, 5)
    vendor = vendors[0]
    vendor_category = {v[0]: rng.choice(world.categories) for v in vendors}
    world.notes[CATEGORIES_NOTE] = "Which budget category each vendor is charged to:\n" + "\n".join(f"- {v}: {c}" for v, c in vendor_category.items())
    world.notes["Ideas"] = "Try a standing desk pilot; ask IT about second monitors."
    total = _invoice(world, "target", vendor, purpose=event["title"])
    _invoice(world, "same-vendor-other-event", vendor, purpose=other_event["title"])
    _distractor_invoices(world, vendors[1:], 3)
    manager = world.people[-1]
    request = (
        f"Hi,\n\ncould you book the invoice for the {event['title']} into the budget sheet? Add its total to the Spent "
        f"amount of the category the '{CATEGORIES_NOTE}' note gives for that vendor. Then reply to this mail with the "
        f"vendor's name, the new total Remaining of the whole budget, and the date of the {event['title']}.\n\nThanks,\n{manager}"
    )
    world.add_mail("request", manager, _email(manager), f"Booking the {event['title']} invoice", request)
    state, ids = world.build()
    category = vendor_category[vendor[0]]
    spec = _sheet_checks(world, category, total, f"the {vendor[0]} invoice")
    total_remaining = spec.cells[3].expected
    spec.replies.append(
        MessageCheck(
            target=ids["request"],
            facts=[
                Fact(kind="text", value=vendor[0], label="the vendor"),
                Fact(kind="number", value=total_remaining, label="the new total remaining"),
                Fact(kind="date", value=event["date"], label="the event date"),
            ],
        )
    )
    row = world.row_of(category)
    prompt = f"Handle the latest request from {manager} in the mailbox."
    body = f"Done: the {vendor[0]} invoice is booked to {category}. The budget now has ${money(round(total_remaining * 100))} remaining in total. The {event['title']} is on {event['date']}."
    gold = [
        [_call("search_mail", query=manager)],
        [_call("read_mail", mail_id=ids["request"]), _call("search_mail", query=f"invoice {event['title']}")],
        [_call("read_mail", mail_id=ids["target"]), _call("read_note", title=CATEGORIES_NOTE), _call("list_events", query=event["title"])],
        [_call("read_sheet")],
        [_call("write_cell", cell=f"C{row}", value=spec.cells[0].expected)],
        [_call("send_reply", mail_id=ids["request"], body=body)],
        [_call("submit")],
    ]
    return prompt, state, spec, gold, {"vendor": vendor[0], "invoice_total": total / 100, "category": category, "event_date": event["date"]}


TEMPLATES: dict[int, tuple[str, ...]] = {1: ("invoice_to_sheet", "event_to_note"), 2: ("invoice_reply", "contractor_fee"), 3: ("event_invoice",)}


def _run_template(name: str, world: _World) -> Generated:
    if name == "invoice_to_sheet":
        return _invoice_to_sheet(world, reply=False)
    if name == "invoice_reply":
        return _invoice_to_sheet(world, reply=True)
    if name == "event_to_note":
        return _event_to_note(world)
    if name == "contractor_fee":
        return _contractor_fee(world)
    return _event_invoice(world)


def generate_task(seed: int, difficulty: int = 1) -> Task:
    """One cowork task; the same (seed, difficulty) always gives the same task."""
    if difficulty not in DIFFICULTIES:
        raise ValueError(f"cowork difficulty must be one of {DIFFICULTIES}, got {difficulty!r}")
    rng = random.Random(f"{FAMILY}:{difficulty}:{seed}")
    template = rng.choice(TEMPLATES[difficulty])
    prompt, state, spec, gold, answer = _run_template(template, _new_world(rng))
    return Task(
        id=f"{FAMILY}-d{difficulty}-{seed}",
        family=FAMILY,
        prompt=prompt,
        data={"template": template, "workplace": state.model_dump(mode="json")},
        answer=answer,
        verifier=spec.model_dump(mode="json"),
        difficulty=difficulty,
        gold=[[ToolCall(id=f"gold-{r}-{i}", **call) for i, call in enumerate(round_)] for r, round_ in enumerate(gold)],
    )


def sample_task(seed: int) -> Task:
    """The registry's entry point: difficulty cycles with the seed (1, 2, 3, 1, ...)."""
    return generate_task(seed, difficulty=1 + seed % len(DIFFICULTIES))
