"""SFT data from a run's own trajectories (rejection sampling) and prompt distillation (M2's AppDev recipe).

Rejection sampling: the conversations of a run that its verifier passed (completed, verifier outcome
>= a threshold; 1.0 = every rubric item passed) become SFT data. The outcome is the verifier's own
score (`reward_breakdown["outcome"]`, the pass rate), not the reward, which process penalties or a
reward model may have moved. They are trained on the token
ids the store recorded, with the recorded loss masks (`chain_samples`, the same samples RL trains
on), not on a re-rendering of their messages: the recorded ids are what the policy really sampled
(DESIGN contract 1), and text -> ids again could drift (a completion the format would render
differently, a cut completion, a parse error). Completions that could not be acted on (a parse
error, or cut by the token limit) stay in the context but are not trained on: a passing episode
that recovered from a malformed output should not teach the malformed output.

Prompt distillation: the trajectories were sampled with an expert system prompt; the student should
act as if it had it without seeing it. The expert prompt is the system message, in sections headed
by Markdown `## ` lines (text before the first heading is a preamble that is always kept). With
probability p per section, independently and seeded per example, a section is dropped when the
example is built. Only the prompt changes: the system message is re-rendered and its tokens are
swapped into the recorded ids, so every assistant token trained is exactly the one sampled (a
swap is used only where re-rendering the recorded messages gives back the recorded prompt, i.e.
same tokenizer and chat format; otherwise the example keeps its prompt and says why).
"""

from __future__ import annotations

import random
import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from forgerl.chat import get_format
from forgerl.chat.base import RenderError, encode_segments
from forgerl.envs.rewards import verifier_reward
from forgerl.errors import ConfigError
from forgerl.store import STORE_FILENAME, TrajectoryStore, resolve_store_path
from forgerl.types import LLMCall, Message, Trajectory, TrajectoryStatus, chain_samples

SECTION_HEADING = re.compile(r"^## +\S.*$", re.MULTILINE)
"""A section of an expert system prompt starts at a line `## name` and runs to the next one."""


@dataclass
class SFTExample:
    """One sequence to train on, with where it came from (written to sft_examples.jsonl)."""

    ids: list[int]
    mask: list[int]
    source: dict[str, Any]


@dataclass(frozen=True)
class PromptSection:
    name: str  # the heading's text; "" for the preamble before the first heading
    text: str  # the exact slice of the prompt, heading line included


def prompt_sections(text: str) -> list[PromptSection]:
    """The prompt cut at its `## ` headings; joining the texts gives `text` back exactly."""
    starts = [m.start() for m in SECTION_HEADING.finditer(text)]
    cuts = sorted({0, *starts, len(text)})
    out = []
    for a, b in zip(cuts, cuts[1:]):
        chunk = text[a:b]
        heading = SECTION_HEADING.match(chunk)
        out.append(PromptSection(heading.group(0)[2:].strip() if heading else "", chunk))
    return out


def drop_sections(text: str, p: float, rng: random.Random) -> tuple[str, list[str], list[str]]:
    """(the prompt with each headed section dropped with probability p, every section's name, the
    names dropped). The preamble is always kept; nothing dropped gives `text` unchanged."""
    if not 0.0 <= p <= 1.0:
        raise ConfigError(f"--drop-prompt-sections {p}: a probability must be between 0 and 1")
    sections = prompt_sections(text)
    named = [s.name for s in sections if s.name]
    dropped_at = {i for i, s in enumerate(sections) if s.name and rng.random() < p}
    if not dropped_at:
        return text, named, []
    kept = "".join(s.text for i, s in enumerate(sections) if i not in dropped_at)
    if text == text.rstrip():  # the cut would leave the blank lines before a dropped last section
        kept = kept.rstrip()
    return kept, named, [sections[i].name for i in sorted(dropped_at)]


def example_rng(seed: int, key: str) -> random.Random:
    """The per-example stream of section drops: the same for the same seed and example everywhere."""
    return random.Random(f"drop-prompt-sections:{seed}:{key}")


def distilled_messages(messages: Sequence[Message], p: float, rng: random.Random) -> tuple[list[Message], dict[str, Any]]:
    """`messages` with the leading system message's sections dropped (`drop_sections`), and the record."""
    if not messages or messages[0].role != "system":
        return list(messages), {"sections": [], "dropped": [], "distill": "no system message"}
    text, names, dropped = drop_sections(messages[0].content, p, rng)
    first = messages[0].model_copy(update={"content": text}) if dropped else messages[0]
    return [first, *messages[1:]], {"sections": names, "dropped": dropped,
                                    "distill": "ok" if names else "no sections in the system message"}


# -- the store ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class StoreSelection:
    """Which of a run's trajectories are SFT data: completed ones whose verifier outcome is at least
    `min_reward`, of `families` (None = all), at most `max_examples` of them (a seeded sample)."""

    min_reward: float = 1.0
    families: tuple[str, ...] | None = None
    max_examples: int | None = None


def passing_trajectories(run_dir: str | Path, selection: StoreSelection,
                         seed: int = 0) -> tuple[list[tuple[str, Trajectory]], int]:
    """(run id, trajectory) for every trajectory `selection` keeps, in the store's order, and how
    many trajectories the store holds. Raises ConfigError saying what the store holds when it is
    missing, empty or nothing passes."""
    path = resolve_store_path(run_dir) if Path(run_dir).exists() else None
    if path is None or not path.is_file():
        raise ConfigError(f"--from-store {run_dir}: no trajectory store there (expected a run directory holding "
                          f"{STORE_FILENAME})", hint="pass the --run-dir of a `forgerl train` run")
    kept: list[tuple[str, Trajectory]] = []
    statuses: Counter[str] = Counter()
    outcomes: list[float] = []
    families: Counter[str] = Counter()
    with TrajectoryStore(path) as store:
        for row, text in store.iter_export_rows():
            statuses[row["status"]] += 1
            families[str(row["family"])] += 1
            if row["status"] != TrajectoryStatus.COMPLETED.value:
                continue
            if selection.families is not None and row["family"] not in selection.families:
                continue
            traj = Trajectory.model_validate_json(text)
            outcome = verifier_outcome(traj)
            if outcome is not None:
                outcomes.append(outcome)
                if outcome >= selection.min_reward:
                    kept.append((row["run_id"], traj))
    if not statuses:
        raise ConfigError(f"--from-store {run_dir}: the store holds no trajectories",
                          hint="train the run first (forgerl train --run-dir ...) or point at another run")
    if not kept:
        raise ConfigError(_nothing_passes(run_dir, selection, statuses, outcomes, families),
                          hint="lower --min-reward, widen --families, or collect more trajectories")
    if selection.max_examples is not None and len(kept) > selection.max_examples:
        chosen = set(random.Random(seed).sample(range(len(kept)), selection.max_examples))
        kept = [k for i, k in enumerate(kept) if i in chosen]
    return kept, sum(statuses.values())


def _nothing_passes(run_dir: str | Path, selection: StoreSelection, statuses: Counter[str], outcomes: list[float],
                    families: Counter[str]) -> str:
    held = ", ".join(f"{n} {s}" for s, n in sorted(statuses.items()))
    which = f" of {', '.join(selection.families)}" if selection.families is not None else ""
    scored = (f"the {len(outcomes)} completed{which} have verifier outcomes {min(outcomes):.3f} to {max(outcomes):.3f}"
              if outcomes else f"none of them is a scored, completed trajectory{which}")
    present = ", ".join(f"{f} ({n})" for f, n in sorted(families.items()))
    return (f"--from-store {run_dir}: none of its {sum(statuses.values())} trajectories ({held}) passes the filter "
            f"(completed, verifier outcome >= {selection.min_reward}{which}): {scored}; families in the store: {present}")


def verifier_outcome(traj: Trajectory) -> float | None:
    """The verifier's outcome (the pass rate) as the reward composition recorded it; the verifier's
    reward where no breakdown records one (trajectories scored outside forgerl's composition)."""
    outcome = traj.reward_breakdown.get("outcome")
    return outcome if outcome is not None else verifier_reward(traj)


def _trainable(call: LLMCall) -> LLMCall:
    """The call as SFT trains it: a completion that could not be parsed or was cut is context only."""
    if call.parse_error is None and call.finish_reason == "stop":
        return call
    return call.model_copy(update={"loss_mask": [0] * len(call.completion_ids)})


def _prompt_messages(traj: Trajectory) -> list[Message]:
    """The messages the first call's prompt stands for: everything before the first assistant message."""
    first = next((i for i, m in enumerate(traj.messages) if m.role == "assistant"), len(traj.messages))
    return traj.messages[:first]


def rerenders_exactly(traj: Trajectory, tokenizer: Any) -> bool:
    """Whether rendering the trajectory's opening messages with its chat format and `tokenizer`
    gives the first call's recorded prompt ids (so the ids and the messages agree, and the
    tokenizer is the one that made them)."""
    if not traj.calls:
        return False
    try:
        rendered = get_format(traj.chat_format).render(_prompt_messages(traj), traj.tools, add_generation_prompt=True)
    except (ConfigError, RenderError):  # a format this install lacks, or messages it cannot render
        return False
    return encode_segments(tokenizer, rendered).ids == traj.calls[0].prompt_ids


def _system_swap(traj: Trajectory, tokenizer: Any, p: float,
                 rng: random.Random) -> tuple[list[int], list[int], dict[str, Any]]:
    """(old system-prompt ids, new ones, the record): replacing the old ids by the new ones at
    the start of a recorded sequence gives exactly the re-rendered prompt with sections dropped
    (checked on the first call); ([], [], record) when nothing is to be swapped."""
    messages = _prompt_messages(traj)
    new_messages, record = distilled_messages(messages, p, rng)
    if not record["dropped"]:
        return [], [], record
    fmt = get_format(traj.chat_format)
    old = encode_segments(tokenizer, fmt.render(messages[:1], traj.tools, add_generation_prompt=False)).ids
    new = encode_segments(tokenizer, fmt.render(new_messages[:1], traj.tools, add_generation_prompt=False)).ids
    prompt = traj.calls[0].prompt_ids
    whole = encode_segments(tokenizer, fmt.render(new_messages, traj.tools, add_generation_prompt=True)).ids
    if prompt[:len(old)] != old or new + prompt[len(old):] != whole:
        return [], [], {**record, "dropped": [], "distill": "skipped: the system prompt's tokens are not separable"}
    return old, new, record


def trajectory_examples(run_id: str, traj: Trajectory, tokenizer: Any, *, drop_p: float = 0.0,
                        seed: int = 0) -> list[SFTExample]:
    """The trajectory's recorded samples (one per root; normally one), as SFT examples, with the
    expert system prompt's sections dropped with probability `drop_p` (per section, seeded by the
    trajectory id)."""
    exact = rerenders_exactly(traj, tokenizer)
    if exact and drop_p > 0:
        old, new, record = _system_swap(traj, tokenizer, drop_p, example_rng(seed, traj.id))
    else:
        old, new = [], []
        why = "off" if drop_p == 0 else "skipped: the first prompt does not re-render to its recorded ids"
        record = {"sections": [], "dropped": [], "distill": why}
    calls = [_trainable(c) for c in traj.calls]
    samples = chain_samples(traj.model_copy(update={"calls": calls}), [0.0] * len(calls))
    source = {"source": "store", "run": run_id, "trajectory": traj.id, "task": traj.task_id, "family": traj.family,
              "outcome": verifier_outcome(traj), "reward": traj.reward, "rerenders_exactly": exact, **record}
    out = []
    for root, sample in enumerate(samples):
        ids, mask = sample.input_ids, sample.loss_mask
        if old and ids[:len(old)] == old:
            assert not any(mask[:len(old)]), "a system prompt is never trainable"
            ids, mask = new + ids[len(old):], [0] * len(new) + mask[len(old):]
        out.append(SFTExample(ids, mask, {**source, "root": root, "calls": sample.calls}))
    return out


def store_examples(chosen: Sequence[tuple[str, Trajectory]], tokenizer: Any, *, drop_p: float = 0.0,
                   seed: int = 0) -> list[SFTExample]:
    """The examples of the trajectories `passing_trajectories` chose (`trajectory_examples`).
    Raises ConfigError when none of them re-renders with `tokenizer`: the store's ids were made
    by another tokenizer (or chat format) than the model being trained, so they mean nothing to it."""
    examples = [e for run_id, traj in chosen for e in trajectory_examples(run_id, traj, tokenizer, drop_p=drop_p, seed=seed)]
    if not examples:
        raise ConfigError(f"--from-store: none of the {len(chosen)} passing trajectories has a completion to train on "
                          "(every one could not be parsed or was cut by the token limit)",
                          hint="collect more trajectories or lower --min-reward")
    vocab = len(tokenizer)
    if not any(e.source["rerenders_exactly"] for e in examples) or any(max(e.ids) >= vocab for e in examples):
        raise ConfigError(f"--from-store: the stored token ids were not made by this model's tokenizer (none of the "
                          f"{len(chosen)} passing trajectories re-renders to its recorded prompt)",
                          hint="pass --init the run's own model (e.g. --init RUN_DIR) or one with the same tokenizer")
    return examples
