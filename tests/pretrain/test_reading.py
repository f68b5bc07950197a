"""The reading check: an oracle that copies scores 1, a model that does not scores 0."""

from __future__ import annotations

from types import SimpleNamespace

import torch

from forgerl.model.tokenizer import load_default_tokenizer
from forgerl.pretrain.reading import CHECK_SEED_BASE, answer_accuracy, answer_span, check_tasks, controls
from forgerl.pretrain.synthetic import KINDS, SEED_LIMIT
from forgerl.probes.items import PROBE_SEED_BASE


class Oracle:
    """Knows every task's text: at each position its logits put the next token of `texts` first."""

    def __init__(self, vocab: int, constant: int | None = None) -> None:
        self.vocab, self.constant = vocab, constant
        self.next: dict[tuple[int, ...], int] = {}

    def learn(self, ids: list[int]) -> None:
        for i in range(1, len(ids)):
            self.next[tuple(ids[:i])] = ids[i]

    def __call__(self, input_ids: torch.Tensor) -> SimpleNamespace:
        ids = input_ids[0].tolist()
        logits = torch.zeros(1, len(ids), self.vocab)
        for i in range(len(ids)):
            logits[0, i, self.next.get(tuple(ids[:i + 1]), 0) if self.constant is None else self.constant] = 1.0
        return SimpleNamespace(logits=logits)


def test_an_oracle_scores_one_and_a_constant_model_zero() -> None:
    tok = load_default_tokenizer()
    tasks = check_tasks(12) + check_tasks(6, ("mention",))
    oracle = Oracle(len(tok))
    for task in tasks:
        oracle.learn(tok.encode(task.text, add_special_tokens=False))
    scores = answer_accuracy(oracle, tok, tasks)
    assert set(scores) == {*KINDS, "mention"}
    # it copies from the context it was given: after another task's context it has nothing to copy
    assert all(s == {"tokens": 1.0, "answers": 1.0, "control": 0.0} for s in scores.values())
    blank = answer_accuracy(Oracle(len(tok), constant=0), tok, tasks)
    assert all(s == {"tokens": 0.0, "answers": 0.0, "control": 0.0} for s in blank.values())


def test_the_answer_starts_after_the_cue_and_the_seeds_are_apart() -> None:
    tok = load_default_tokenizer()
    assert [t.kind for t in check_tasks(8)] == [*KINDS, *KINDS]  # the default check is what it always was
    for task in check_tasks(40) + check_tasks(20, ("mention",)):
        ids, start = answer_span(tok, task)
        assert tok.decode(ids[start:]).strip() == task.answer
        assert tok.decode(ids[start:start + 1]).strip()  # a bare space before digits is not scored: it is guessable
    for task, control in zip(check_tasks(40), controls(check_tasks(40)), strict=True):
        assert control.kind == task.kind and control.answer == task.answer and task.answer not in control.context
    assert SEED_LIMIT <= CHECK_SEED_BASE and CHECK_SEED_BASE + 10**8 < PROBE_SEED_BASE
