"""A reading check during pre-training: teacher-forced answers to synthetic tasks the run never trains on.

Why: the loss per source says how well the model predicts the corpus, most of which is not
reading (a random string in a context is unpredictable the first time it appears). The answers of
the synthetic tasks are the opposite: fully determined by the context. So at every checkpoint the
model is scored on a fixed set of tasks, per kind: the share of answer tokens its argmax gets
right given everything before them, the share of answers it gets entirely right, and as a control
the answer-token share when the answer follows another task's context (what it guesses without
reading: invented words share syllables, so the prior alone gets some tokens right). It is a
cheap curve of "has it learnt to copy yet" for choosing the mix and size; the full probes are
`forgerl probe` (forgerl/probes).

The tasks come from seeds CHECK_SEED_BASE + i: above every training seed (synthetic.SEED_LIMIT)
and below the probes' PROBE_SEED_BASE, so they are neither training documents nor probe items.
"""

from __future__ import annotations

import random
from dataclasses import replace
from typing import Any

import torch

from forgerl.pretrain.synthetic import KINDS, MAKERS, ReadingTask

CHECK_SEED_BASE = 1_500_000_000
"""Between the training seeds (< SEED_LIMIT = 10**9) and the probes' (>= 2 * 10**9)."""


def check_tasks(n: int, kinds: tuple[str, ...] = KINDS) -> list[ReadingTask]:
    """`n` tasks, `kinds` in turn, task i from seed CHECK_SEED_BASE + i (the default kinds give the
    same tasks as before `mention` existed, so old and new figures compare)."""
    return [MAKERS[kinds[i % len(kinds)]](random.Random(CHECK_SEED_BASE + i)) for i in range(n)]


def answer_span(tokenizer: Any, task: ReadingTask) -> tuple[list[int], int] | None:
    """The task's token ids and where its answer starts. The cue's trailing space goes with the
    answer (BPE writes " ab" as one token), so the prefix is the text before that space; when the
    space is a token of its own (the digit-group tokenizer cuts digits off it, model/tokenizer.py
    DIGIT_GROUP), the answer starts after it: a bare space is predictable without reading. None
    when the answer's first token still merges with the prefix (then there is no clean boundary)."""
    prefix = tokenizer.encode((task.context + task.cue).rstrip(" "), add_special_tokens=False)
    ids = tokenizer.encode(task.text, add_special_tokens=False)
    if ids[:len(prefix)] != prefix or len(ids) == len(prefix):
        return None
    start = len(prefix)
    if start + 1 < len(ids) and not tokenizer.decode(ids[start:start + 1]).strip():
        start += 1
    return ids, start


def controls(tasks: list[ReadingTask]) -> list[ReadingTask | None]:
    """Each task's cue and answer after the context of the next task of the same kind, where the
    answer is not: what the model gets right there it knows without reading (the answers' prior)."""
    out: list[ReadingTask | None] = []
    for i, task in enumerate(tasks):
        others = [t for t in tasks[i + 1:] + tasks[:i] if t.kind == task.kind and task.answer not in t.context]
        out.append(replace(task, context=others[0].context) if others else None)
    return out


def _hits(model: Any, tokenizer: Any, task: ReadingTask) -> list[bool] | None:
    span = answer_span(tokenizer, task)
    if span is None:
        return None
    ids, start = span
    logits = model(input_ids=torch.tensor([ids])).logits[0]
    return (logits[start - 1:-1].argmax(-1) == torch.tensor(ids[start:])).tolist()


@torch.no_grad()
def answer_accuracy(model: Any, tokenizer: Any, tasks: list[ReadingTask]) -> dict[str, dict[str, float]]:
    """Per kind: `tokens`, the share of answer tokens predicted right (argmax, teacher-forced);
    `answers`, the share of tasks with every answer token right; `control`, `tokens` with each
    answer after another task's context (`controls`). Reading is `tokens` well above `control`."""
    scores: dict[str, dict[str, list[bool]]] = {}
    for task, control in zip(tasks, controls(tasks), strict=True):
        hits = _hits(model, tokenizer, task)
        if hits is None:
            continue
        kind = scores.setdefault(task.kind, {"tokens": [], "answers": [], "control": []})
        kind["tokens"] += hits
        kind["answers"].append(all(hits))
        kind["control"] += (_hits(model, tokenizer, control) or []) if control is not None else []
    return {kind: {name: sum(v) / len(v) if v else 0.0 for name, v in scores[kind].items()}
            for kind in MAKERS if kind in scores}
