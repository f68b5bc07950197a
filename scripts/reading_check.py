"""The pre-training reading check on any policies (docs/reading.md): teacher-forced answer accuracy per
task kind — the share of answer tokens right, the share of whole answers right, and the control (the
answer after another task's context) — on held-out synthetic tasks (pretrain/reading.py).

    python scripts/reading_check.py data/pretrain/reading-base S1 S2 [--n 200] [--mentions 100]
"""

from __future__ import annotations

import argparse

from forgerl.model.loading import load_policy
from forgerl.pretrain.reading import answer_accuracy, check_tasks


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("models", nargs="+", help="policy directories (or `default`)")
    parser.add_argument("--n", type=int, default=200, help="held-out tasks of the four synthetic kinds")
    parser.add_argument("--mentions", type=int, default=0, help="held-out `mention` tasks scored as well")
    args = parser.parse_args()
    tasks = check_tasks(args.n) + (check_tasks(args.mentions, ("mention",)) if args.mentions else [])
    print("| model | kind | answer tokens | whole answers | control |\n|---|---|---|---|---|")
    for name in args.models:
        model, tokenizer = load_policy(name, device="cpu")
        for kind, scores in answer_accuracy(model, tokenizer, tasks).items():
            print(f"| {name} | {kind} | {scores['tokens']:.3f} | {scores['answers']:.3f} | {scores['control']:.3f} |")


if __name__ == "__main__":
    main()
