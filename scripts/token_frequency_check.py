"""Is copying held back by rare tokens? Teacher-forced answer accuracy bucketed by how often each answer
token occurs in the pre-training corpus (docs/reading.md, "The tokenizer").

A model learns to write a token only when it is often trained to predict it, so a copy that needs a token
the corpus rarely holds fails whatever the circuit. This counts the tokens of a sample of the `repeat` and
`synthetic` sources (as the first pre-training stage mixes them) and scores held-out copy, lookup and
digit tasks per bucket, digit tokens apart.

    python scripts/token_frequency_check.py data/pretrain/reading-base [--tasks 300]   # ~1 min
"""

from __future__ import annotations

import argparse
import collections
import random

import torch

from forgerl.model.loading import load_policy
from forgerl.pretrain.reading import answer_span
from forgerl.pretrain.synthetic import copy_task, digits_task, document_seed, document_text, lookup_task, repeat_text

TASK_SEED_BASE = 1_700_000_000
"""Inside the reading check's range (pretrain/reading.py), past the tasks it scores: no training document."""
BUCKETS = ((1, "0"), (10, "1-9"), (100, "10-99"), (1000, "100-999"), (float("inf"), "1000+"))
"""(exclusive upper bound on the count, label)."""


def bucket(count: int) -> str:
    return next(label for limit, label in BUCKETS if count < limit)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("model", help="policy directory (or `default`)")
    parser.add_argument("--tasks", type=int, default=300, help="held-out tasks per kind")
    parser.add_argument("--repeat-docs", type=int, default=20_000, help="`repeat` documents counted")
    parser.add_argument("--synthetic-docs", type=int, default=4_000, help="`synthetic` documents counted")
    args = parser.parse_args()
    model, tok = load_policy(args.model, device="cpu")
    counts: collections.Counter[int] = collections.Counter()
    for i in range(args.repeat_docs):
        counts.update(tok.encode(repeat_text(f"repeat:0:{i}"), add_special_tokens=False))
    for i in range(args.synthetic_docs):
        counts.update(tok.encode(document_text(document_seed(0, i)), add_special_tokens=False))
    digit = {i for t, i in tok.get_vocab().items() if tok.convert_tokens_to_string([t]).strip().isdigit()}
    print(f"{sum(counts.values()):,} corpus tokens counted; {len(digit):,} digit tokens in a vocabulary of {len(tok):,}")
    hits: dict[tuple[str, str, str], list[bool]] = collections.defaultdict(list)
    for kind, make in (("copy", copy_task), ("lookup", lookup_task), ("digits", digits_task)):
        for s in range(args.tasks):
            span = answer_span(tok, make(random.Random(TASK_SEED_BASE + s)))
            if span is None:
                continue
            ids, start = span
            with torch.no_grad():
                predicted = model(input_ids=torch.tensor([ids])).logits[0, start - 1:-1].argmax(-1).tolist()
            for p, g in zip(predicted, ids[start:], strict=True):
                hits[(kind, "digit" if g in digit else "other", bucket(counts[g]))].append(p == g)
    print("| task | token | corpus count | answer tokens | right |\n|---|---|---|---|---|")
    for key in sorted(hits, key=lambda k: (k[0], k[1], [b for _, b in BUCKETS].index(k[2]))):
        v = hits[key]
        print(f"| {' | '.join(key)} | {len(v)} | {sum(v) / len(v):.3f} |")


if __name__ == "__main__":
    main()
