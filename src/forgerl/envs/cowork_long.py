"""`cowork-long`: cowork with large mailboxes, whose mails are too long to keep (issue 24).

The same tasks as `cowork` (generator, verifier, tools and gold path unchanged), but at reset the
mailbox gets `FILLER_MAILS` unrelated office mails and every mail, the task's own included, ends
with a long quoted thread (`QUOTED_MESSAGES` earlier messages, about 125 tokens each), seeded by
the task id. The filler text has no digits, none of the task's people, vendors or events, and a quote
that would change which of the gold path's searches find a mail is skipped, so the gold path sees
the same search results and is judged the same; the mails it reads are just long. The expansion
happens at reset, so a stored task stays as small as cowork's.

Why 4,096 tokens and not the main job's 2,048: cowork's opening alone (system prompt, ten tool
schemas, request) is about 1,680-1,770 tokens in the minimax_m2 format and `read_sheet` answers
with about 430, so no gold path that reads the sheet fits in 2,048 tokens, managed or not (plain
cowork neither). At 4,096 plain cowork fits whole on every seed, and this family is sized so that
it does not. Measured over seeds 0-19 (minimax_m2, project tokenizer, each gold round rendered as
an assistant message and played through the agent loop by a scripted engine, 256 new tokens per
turn; finished = scored 1 with every call stopped and parsed):

    difficulty   kept whole: truncated   keep_last_turns(1): finished   drop_old_rounds(1): finished
    1            10 / 20                 20 / 20                        20 / 20
    2            20 / 20                 20 / 20                        20 / 20
    3            20 / 20                 20 / 20                        20 / 20

(both managers fixed, triggered past 1,024 tokens). The ten difficulty-1 tasks that fit whole are
`event_to_note`, whose only lookup is one calendar listing: nothing to manage. Kept whole, the
others peak at 4,336-5,782 tokens; managed, at 3,836 at most. `QUOTED_MESSAGES` was set by that
measurement. At 2,048 tokens the same play finishes only those ten `event_to_note` tasks, with or
without a manager.
"""

from __future__ import annotations

import random

from forgerl.envs.base import Family, Task, register_family
from forgerl.envs.cowork import env as base_env
from forgerl.envs.cowork import generator as base
from forgerl.envs.cowork.workplace import Mail, Workplace, WorkplaceState
from forgerl.types import Message

FAMILY = "cowork-long"
QUOTED_MESSAGES = {1: 14, 2: 13, 3: 8}
"""Earlier messages quoted under every mail, per difficulty (about 125 tokens each with the default tokenizer)."""
FILLER_MAILS = 30
"""Unrelated office mails added to every mailbox."""
NOTICE = (" The mailbox is large and every mail ends with a long quoted thread that the work never needs. "
          "Results are long, so keep the values you need in your thinking.")

# Filler vocabulary: no digits, no number words, none of the generator's people, vendors, events,
# categories or locations, and not the words 'invoice' or 'timesheet' that the tasks turn on.
FILLER_PEOPLE = ("Morgan Reyes", "Quinn Halvorsen", "Rowan Pike", "Sasha Whitfield", "Elliot Marsh",
                 "Harper Quist", "Jordan Ashby", "Avery Brandt", "Blake Fennimore", "Casey Lowther")
FILLER_SENDERS = (("Facilities Team", "facilities@ourco.example"), ("People Team", "people@ourco.example"),
                  ("Social Club", "social@ourco.example"), ("Parking Desk", "parking@ourco.example"),
                  ("Wellbeing Group", "wellbeing@ourco.example"), ("Reception", "reception@ourco.example"))
FILLER_SUBJECTS = ("Kitchen rota update", "Fire alarm test", "Parking permit renewals", "Lost and found",
                   "Wellbeing week", "Bike shed access", "Quiet hours upstairs", "Coffee machine repair",
                   "Desk booking reminder", "Window cleaning", "Recycling changes", "Badge photos")
WEEKDAYS = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday")
SENTENCES = (
    "Thanks for the update, I will pass it on to the rest of the team.",
    "Could we keep this thread going until everyone has had a chance to answer?",
    "Looping in a few more people so that nobody misses the discussion.",
    "I agree with the points above and have nothing further to add for now.",
    "Please remember to close the windows before leaving in the evening.",
    "The kitchen will be cleaned on Friday afternoon, so please take your mugs home.",
    "Let me know if the new arrangement causes any trouble on your side.",
    "I have moved the conversation to the shared channel as well.",
    "Apologies for the late answer, I was away for a few days.",
    "The reception desk can help if you have lost your badge.",
    "We are still collecting feedback and will share a summary soon.",
    "The minutes from last week are on the shared drive.",
    "Could someone check whether the projector cable has been returned?",
    "Good idea, let us try it for a while and see how it goes.",
    "The cleaning crew asked us to keep the corridors clear.",
    "I will be working from home on Thursday but can join by video.",
    "Please do not answer everyone when replying to this message.",
    "Thanks everyone for the quick responses.",
    "The visitor parking area will be repainted soon.",
    "Reminder that the quiet room is for focused work only.",
)


def generate_task(seed: int, difficulty: int) -> Task:
    """The cowork task of (seed, difficulty); the environment enlarges its mailbox at reset."""
    task = base.generate_task(seed, difficulty)
    return task.model_copy(update={
        "id": task.id.replace(base.FAMILY, FAMILY, 1), "family": FAMILY,
        "data": {**task.data, "quoted_messages": QUOTED_MESSAGES[difficulty], "filler_mails": FILLER_MAILS},
    })


def sample_task(seed: int) -> Task:
    task = base.sample_task(seed)
    return generate_task(seed, task.difficulty)


def gold_queries(task: Task) -> list[str]:
    """The queries the gold path searches the mailbox with: filler must leave their hits alone."""
    return [str(call.arguments.get("query", "")) for round_ in task.gold or [] for call in round_ if call.name == "search_mail"]


def _hits(mail: Mail, queries: list[str]) -> list[bool]:
    """Which of `queries` find `mail`, by the workplace's own search (the same matching rule)."""
    workplace = Workplace(WorkplaceState(mails=[mail]))
    return [bool(workplace.search_mail(q)) for q in queries]


def _quote(rng: random.Random) -> str:
    who, day = rng.choice(FILLER_PEOPLE), rng.choice(WEEKDAYS)
    said = " ".join(rng.sample(SENTENCES, 3))
    return f"> On {day}, {who} wrote:\n> {said}"


def _with_thread(mail: Mail, rng: random.Random, messages: int, queries: list[str]) -> Mail:
    """`mail` with `messages` quoted messages appended, skipping any quote that would change
    which gold searches find it (so the gold path's search results stay those of cowork)."""
    before, quotes = _hits(mail, queries), []
    for _ in range(4 * messages):
        if len(quotes) == messages:
            break
        quote = _quote(rng)
        if _hits(mail.model_copy(update={"body": f"{mail.body}\n{quote}"}), queries) == before:
            quotes.append(quote)
    body = "\n\n".join([mail.body, "--- earlier messages in this thread ---", *quotes])
    return mail.model_copy(update={"body": body})


def large_mailbox(task: Task) -> WorkplaceState:
    """The task's workplace with `filler_mails` unrelated mails added (ids after the task's own, so
    the gold path's ids hold) and a quoted thread under every mail; seeded by the task id."""
    state = WorkplaceState.model_validate(task.data["workplace"])
    rng, queries = random.Random(f"{FAMILY}:{task.id}"), gold_queries(task)
    month = state.mails[0].date[:7]
    mails = list(state.mails)
    for _ in range(int(task.data["filler_mails"])):
        name, email = rng.choice(FILLER_SENDERS)
        body = f"Hello all,\n\n{' '.join(rng.sample(SENTENCES, 2))}\n\nBest,\n{name}"
        filler = Mail(id=f"m{len(mails) + 1}", sender_name=name, sender_email=email,
                      date=f"{month}-{rng.randint(1, 28):02d}", subject=rng.choice(FILLER_SUBJECTS), body=body)
        if not any(_hits(filler, queries)):
            mails.append(filler)
    threaded = [_with_thread(m, rng, int(task.data["quoted_messages"]), queries) for m in mails]
    return state.model_copy(update={"mails": threaded})


class LongCoworkEnv(base_env.CoworkEnv):
    family = FAMILY

    def reset(self, task: Task) -> list[Message]:
        """cowork's reset on the enlarged workplace, with the notice that mails are long."""
        if "workplace" not in task.data:
            return super().reset(task)  # cowork's error for a task that is not one
        large = large_mailbox(task).model_dump(mode="json")
        messages = super().reset(task.model_copy(update={"data": {**task.data, "workplace": large}}))
        self.task = task
        return [messages[0].model_copy(update={"content": messages[0].content + NOTICE}), *messages[1:]]


register_family(Family(
    name=FAMILY,
    make_env=LongCoworkEnv,
    sample_task=sample_task,
    description="cowork with large mailboxes and long quoted threads: keeping every mail read overflows the context.",
    difficulties=base.DIFFICULTIES,
    generate=generate_task,
    noop=base_env.COWORK_FAMILY.noop,
))
