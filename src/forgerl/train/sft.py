"""Supervised bootstrap: teach a policy the chat format and the tool-use moves before RL.

Data comes from scripted solver agents (each family's gold path; with interleaved thinking where
the family provides `gold_messages`), rejection-sampled by the family's own verifier: only
conversations that score 1.0 are kept. Each conversation is rendered with the same chat format and
the same `encode_segments` the agent loop uses, so SFT trains exactly the token sequences the
policy will later sample (assistant bodies trainable, everything else masked).

A run's own passing trajectories can be added or used alone (`run_sft(from_store=...)`: rejection
sampling from RL, trained on the ids the store recorded), and an expert system prompt can be
partly dropped per example (prompt distillation): both in sft_store.py.
"""

from __future__ import annotations

import asyncio
import json
import random
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from forgerl.chat import get_format
from forgerl.chat.base import ChatFormat, encode_segments
from forgerl.envs.base import Environment, Task, make_env, sample_task
from forgerl.errors import ToolError
from forgerl.model.loading import DEFAULT_POLICY_DIR, load_policy
from forgerl.model.logprobs import collate, head_logits, token_logprobs
from forgerl.model.lora import causal_lm, decoder_and_head
from forgerl.model.mtp import MTPShape, attach_mtp, detached_mtp, get_mtp, mtp_cross_entropy, save_mtp
from forgerl.perturb.gold import perturbed_gold_conversation
from forgerl.perturb.spec import PerturbSpec
from forgerl.train.rollouts import make_task
from forgerl.train.schedule import adamw_warmup_cosine
from forgerl.train.sft_context import managed_examples
from forgerl.train.sft_store import (
    SFTExample,
    StoreSelection,
    distilled_messages,
    example_rng,
    passing_trajectories,
    store_examples,
)
from forgerl.types import Message, ToolSpec, TrainingSample, Trajectory

MIN_SHARED_PREFIX = 32  # below this, sharing saves less than its second forward call costs


@dataclass
class Conversation:
    messages: list[Message]
    tools: list[ToolSpec]
    task_id: str
    chat_format: str | None = None
    """The format this conversation is rendered in; None = the run's own (perturbed data varies it)."""


async def gold_conversation(env: Environment, task: Task, *, inject_error: bool = False, seed: int = 0,
                            varied: bool = False) -> Conversation:
    """The family's scripted solver on `task`.

    Environments that define `gold_messages(task, inject_error=, seed=)` (whole conversations with
    interleaved thinking, tool results from really running the tools, optionally recovering from an
    injected tool error, and with `varied` in a solver style drawn from `seed`) are used as they are;
    otherwise the gold tool-call rounds are executed on `env`, one round per assistant message, with
    empty thinking."""
    messages = env.reset(task)
    tools = env.tools()
    scripted = getattr(env, "gold_messages", None)
    if scripted is not None:
        styled = {"varied": True} if varied else {}
        return Conversation(list(scripted(task, inject_error=inject_error, seed=seed, **styled)), tools, task.id)
    for round_calls in env.gold_solution(task):
        messages.append(Message(role="assistant", tool_calls=round_calls, reasoning=""))
        results = await asyncio.gather(*(env.execute(c) for c in round_calls))
        messages.extend(Message(role="tool", content=r, tool_call_id=c.id, name=c.name) for c, r in zip(round_calls, results))
    return Conversation(messages, tools, task.id)


async def replay_score(env: Environment, task: Task, conv: Conversation) -> float:
    """Rejection sampling's judge: replay the conversation's tool calls on a fresh environment and
    let the family's verifier score the end state."""
    env.reset(task)
    for message in conv.messages:
        for call in message.tool_calls:
            try:
                await env.execute(call)
            except ToolError:
                pass  # the conversation saw this error too (e.g. an injected transient failure)
    return env.reward(Trajectory(task_id=task.id, messages=conv.messages, tools=conv.tools)).score


async def verified_conversations(family: str, seeds: Iterable[int], make_task: Callable[[int], Task] | None = None,
                                 *, error_every: int = 0, varied: bool = False,
                                 perturb: PerturbSpec | None = None) -> tuple[list[Conversation], int]:
    """Gold conversations that the family's verifier scores 1.0, and how many were rejected.
    With `error_every=k`, every k-th conversation recovers from an injected tool error; with
    `varied`, each conversation's solver style is drawn from its seed. With an active `perturb`
    spec, each conversation is played under the perturbations drawn for its seed (perturb/gold.py;
    the environment dimension injects failures, so `error_every` is not used) and judged by the
    reward of the perturbed environment its calls ran in."""
    kept, rejected = [], 0
    for n, seed in enumerate(seeds):
        task = make_task(seed) if make_task else sample_task(family, seed)
        if perturb is not None and perturb.active:
            played = await perturbed_gold_conversation(family, task, perturb, seed, varied=varied)
            if played.score == 1.0:
                kept.append(Conversation(played.messages, played.tools, played.task_id, played.chat_format))
            else:
                rejected += 1
            continue
        inject = error_every > 0 and n % error_every == error_every - 1
        conv = await gold_conversation(make_env(family, seed), task, inject_error=inject, seed=seed, varied=varied)
        judge = make_env(family, seed)
        try:
            score = await replay_score(judge, task, conv)
        finally:
            close = getattr(judge, "close", None)
            if close is not None and asyncio.iscoroutine(result := close()):
                await result
        if score == 1.0:
            kept.append(conv)
        else:
            rejected += 1
    return kept, rejected


def encode_conversation(tokenizer: Any, fmt: ChatFormat, conv: Conversation) -> tuple[list[int], list[int]]:
    """Token ids and trainable mask of `conv`, in its own chat format when it has one, else in `fmt`."""
    if conv.chat_format is not None and conv.chat_format != fmt.name:
        fmt = get_format(conv.chat_format)
    rendered = encode_segments(tokenizer, fmt.render(conv.messages, conv.tools, add_generation_prompt=False))
    return rendered.ids, rendered.mask


def shared_prefix_length(batch: Sequence[tuple[list[int], list[int]]]) -> int:
    """Length of the token prefix every sequence of the batch starts with and trains on nothing of
    (the system prompt and tool schemas of one family: ~900 of ~1200 tokens in tool-reasoning).
    One token is left to every sequence so each has a suffix to run."""
    if len(batch) < 2:
        return 0
    limit = min(len(ids) for ids, _ in batch) - 1
    first = batch[0][0]
    n = 0
    while n < limit and all(ids[n] == first[n] for ids, _ in batch) and not any(mask[n] for _, mask in batch):
        n += 1
    return n


@dataclass
class MTPInputs:
    """What the MTP heads train on for one SFT batch, taken from the same forward as the SFT loss:
    the main model's last hidden states (with gradient) over each row, its tokens, trainable mask,
    valid (non-padding) positions and true positions. Rows may start inside the sequences (a
    shared prefix contributes only the last positions the heads' windows reach)."""

    hidden: torch.Tensor
    ids: torch.Tensor
    mask: torch.Tensor
    valid: torch.Tensor
    positions: torch.Tensor


def _shared_prefix_logprobs(model: torch.nn.Module, batch: Sequence[tuple[list[int], list[int]]], prefix: int,
                            device: Any, mtp_reach: int = 0) -> tuple[torch.Tensor, int, MTPInputs | None]:
    """Target-token logprobs with the shared prefix run once: a two-level prefix tree built from
    the model's own KV cache. The prefix's keys/values are computed once (with gradient), repeated
    for every sequence, and the suffixes attend to them at positions that continue from the prefix,
    so every logit and gradient equals the padded per-sequence computation (test_sft checks it) for
    a fraction of the tokens."""
    from transformers.cache_utils import DynamicCache

    decoder, head = decoder_and_head(model)
    cache = DynamicCache(config=causal_lm(model).config)
    prefix_ids = torch.tensor([batch[0][0][:prefix]], device=device)
    prefix_hidden = decoder(input_ids=prefix_ids, past_key_values=cache, use_cache=True).last_hidden_state
    cache.batch_repeat_interleave(len(batch))
    width = max(len(ids) for ids, _ in batch) - prefix
    ids = torch.zeros(len(batch), width, dtype=torch.long)
    attn = torch.zeros(len(batch), prefix + width, dtype=torch.long)
    attn[:, :prefix] = 1
    mask = torch.zeros(len(batch), width, dtype=torch.bool)
    for i, (seq, seq_mask) in enumerate(batch):
        n = len(seq) - prefix
        ids[i, :n] = torch.tensor(seq[prefix:])
        attn[i, prefix:prefix + n] = 1
        mask[i, :n] = torch.tensor(seq_mask[prefix:], dtype=torch.bool)
    mask[:, 0] = False  # predicted from the prefix's last position: never trainable (shared_prefix_length)
    ids, attn, mask = ids.to(device), attn.to(device), mask.to(device)
    positions = (prefix + torch.arange(width, device=device)).unsqueeze(0).expand(len(batch), width)
    hidden = decoder(input_ids=ids, attention_mask=attn, position_ids=positions, past_key_values=cache,
                     use_cache=True).last_hidden_state  # [B, W, H]
    rows, cols = mask.nonzero(as_tuple=True)
    logits = head_logits(head, hidden[rows, cols - 1])
    logp = torch.log_softmax(logits, dim=-1).gather(-1, ids[rows, cols].unsqueeze(-1)).squeeze(-1)
    if mtp_reach <= 0:
        return logp.sum(), int(rows.numel()), None
    # the heads' rows: the prefix's last positions their windows reach, then each suffix
    lead = min(prefix, mtp_reach)
    count = len(batch)
    targets = torch.zeros(count, width, dtype=torch.bool)
    for i, (seq, seq_mask) in enumerate(batch):
        targets[i, :len(seq) - prefix] = torch.tensor(seq_mask[prefix:], dtype=torch.bool)
    inputs = MTPInputs(
        hidden=torch.cat([prefix_hidden[:, prefix - lead:].expand(count, -1, -1), hidden], dim=1),
        ids=torch.cat([prefix_ids[:, prefix - lead:].expand(count, -1), ids], dim=1),
        mask=torch.cat([torch.zeros(count, lead, dtype=torch.bool), targets], dim=1).to(device),
        valid=torch.cat([torch.ones(count, lead, dtype=torch.bool, device=device), attn[:, prefix:].bool()], dim=1),
        positions=(prefix - lead + torch.arange(lead + width, device=device)).unsqueeze(0).expand(count, -1))
    return logp.sum(), int(rows.numel()), inputs


def _padded_logprobs(model: torch.nn.Module, batch: Sequence[tuple[list[int], list[int]]],
                     device: Any) -> tuple[torch.Tensor, int, MTPInputs]:
    """Summed target logprobs over right-padded rows (token_logprobs' computation), keeping the
    hidden states for the MTP heads."""
    decoder, head = decoder_and_head(model)
    width = max(len(ids) for ids, _ in batch)
    ids = torch.zeros(len(batch), width, dtype=torch.long)
    valid = torch.zeros(len(batch), width, dtype=torch.bool)
    mask = torch.zeros(len(batch), width, dtype=torch.bool)
    for i, (seq, seq_mask) in enumerate(batch):
        ids[i, :len(seq)] = torch.tensor(seq)
        valid[i, :len(seq)] = True
        mask[i, :len(seq)] = torch.tensor(seq_mask, dtype=torch.bool)
    ids, valid, mask = ids.to(device), valid.to(device), mask.to(device)
    hidden = decoder(input_ids=ids, attention_mask=valid.long()).last_hidden_state
    train = mask.clone()
    train[:, 0] = False  # the first token has nothing before it to be predicted from
    rows, cols = train.nonzero(as_tuple=True)
    logits = head_logits(head, hidden[rows, cols - 1])
    logp = torch.log_softmax(logits, dim=-1).gather(-1, ids[rows, cols].unsqueeze(-1)).squeeze(-1)
    positions = torch.arange(width, device=device).unsqueeze(0).expand(len(batch), -1)
    return logp.sum(), int(rows.numel()), MTPInputs(hidden, ids, mask, valid, positions)


def sft_mtp_loss(model: torch.nn.Module, batch: Sequence[tuple[list[int], list[int]]],
                 device: Any) -> tuple[torch.Tensor, int, torch.Tensor, list[float]]:
    """`sft_loss` plus the MTP heads' cross-entropy (mtp_cross_entropy, mean over depths) on the
    same batch from the same forward: (summed SFT loss, target count, MTP loss, per-depth MTP
    losses). The MTP gradient flows into the main model too, as in M2's pre-training."""
    heads = get_mtp(model)
    if heads is None:
        raise ValueError("sft_mtp_loss needs a model with MTP heads (model.mtp.attach_mtp)")
    reach = heads.reach
    prefix = shared_prefix_length(batch)
    inputs = None
    if prefix >= MIN_SHARED_PREFIX:
        logp_sum, n, inputs = _shared_prefix_logprobs(model, batch, prefix, device, mtp_reach=reach)
    if inputs is None:
        logp_sum, n, inputs = _padded_logprobs(model, batch, device)
    decoder, head = decoder_and_head(model)
    outputs = heads(inputs.hidden, inputs.ids, decoder.embed_tokens, positions=inputs.positions, valid=inputs.valid)
    mtp_loss, per_depth = mtp_cross_entropy(head, outputs, inputs.ids, inputs.mask)
    return -logp_sum, n, mtp_loss, per_depth


def sft_loss(model: torch.nn.Module, batch: Sequence[tuple[list[int], list[int]]], device: Any,
             share_prefix: bool = True) -> tuple[torch.Tensor, int]:
    """Summed next-token cross-entropy over trainable target tokens, and their count. The LM head
    runs (in FP32) only where a trainable token is predicted. With `share_prefix`, a prefix common
    to the whole batch (MIN_SHARED_PREFIX tokens or more) is computed once (3.4x faster for a batch
    of 8 tool-reasoning conversations, same gradients within 1e-6)."""
    prefix = shared_prefix_length(batch) if share_prefix else 0
    if prefix >= MIN_SHARED_PREFIX:
        logp_sum, n, _ = _shared_prefix_logprobs(model, batch, prefix, device)
        return -logp_sum, n
    samples = [TrainingSample(input_ids=ids, loss_mask=mask, old_logprobs=[0.0] * len(ids), advantages=[0.0] * len(ids),
                              trajectory_id="sft", calls=[], policy_versions=[]) for ids, mask in batch]
    mb = collate(samples, device)
    logp, _ = token_logprobs(model, mb)
    return -(logp * mb.loss_mask).sum(), mb.num_tokens


@dataclass
class SFTResult:
    losses: list[float]
    examples: int
    rejected: int
    seconds: float


def encode_within(tokenizer: Any, fmt: ChatFormat, conversations: Sequence[Conversation],
                  max_length: int | None = None) -> list[tuple[list[int], list[int]]]:
    """The conversations' (ids, mask), dropping those longer than `max_length` tokens (perturbed
    prompts with distractor tools and long system prompts can outgrow the model's context)."""
    encoded = [encode_conversation(tokenizer, fmt, c) for c in conversations]
    kept = [e for e in encoded if max_length is None or len(e[0]) <= max_length]
    if not kept:
        raise ValueError(f"all {len(encoded)} SFT conversations are longer than max_length={max_length} tokens; "
                         "raise max_length (up to the model's context) or use easier tasks")
    return kept


def train_sft(model: torch.nn.Module, tokenizer: Any, fmt: ChatFormat, conversations: Sequence[Conversation], *,
              steps: int, batch_size: int = 16, lr: float = 2e-3, warmup: int = 20, seed: int = 0,
              device: Any = "cpu", log: Callable[[int, float], None] | None = None,
              max_length: int | None = None) -> list[float]:
    """AdamW on the conversations' assistant tokens; cosine decay after a linear warm-up.
    Conversations longer than `max_length` tokens are left out (`encode_within`)."""
    encoded = encode_within(tokenizer, fmt, conversations, max_length)
    return train_sft_encoded(model, encoded, steps=steps, batch_size=batch_size, lr=lr, warmup=warmup, seed=seed,
                             device=device, log=log)


def train_sft_encoded(model: torch.nn.Module, encoded: Sequence[tuple[list[int], list[int]]], *, steps: int,
                      batch_size: int = 16, lr: float = 2e-3, warmup: int = 20, seed: int = 0, device: Any = "cpu",
                      log: Callable[[int, float], None] | None = None, mtp_weight: float = 0.0,
                      mtp_log: Callable[[int, list[float]], None] | None = None) -> list[float]:
    """`train_sft` on conversations already encoded as (ids, trainable mask). With `mtp_weight` > 0
    (the model must have MTP heads) the objective is the SFT loss + mtp_weight x the MTP loss
    (`sft_mtp_loss`), and `mtp_log` gets each step's per-depth MTP losses; the losses returned
    (and given to `log`) are the whole objective's."""
    if mtp_weight > 0 and get_mtp(model) is None:
        raise ValueError(f"mtp_weight={mtp_weight} needs MTP heads on the model: attach them (--mtp-modules K) "
                         "or start from a policy that has them")
    rng = random.Random(seed)
    optim, sched = adamw_warmup_cosine(model.parameters(), lr=lr, warmup=warmup, total=steps)
    model.train()
    losses = []
    for step in range(steps):
        batch = rng.sample(encoded, min(batch_size, len(encoded)))
        if mtp_weight > 0:
            loss_sum, n, mtp_loss, per_depth = sft_mtp_loss(model, batch, device)
            loss = loss_sum / max(1, n) + mtp_weight * mtp_loss
            if mtp_log is not None:
                mtp_log(step, per_depth)
        else:
            loss_sum, n = sft_loss(model, batch, device)
            loss = loss_sum / max(1, n)
        optim.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optim.step()
        sched.step()
        losses.append(float(loss.detach()))
        if log is not None:
            log(step, losses[-1])
    model.eval()
    return losses


def save_policy(model: torch.nn.Module, tokenizer: Any, out_dir: str | Path, metadata: dict[str, Any]) -> Path:
    """A Hugging Face checkpoint directory (safetensors) + the tokenizer + how it was made. MTP
    heads go to mtp.safetensors beside model.safetensors, which holds the main model only."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    with detached_mtp(model):
        model.save_pretrained(out, safe_serialization=True)
    save_mtp(model, out)
    tokenizer.save_pretrained(out)
    (out / "forgerl.json").write_text(json.dumps({**metadata, "created_at": time.time()}, indent=2))
    return out


def scripted_examples(tokenizer: Any, fmt: ChatFormat, conversations: Sequence[Conversation], *, family: str,
                      drop_p: float = 0.0, seed: int = 0) -> list[SFTExample]:
    """The scripted conversations as SFT examples, each with its system prompt's `## ` sections
    dropped with probability `drop_p` (seeded per conversation, recorded in its source). Dropping
    re-renders only the prompt: assistant bodies are encoded on their own (encode_segments), so
    their ids are the same with or without the sections."""
    out = []
    for n, conv in enumerate(conversations):
        key = f"{conv.task_id}:{n}"
        messages, record = distilled_messages(conv.messages, drop_p, example_rng(seed, key))
        if drop_p == 0:
            record = {"sections": [], "dropped": [], "distill": "off"}
        ids, mask = encode_conversation(tokenizer, fmt, Conversation(messages, conv.tools, conv.task_id, conv.chat_format))
        out.append(SFTExample(ids, mask, {"source": "scripted", "family": family, "task": conv.task_id, "index": n,
                                          **record}))
    return out


def within_length(examples: Sequence[SFTExample], max_length: int | None) -> list[SFTExample]:
    """`examples` no longer than `max_length` tokens (`encode_within` for SFTExample)."""
    kept = [e for e in examples if max_length is None or len(e.ids) <= max_length]
    if not kept:
        raise ValueError(f"all {len(examples)} SFT conversations are longer than max_length={max_length} tokens; "
                         "raise max_length (up to the model's context) or use easier tasks")
    return kept


EXAMPLES_FILE = "sft_examples.jsonl"
"""Beside forgerl.json in an SFT output: one line per example trained on, saying where it came from
(scripted task or stored run + trajectory + reward) and which expert-prompt sections it dropped."""


def run_sft(out: str | None = None, *, family: str = "tool-reasoning", examples: int = 1500, steps: int = 600,
            batch_size: int = 16, lr: float = 2e-3, seed: int = 0, chat_format: str = "minimax_m2",
            difficulty: list[int] | None = None, init: str = "tiny-random", varied: bool = False,
            perturb: PerturbSpec | None = None, max_length: int = 3072, mtp_weight: float | None = None,
            mtp_modules: int = 0, from_store: str | None = None, store_selection: StoreSelection | None = None,
            drop_prompt_sections: float = 0.0, context_action: str | None = None, context_examples: int = 0,
            context_window: int = 2048, reading: Sequence[Sequence[Message]] = ()) -> Path:
    """Build the default policy: verified scripted-solver conversations -> SFT of tiny-random.
    With an active `perturb` spec the conversations are played under perturbed scaffolds
    (perturb/gold.py); conversations over `max_length` tokens are left out. `mtp_modules` K > 0
    attaches K fresh MTP heads when the init has none; `mtp_weight` weighs their loss (default:
    0.3, M2's pre-training weight, when the model has heads, else off). `from_store` adds a run's
    passing trajectories (sft_store.py; `examples=0` trains on them alone); `drop_prompt_sections`
    is prompt distillation's per-section drop probability. `context_examples` more conversations
    (seeds after the others) are played through the agent loop with the scripted solver managing
    its context by the tool `context_<context_action>` in a `context_window`-token context
    (sft_context.py; one example per prefix-tree root). `reading` conversations without tools are
    added as they are (`forgerl sft --reading-examples N` makes N plain turns that ask back a fact
    from the turn itself: forgerl.pretrain.chat_turns). Every example trained on is
    listed in EXAMPLES_FILE beside the policy."""
    from rich.console import Console

    console = Console()
    levels = difficulty or [1, 2, 3]
    t0 = time.perf_counter()
    if examples <= 0 and from_store is None and context_examples <= 0 and not reading:
        raise ValueError("nothing to train on: --examples 0 needs --from-store RUN_DIR (a run's passing trajectories), "
                         "--context-examples N or --reading-examples N")
    if (context_examples > 0) != (context_action is not None):
        raise ValueError("--context-examples N and --context-action NAME go together: N episodes in which the solver "
                         "calls the context tool context_NAME")
    chosen, held = passing_trajectories(from_store, store_selection or StoreSelection(), seed) if from_store else ([], 0)
    model, tokenizer = load_policy(init, device="cpu", chat_format=chat_format, seed=seed)
    mtp_weight = _mtp_setup(model, mtp_weight, mtp_modules, seed)
    data, convs, rejected = [], [], 0
    if examples > 0:
        convs, rejected = asyncio.run(verified_conversations(
            family, range(seed, seed + examples), make_task=lambda s: make_task(family, s, levels[s % len(levels)])[1],
            error_every=5, varied=varied, perturb=perturb))
        data += scripted_examples(tokenizer, get_format(chat_format), convs, family=family, drop_p=drop_prompt_sections,
                                  seed=seed)
    if from_store is not None:
        data += store_examples(chosen, tokenizer, drop_p=drop_prompt_sections, seed=seed)
    managed_rejected = 0
    if context_examples > 0 and context_action is not None:
        first = seed + max(examples, 0)
        tasks = [(s, make_task(family, s, levels[s % len(levels)])[1]) for s in range(first, first + context_examples)]
        managed, managed_rejected = asyncio.run(managed_examples(family, tasks, tokenizer, get_format(chat_format),
                                                                 context_action, max_context=context_window, varied=varied))
        data += managed
    if reading:
        turns = scripted_examples(tokenizer, get_format(chat_format),
                                  [Conversation(list(m), [], f"reading-{i}") for i, m in enumerate(reading)], family="reading")
        data += [SFTExample(e.ids, e.mask, {**e.source, "source": "reading"}) for e in turns]
    kept = within_length(data, max_length)
    console.print(_data_line(kept, len(data) - len(kept), rejected, family, max_length, perturb, from_store, held,
                             drop_prompt_sections, time.perf_counter() - t0, managed_rejected), markup=False, highlight=False)

    def log(step: int, loss: float) -> None:
        if step % 50 == 0 or step == steps - 1:
            what = f" (SFT + {mtp_weight} x MTP)" if mtp_weight else ""
            console.print(f"sft step {step:4d}  loss {loss:.4f}{what}  ({time.perf_counter() - t0:.0f} s)")

    mtp_final: list[float] = []

    def mtp_log(step: int, per_depth: list[float]) -> None:
        mtp_final[:] = per_depth
        if step % 50 == 0 or step == steps - 1:
            console.print("    mtp " + "  ".join(f"depth {k} {v:.4f}" for k, v in enumerate(per_depth, start=1)))

    losses = train_sft_encoded(model, [(e.ids, e.mask) for e in kept], steps=steps, batch_size=batch_size, lr=lr,
                               seed=seed, log=log, mtp_weight=mtp_weight, mtp_log=mtp_log)
    target = Path(out) if out else DEFAULT_POLICY_DIR
    save_policy(model, tokenizer, target, {
        "made_by": "forgerl sft", "init": init, "family": family, "difficulty": levels, "examples": len(convs), "rejected": rejected,
        "steps": steps, "batch_size": batch_size, "lr": lr, "seed": seed, "chat_format": chat_format, "varied_styles": varied,
        "perturb": perturb.model_dump(mode="json") if perturb is not None and perturb.active else None,
        "max_length": max_length, "too_long": len(data) - len(kept),
        "context_action": context_action, "context_examples": context_examples, "context_window": context_window,
        "context_rejected": managed_rejected, "reading_examples": len(reading),
        "final_loss": losses[-1] if losses else None, "seconds": time.perf_counter() - t0,
        "mtp_weight": mtp_weight, "mtp_final_losses": mtp_final or None,
        "data": _data_record(kept, from_store, held, store_selection, drop_prompt_sections)})
    (target / EXAMPLES_FILE).write_text("".join(json.dumps(e.source, sort_keys=True) + "\n" for e in kept))
    console.print(f"saved the policy to {target} in {time.perf_counter() - t0:.0f} s")
    return target


def _data_line(kept: Sequence[SFTExample], too_long: int, rejected: int, family: str, max_length: int,
               perturb: PerturbSpec | None, from_store: str | None, held: int, drop_p: float, seconds: float,
               managed_rejected: int = 0) -> str:
    """The console's one line on what the SFT trains on."""
    scripted = sum(e.source["source"] == "scripted" for e in kept)
    stored = {e.source["trajectory"] for e in kept if e.source["source"] == "store"}
    perturbed = " under perturbed scaffolds" if perturb is not None and perturb.active else ""
    parts = [f"{scripted} verified conversations from the {family} scripted solver{perturbed} ({rejected} rejected "
             "by the verifier)"] if scripted or rejected else []
    if from_store is not None:
        parts.append(f"{len(stored)} passing trajectories (of {held}) from the store in {from_store}")
    reading = sum(e.source["source"] == "reading" for e in kept)
    if reading:
        parts.append(f"{reading} plain reading turns")
    managed = [e.source for e in kept if e.source["source"] == "scripted-context"]
    if managed:
        episodes = len({e["task"] for e in managed})
        parts.append(f"{len(managed)} segments of {episodes} episodes where the solver manages its context "
                     f"(context_{managed[0]['action']}; {managed_rejected} more did not finish or pass)")
    dropped = sum(bool(e.source["dropped"]) for e in kept)
    distilled = f"; {dropped} with expert-prompt sections dropped" if dropped else ""
    if drop_p > 0 and not any(e.source["sections"] for e in kept):
        distilled = "; no system prompt has `## ` sections, so --drop-prompt-sections dropped nothing"
    return (f"SFT data: {' + '.join(parts)}, {too_long} over {max_length} tokens left out{distilled}, "
            f"in {seconds:.1f} s")


def _data_record(kept: Sequence[SFTExample], from_store: str | None, held: int, selection: StoreSelection | None,
                 drop_p: float) -> dict[str, Any]:
    """forgerl.json's summary of the data (EXAMPLES_FILE has it per example)."""
    selection = selection or StoreSelection()
    stored = [e.source for e in kept if e.source["source"] == "store"]
    return {"examples_file": EXAMPLES_FILE, "scripted": sum(e.source["source"] == "scripted" for e in kept),
            "scripted_context_segments": sum(e.source["source"] == "scripted-context" for e in kept),
            "reading_turns": sum(e.source["source"] == "reading" for e in kept),
            "store": None if from_store is None else {
                "run_dir": str(from_store), "min_reward": selection.min_reward,
                "families": list(selection.families) if selection.families is not None else None,
                "max_examples": selection.max_examples, "held": held,
                "trajectories": len({s["trajectory"] for s in stored}),
                "sequences": len(stored)},
            "drop_prompt_sections": drop_p, "with_sections_dropped": sum(bool(e.source["dropped"]) for e in kept)}


M2_MTP_WEIGHT = 0.3
"""MiniMax-M2's MTP loss weight in pre-training (0.1 in the decay phase)."""


def _mtp_setup(model: torch.nn.Module, weight: float | None, modules: int, seed: int) -> float:
    """Attach `modules` fresh heads when asked and the model has none; the MTP loss weight to use."""
    if weight is not None and weight < 0:
        raise ValueError(f"--mtp-weight {weight}: the MTP loss weight must be >= 0")
    if modules > 0 and get_mtp(model) is None:
        attach_mtp(model, MTPShape(modules), seed=seed)
    if get_mtp(model) is None:
        if weight:
            raise ValueError(f"--mtp-weight {weight} needs MTP heads: pass --mtp-modules K to attach K fresh ones, "
                             "or --init a policy that has them")
        return 0.0
    return M2_MTP_WEIGHT if weight is None else weight
