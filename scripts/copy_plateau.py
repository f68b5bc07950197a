"""How fast does the embedded architecture learn to copy from its context? (issue 20, docs/reading.md)

Trains a fresh model on rows of random-token segments each written twice and prints, every 25 steps,
the accuracy on the second writing (the positions a copy can predict; the first token of each
second writing is left out). Two layouts separate the two ways a model can copy:

* `--offset fixed`: every segment is `--length` tokens, so the copy is always that many positions
  back — a purely positional head solves it, no induction needed;
* `--offset variable`: segments of 8-32 tokens, so the copy must find the previous occurrence of the
  current token and take what followed it (an induction circuit).

`--arch llama` swaps in a plain Llama of the same width and depth (no MoE, no QK-norm, full RoPE)
to tell the architecture's part from the task's. Example (the figures in docs/reading.md):

    python scripts/copy_plateau.py --offset fixed --vocab 64
    python scripts/copy_plateau.py --offset variable --vocab 64 --arch llama
"""

from __future__ import annotations

import argparse
import json
import random
import time

import torch

from forgerl.model.loading import load_policy

FIRST_ID = 100
"""Segment tokens are drawn from [FIRST_ID, FIRST_ID + vocab): ordinary tokens, no special ones."""


def make_model(arch: str) -> torch.nn.Module:
    if arch == "m2":
        return load_policy("tiny-random", device="cpu", chat_format="minimax_m2", seed=0)[0]
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    return LlamaForCausalLM(LlamaConfig(vocab_size=4096, hidden_size=128, intermediate_size=384, num_hidden_layers=4,
                                        num_attention_heads=4, num_key_value_heads=2, head_dim=32,
                                        max_position_embeddings=4096))


def batch(rng: random.Random, args: argparse.Namespace) -> tuple[torch.Tensor, torch.Tensor]:
    """Rows of [segment][segment again] pairs; the mask marks the copy targets."""
    rows, masks = [], []
    for _ in range(args.batch_size):
        row: list[int] = []
        mask: list[int] = []
        while len(row) < args.seq_len:
            n = args.length if args.offset == "fixed" else rng.randint(8, 32)
            seg = [rng.randrange(FIRST_ID, FIRST_ID + args.vocab) for _ in range(n)]
            row += seg + seg
            mask += [0] * (n + 1) + [1] * (n - 1)
        rows.append(row[: args.seq_len])
        masks.append(mask[: args.seq_len])
    return torch.tensor(rows), torch.tensor(masks)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--offset", choices=("fixed", "variable"), default="variable")
    parser.add_argument("--vocab", type=int, default=64, help="distinct segment tokens (at most 3996)")
    parser.add_argument("--length", type=int, default=16, help="segment length with --offset fixed")
    parser.add_argument("--arch", choices=("m2", "llama"), default="m2")
    parser.add_argument("--steps", type=int, default=400)
    parser.add_argument("--lr", type=float, default=3e-3)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--seq-len", type=int, default=256)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    if not 2 <= args.vocab <= 4096 - FIRST_ID:
        parser.error(f"--vocab must be between 2 and {4096 - FIRST_ID}")
    torch.set_num_threads(args.threads)
    model = make_model(args.arch)
    optim = torch.optim.AdamW(model.parameters(), lr=args.lr, betas=(0.9, 0.95), weight_decay=0.0)
    rng, t0 = random.Random(0), time.perf_counter()
    for step in range(1, args.steps + 1):
        ids, mask = batch(rng, args)
        logits = model(input_ids=ids).logits[:, :-1]
        losses = torch.nn.functional.cross_entropy(logits.flatten(0, 1), ids[:, 1:].flatten(), reduction="none")
        for group in optim.param_groups:  # 30 warm-up steps, then constant
            group["lr"] = args.lr * min(1.0, step / 30)
        optim.zero_grad()
        losses.mean().backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optim.step()
        if step % 25 == 0:
            targets = mask[:, 1:].flatten().bool()
            right = (logits.argmax(-1).flatten() == ids[:, 1:].flatten())[targets]
            print(json.dumps({"step": step, "tokens": step * ids.numel(), "copy_loss": round(losses[targets].mean().item(), 3),
                              "copy_accuracy": round(right.float().mean().item(), 3),
                              "seconds": round(time.perf_counter() - t0)}), flush=True)


if __name__ == "__main__":
    main()
