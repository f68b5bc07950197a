"""A reading check during pre-training: teacher-forced answers to synthetic tasks the run never trains on.

Why: the loss per source says how well the model predicts the corpus, most of which is not
reading (a random string in a context is unpredictable the first time it appears). The answers of
the synthetic tasks are the opposite: fully determined by the context. So at every checkpoint the
model is scored on a fixed set of tasks, per kind: the share of answer tokens its argmax gets
right given everything before them, and the share of answers it gets entirely right. It is a
cheap curve of "has it learnt to copy yet" for choosing the mix and size; the full probes are
`forgerl probe` (forgerl/probes).

The tasks come from seeds CHECK_SEED_BASE + i: above every training seed (synthetic.SEED_LIMIT)
and below the probes' PROBE_SEED_BASE, so they are neither training documents nor probe items.
"""

from __future__ import annotations

import random
from typing import Any

import torch

from forgerl.pretrain.synthetic import KINDS, MAKERS, ReadingTask

CHECK_SEED_BASE = 1_500_000_000
"""Between the training seeds (< SEED_LIMIT = 10**9) and the probes' (>= 2 * 10**9)."""


def check_tasks(n: int) -> list[ReadingTask]:
    """`n` tasks, the kinds in turn, task i from seed CHECK_SEED_BASE + i."""
    return [MAKERS[KINDS[i % len(KINDS)]](random.Random(CHECK_SEED_BASE + i)) for i in range(n)]


def answer_span(tokenizer: Any, task: ReadingTask) -> tuple[list[int], int] | None:
    """The task's token ids and where its answer starts. The cue's trailing space goes with the
    answer (BPE writes " 42" as one token), so the prefix is the text before that space; None when
    the answer's first token still merges with the prefix (then there is no clean boundary)."""
    prefix = tokenizer.encode((task.context + task.cue).rstrip(" "), add_special_tokens=False)
    ids = tokenizer.encode(task.text, add_special_tokens=False)
    if ids[:len(prefix)] != prefix or len(ids) == len(prefix):
        return None
    return ids, len(prefix)


@torch.no_grad()
def answer_accuracy(model: Any, tokenizer: Any, tasks: list[ReadingTask]) -> dict[str, dict[str, float]]:
    """Per kind: `tokens`, the share of answer tokens predicted right (argmax, teacher-forced), and
    `answers`, the share of tasks with every answer token right."""
    right: dict[str, list[int]] = {}
    whole: dict[str, list[int]] = {}
    for task in tasks:
        span = answer_span(tokenizer, task)
        if span is None:
            continue
        ids, start = span
        logits = model(input_ids=torch.tensor([ids])).logits[0]
        hits = (logits[start - 1:-1].argmax(-1) == torch.tensor(ids[start:])).tolist()
        right.setdefault(task.kind, []).extend(hits)
        whole.setdefault(task.kind, []).append(all(hits))
    return {kind: {"tokens": sum(right[kind]) / len(right[kind]), "answers": sum(whole[kind]) / len(whole[kind])}
            for kind in KINDS if kind in right}
