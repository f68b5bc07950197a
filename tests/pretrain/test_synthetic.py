"""Synthetic reading tasks: deterministic, answerable from their context, seeds below the probes'."""

from __future__ import annotations

import pytest

from forgerl.errors import ConfigError
from forgerl.pretrain.synthetic import (
    KINDS,
    SEED_LIMIT,
    SEED_STRIDE,
    ReadingTask,
    document_seed,
    document_tasks,
    document_text,
    mention_task,
    mentions_text,
    problems,
)
from forgerl.probes.items import PROBE_SEED_BASE


def test_a_document_is_the_same_for_its_seed_and_differs_across_seeds() -> None:
    assert document_text(7) == document_text(7)
    assert len({document_text(s) for s in range(50)}) == 50


def test_every_task_is_answerable_from_its_context() -> None:
    kinds = set()
    for seed in range(400):
        for task in document_tasks(seed):
            assert problems(task) == [], (seed, task)
            assert task.text.endswith(task.cue + task.answer)
            kinds.add(task.kind)
    assert kinds == set(KINDS)


def test_the_checker_catches_unanswerable_tasks() -> None:
    assert problems(ReadingTask("copy", "Copy this: abc\n", "Copy: ", "abd")) == ["answer 'abd' is not in the context"]
    twice = ReadingTask("lookup", "bo_ka: 1\nzu: 2\nbo_ka: 3\n", "bo_ka = ", "1", key="bo_ka")
    assert problems(twice) == ["key 'bo_ka' occurs 2 times in the context"]
    # a key that is part of a longer key still counts once: the checker matches whole names
    assert problems(ReadingTask("lookup", "bo_ka: 1\nbo_ka_zu: 2\n", "bo_ka = ", "1", key="bo_ka")) == []


def test_synthetic_seeds_never_reach_the_probe_seeds() -> None:
    assert SEED_LIMIT <= PROBE_SEED_BASE
    assert document_seed(0, 0) == 0 and document_seed(1, 5) == SEED_STRIDE + 5
    assert document_seed(SEED_LIMIT // SEED_STRIDE - 1, SEED_STRIDE - 1) == SEED_LIMIT - 1
    with pytest.raises(ConfigError, match="seed 100 is out of range"):
        document_seed(100, 0)
    with pytest.raises(ConfigError, match="past the"):
        document_seed(0, SEED_STRIDE)


def test_a_mention_asks_one_named_entity_back_in_words_apart_from_the_probes() -> None:
    import random
    import re

    rng = random.Random(11)
    styles = set()
    for _ in range(500):
        task = mention_task(rng)
        assert task.kind == "mention" and problems(task) == []
        assert task.key in task.cue and task.text.endswith(task.cue + task.answer)
        assert "called?" not in task.cue and "Reply with" not in task.cue  # the probes' wording stays theirs
        assert not re.fullmatch(r"[A-Z][a-z]+[A-Z]\w*", task.answer)  # no multi-word PascalCase: held out
        styles.add("cap" if task.answer[0].isupper() and task.answer[1:].islower() else
                   "upper" if task.answer.isupper() else "lower" if task.answer.islower() and task.answer.isalpha()
                   else "joined")
    assert styles == {"cap", "upper", "lower", "joined"}
    assert mentions_text("mentions:0:3") == mentions_text("mentions:0:3") != mentions_text("mentions:0:4")


def test_synthetic_documents_never_draw_a_mention() -> None:
    # documents of a seed stay what they were before `mention` existed (reading-base's build reads them)
    assert all(task.kind in KINDS for seed in range(200) for task in document_tasks(seed))
    assert "mention" not in KINDS
