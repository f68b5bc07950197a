"""Issue 8's experiment: a reward model learnt from a scripted expert's labels on real rollouts of
the default policy, then used as a reward component, moves the policy toward the expert's taste.

Three stages (scripts/rm_reward_experiment.py runs them):

1. `collect`: rollouts of the shipped default policy on tool-reasoning (its training difficulty)
   at temperature 1, in groups per task, without training; stored in a run store.
2. `label_and_train`: degenerate variants of the real rollouts are added (`degenerate_variants`:
   the failure modes an RL policy can drift into — broken tool markup from the first turn, a real
   start that derails into broken markup, an answer guessed without tools), the grounding expert
   (forgerl.review.tool_expert) labels everything — rubric scores and A/B preferences within each
   task — and the reward model is trained on several task splits (held-out pairwise accuracy per
   split, on real-vs-real pairs and on pairs with a degenerate episode); the first split's model is
   saved.
3. `compare`: `forgerl.train.loop.train` twice per seed with the same tasks at every step — the
   verifier's reward alone, and blended with the reward model (`[reward_model]`) — and the
   preference metric (fraction of grounded rollouts) per step of each arm.

4. `transfer`: the saved reward model on the compare runs' own rollouts — later policies' work on
   tasks it never saw, labelled by the same expert in a copy of each run's store. The verifier arm
   never optimised against the model; the RM arm did, so its figure shows whether the policy found
   episodes the model ranks wrongly (reward hacking).

Both arms of a seed draw the same tasks at every step (task seeds derive from (seed, step)), so the
per-step difference is paired, not between different task mixes.
"""

from __future__ import annotations

import asyncio
import json
import random
import re
import shutil
import statistics
import time
from collections import defaultdict
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from forgerl.review.features import FINAL_TOOLS, verifier_reward
from forgerl.review.rm import (
    Evaluation,
    LabelData,
    RewardModel,
    RewardModelConfig,
    TrainResult,
    evaluate,
    held_out_task,
    load_label_data,
    result_dict,
    train_reward_model,
)
from forgerl.review.tool_expert import (
    grounded_fraction,
    label_with_tool_expert,
    labellable,
    worked_fraction,
)
from forgerl.store import TrajectoryStore
from forgerl.train.config import TrainConfig
from forgerl.train.rollouts import collect_groups
from forgerl.types import (
    Boundary,
    Failure,
    Message,
    ToolCall,
    Trajectory,
    TrajectoryStatus,
)


def collect(out_dir: str | Path, *, batches: int, groups: int = 8, group_size: int = 4, seed: int = 1,
            model: str = "default") -> list[Trajectory]:
    """`batches` × `groups` tasks × `group_size` rollouts at temperature 1 (the training sampler,
    no optimizer step), stored in `out_dir`'s store. Seed 1 by default: other tasks than a run of
    seed 0 trains on."""
    from forgerl.train.run import close_run, open_run  # heavy: torch, kept out of this module's import

    config = TrainConfig(model=model, run_dir=str(out_dir), groups_per_step=groups, group_size=group_size, seed=seed,
                         steps=1)
    run = open_run(config)
    trajectories: list[Trajectory] = []
    try:
        for batch in range(batches):
            run.step = batch  # only selects the tasks: the weights never change
            groups_ = asyncio.run(collect_groups(run))
            batch_trajs = [t for g in groups_ for t in g]
            run.store.add_trajectories(batch_trajs, run.run_id, step=batch)
            trajectories += batch_trajs
    finally:
        close_run(run)
    return trajectories


# -- degenerate episodes: negatives the reward model must see -------------------------------------

DEGENERATE_KINDS = ("collapse", "derail", "guess")
SYNTHETIC = "~"  # ids of synthesised episodes are "<source id>~<kind>"; real ids never contain it
_PROBLEMS = (
    "unclosed thinking: the completion never writes '</think>'",
    "expected '<parameter name=\"' or '</invoke>' in invoke '{name}', got '</minimax:tool_call>'",
    "unknown tool '{name}'; the available tools are: get_basket, lookup, calculator, convert, submit_answer",
    "argument '{arg}' of tool '{name}' must be number (written as JSON), got '{value}'",
)


def _as_markup(message: Message) -> str:
    """An assistant message as the M2 chat format writes it: thinking, then the tool-call block."""
    calls = "".join(f'<invoke name="{c.name}">\n'
                    + "".join(f'<parameter name="{k}">{v}</parameter>\n' for k, v in c.arguments.items())
                    + "</invoke>\n" for c in message.tool_calls)
    return f"{message.reasoning or ''}\n</think>\n\n\n<minimax:tool_call>\n{calls}</minimax:tool_call>"


def _corrupt(text: str, rng: random.Random) -> tuple[str, str]:
    """Break well-formed markup the ways the collapsed policy of issue 8's first run did: a closing
    tag mangled into an opening one, fragments of the text spliced in, a tool name cut short, the
    output cut mid-way. Returns (broken text, the parser's complaint)."""
    words = re.findall(r"\S+", text) or ["call"]
    name = rng.choice(re.findall(r'invoke name="([^"]+)"', text) or ["lookup"])
    broken = text.replace("</parameter>", '</parameter name="', rng.randint(1, 2))
    for _ in range(rng.randint(1, 4)):
        at = rng.randrange(len(broken) + 1)
        start = rng.randrange(len(words))
        broken = broken[:at] + " ".join(words[start:start + rng.randint(1, 6)]) + broken[at:]
    cut = name[: rng.randint(2, max(2, len(name) - 1))]
    broken = broken.replace(f'invoke name="{name}"', f'invoke name="{cut}"', 1)
    broken = broken[: max(20, int(len(broken) * rng.uniform(0.5, 1.0)))]
    if rng.random() < 0.3:
        return broken, (f"your last output was cut off at {rng.randint(150, 192)} tokens before it ended, so none "
                        "of its tool calls were run. Write shorter outputs.")
    problem = rng.choice(_PROBLEMS).format(name=cut, arg="value", value=" ".join(words[:4])[:40])
    return broken, f"your last output could not be parsed: {problem}"


def _broken_turns(prefix: list[Message], sources: list[Message], turns: int, first_turn: int,
                  rng: random.Random) -> tuple[list[Message], list[Failure]]:
    messages, errors = list(prefix), []
    for i in range(turns):
        text, problem = _corrupt(_as_markup(sources[i % len(sources)]), rng)
        messages += [Message(role="assistant", content=text), Message(role="tool", content=f"Error: {problem}")]
        errors.append(Failure(boundary=Boundary.PARSE, message=problem, turn=first_turn + i))
    return messages, errors


def degenerate_variants(source: Trajectory, rng: random.Random, kinds: tuple[str, ...] = DEGENERATE_KINDS,
                        max_turns: int = 8) -> list[Trajectory]:
    """Synthetic negatives from one real rollout, kept on its task (so the expert compares them
    with the real rollouts of that task) and scored 0 by construction:

    - collapse: from the first turn on, every output is the source's own turns as tool markup,
      corrupted (`_corrupt`) — no call parses, so no number is passed and none is invented: the
      episode shape the first RM run rewarded. Truncated after 3 to `max_turns` turns.
    - derail: the source's first 1..n-1 real turns (with their tool results), then corrupted
      turns up to `max_turns`. Truncated; some real, grounded calls, no answer.
    - guess: one turn that submits an answer without any tool call. Completed and well formed,
      so it passes the training gate: the reward model itself must rank it low. The guess differs
      from the source's answer, so reward 0 is right when the source passed; when the source
      failed the guess could be right by chance (p ~ 1/500 at these answer sizes) — accepted noise.
    """
    assistant_at = [i for i, m in enumerate(source.messages) if m.role == "assistant"]
    real = [source.messages[i] for i in assistant_at if source.messages[i].tool_calls] or [
        Message(role="assistant", reasoning="I look up the items.", tool_calls=[
            ToolCall(id="x", name="lookup", arguments={"table": "price", "item": "item"})])]
    head = source.messages[: assistant_at[0]] if assistant_at else list(source.messages)
    out = []
    for kind in kinds:
        status, end = TrajectoryStatus.TRUNCATED, f"max_turns={max_turns} reached"
        if kind == "collapse":
            messages, errors = _broken_turns(head, real, rng.randint(3, max_turns), 0, rng)
        elif kind == "derail":
            if len(assistant_at) < 2:
                continue
            keep = rng.randint(1, len(assistant_at) - 1)
            prefix = source.messages[: assistant_at[keep]]
            if any(c.name in FINAL_TOOLS for m in prefix for c in m.tool_calls):
                continue
            messages, errors = _broken_turns(prefix, real[keep:] or real, max_turns - keep, keep, rng)
        elif kind == "guess":
            submitted = [c.arguments.get("answer") for m in real for c in m.tool_calls if c.name in FINAL_TOOLS]
            answer = rng.randint(2, 999)
            while submitted and answer == submitted[0]:
                answer = rng.randint(2, 999)
            call = ToolCall(id="g0", name=next(iter(sorted(FINAL_TOOLS))), arguments={"answer": answer})
            messages = head + [Message(role="assistant", reasoning=f"The answer is {answer}. I submit {answer}.",
                                       tool_calls=[call]),
                               Message(role="tool", tool_call_id="g0", name=call.name,
                                       content=f"Answer {answer} submitted.")]
            errors, status, end = [], TrajectoryStatus.COMPLETED, "answer submitted"
        else:
            raise ValueError(f"unknown degenerate kind {kind!r}; choose from {DEGENERATE_KINDS}")
        out.append(source.model_copy(update={
            "id": f"{source.id}{SYNTHETIC}{kind}", "messages": messages, "calls": [], "errors": errors, "status": status,
            "reward": 0.0, "reward_breakdown": {"outcome": 0.0}, "end_reason": end,
            "metadata": {**{k: v for k, v in source.metadata.items() if k != "reward_model"},
                         "synthetic": kind, "source": source.id}}, deep=True))
    return out


def add_degenerate(store: TrajectoryStore, trajectories: list[Trajectory], *, per_task: int = 1,
                   seed: int = 0) -> list[Trajectory]:
    """`per_task` rounds of `degenerate_variants` per task, each from a randomly drawn real rollout
    of that task, stored in `store` under the run "synthetic-degenerate"."""
    rng = random.Random(seed)
    by_task: dict[str, list[Trajectory]] = defaultdict(list)
    for t in trajectories:
        if labellable(t) and SYNTHETIC not in t.id:
            by_task[t.task_id].append(t)
    made: list[Trajectory] = []
    for task in sorted(by_task):
        for _ in range(per_task):
            made += degenerate_variants(rng.choice(by_task[task]), rng)
    ids = [t.id for t in made]
    if len(set(ids)) != len(ids):  # two rounds drew the same source: keep the first of each id
        made = list({t.id: t for t in made}.values())
    store.add_run({"kind": "synthetic degenerate episodes (forgerl.experiments.reward_model.degenerate_variants)"},
                  run_id="synthetic-degenerate")
    store.add_trajectories(made, "synthetic-degenerate")
    return made


def split_evaluation(result: TrainResult, data: LabelData, config: RewardModelConfig) -> dict[str, Evaluation]:
    """The held-out evaluation of `result` on two subsets of the held-out pairs: both real
    rollouts ("real"), and one of them a synthesised degenerate episode ("degenerate")."""
    held = {t for t in data.texts if held_out_task(data.tasks[t], config.holdout, config.seed)}
    pairs = [p for p in data.preferences if p[0] in held and p[1] in held]
    rated = [t for t in data.ratings if t in held]
    return {"real": evaluate(result.scores, data, [p for p in pairs if SYNTHETIC not in p[0] + p[1]],
                             [t for t in rated if SYNTHETIC not in t]),
            "degenerate": evaluate(result.scores, data, [p for p in pairs if SYNTHETIC in p[0] + p[1]],
                                   [t for t in rated if SYNTHETIC in t])}


def label_and_train(data_dir: str | Path, rm_out: str | Path, *, seeds: tuple[int, ...] = (0, 1, 2),
                    config: RewardModelConfig | None = None, encoder: Any = None,
                    label: bool = True, degenerate_per_task: int = 1) -> list[TrainResult]:
    """Add `degenerate_per_task` rounds of synthetic degenerate episodes per task (0: none), label
    the store's trajectories with the grounding expert (both unless already labelled), train one
    reward model per split seed, save the first one to `rm_out`."""
    with TrajectoryStore(data_dir) as store:
        if label and not store.labels():
            if degenerate_per_task:
                add_degenerate(store, store.query(), per_task=degenerate_per_task)
            label_with_tool_expert(store, store.query())
        data = load_label_data(store)
    config = config or RewardModelConfig()
    results = []
    for i, seed in enumerate(seeds):
        model, result = train_reward_model(data, config.model_copy(update={"seed": seed}), encoder=encoder)
        encoder = model.encoder  # embed once: the encoder is frozen and shared
        result.held_out_by_kind = split_evaluation(result, data, model.config)
        results.append(result)
        if i == 0:
            model.save(rm_out, {**result_dict(result),
                                "held_out_by_kind": {k: asdict(v) for k, v in result.held_out_by_kind.items()}})
    return results


@dataclass
class StepRow:
    step: int
    n: int
    grounded: float
    verifier_reward: float
    rm_score: float | None
    worked: float = float("nan")  # fraction that did the task through parsed tool calls


@dataclass
class ArmResult:
    arm: str
    seed: int
    run_dir: str
    rows: list[StepRow] = field(default_factory=list)
    eval_rewards: list[tuple[int, float]] = field(default_factory=list)
    seconds: float = 0.0


def preference_by_step(run_dir: str | Path) -> list[StepRow]:
    """Per training step: rollouts, fraction grounded, mean verifier reward, mean RM score."""
    with TrajectoryStore(run_dir) as store:
        trajectories = store.query()
    by_step: dict[int, list[Trajectory]] = defaultdict(list)
    for t in trajectories:
        by_step[-1 if t.rollout_step is None else t.rollout_step].append(t)
    rows = []
    for step in sorted(by_step):
        group = by_step[step]
        rewards = [r for r in (verifier_reward(t) for t in group) if r is not None]
        rm = [t.metadata["reward_model"]["score"] for t in group if isinstance(t.metadata.get("reward_model"), dict)]
        rows.append(StepRow(step, len(group), grounded_fraction(group), statistics.fmean(rewards) if rewards else 0.0,
                            statistics.fmean(rm) if rm else None, worked_fraction(group)))
    return rows


def compare(rm_dir: str | Path, out: str | Path, *, steps: int = 10, seeds: tuple[int, ...] = (0,),
            weight: float = 1.0, overrides: dict[str, Any] | None = None,
            arms: tuple[str, ...] = ("verifier", "verifier+rm")) -> list[ArmResult]:
    """Train each seed twice — verifier only, verifier + reward model — and measure the preference."""
    from forgerl.training import run_training  # wires [reward_model] as the source's transform

    out = Path(out)
    results = []
    for seed in seeds:
        for arm in arms:
            run_dir = out / f"{arm.replace('+', '_')}_seed{seed}"
            extra = dict(overrides or {})
            settings: dict[str, Any] = {"steps": steps, "seed": seed, "run_dir": str(run_dir),
                                        "eval": {"every": steps, **extra.pop("eval", {})},
                                        "checkpoint_every": steps, **extra}
            if arm == "verifier+rm":
                settings["reward_model"] = {"path": str(rm_dir), "weight": weight}
            start = time.perf_counter()
            trained = run_training(TrainConfig.model_validate(settings))
            result = ArmResult(arm, seed, str(run_dir), preference_by_step(run_dir), trained.eval_rewards,
                               time.perf_counter() - start)
            results.append(result)
            (out / f"results_{'_'.join(a.replace('+', '_') for a in arms)}.json").write_text(json.dumps([asdict(r) for r in results], indent=2))
    return results


def table(results: list[ArmResult], window: int = 3) -> str:
    """Markdown: per step, grounded fraction (and verifier reward) of each arm; then first vs last
    `window` steps, averaged over seeds."""
    arms = sorted({r.arm for r in results}, key=["verifier", "verifier+rm"].index)
    steps = sorted({row.step for r in results for row in r.rows})
    lines = ["| step | " + " | ".join(f"{a}: grounded / worked / verifier reward" for a in arms) + " |",
             "|---" * (len(arms) + 1) + "|"]
    for step in steps:
        cells = []
        for arm in arms:
            rows = [row for r in results if r.arm == arm for row in r.rows if row.step == step]
            cells.append(f"{statistics.fmean(x.grounded for x in rows):.2f} / {statistics.fmean(x.worked for x in rows):.2f}"
                         f" / {statistics.fmean(x.verifier_reward for x in rows):.2f}" if rows else "")
        lines.append(f"| {step} | " + " | ".join(cells) + " |")
    header = (f"| arm | grounded, first {window} steps | grounded, last {window} steps | change | "
              "held-out verifier reward (start → end) |")
    lines += ["", header, "|---|---|---|---|---|"]
    for arm in arms:
        runs = [r for r in results if r.arm == arm]
        first = statistics.fmean(row.grounded for r in runs for row in r.rows[:window])
        last = statistics.fmean(row.grounded for r in runs for row in r.rows[-window:])
        evals = "; ".join(" → ".join(f"{v:.2f}" for _, v in r.eval_rewards) for r in runs)
        lines.append(f"| {arm} | {first:.3f} | {last:.3f} | {last - first:+.3f} | {evals} |")
    return "\n".join(lines)


def export_rollouts(trajectories: list[Trajectory], path: str | Path) -> Path:
    """Rollouts as gzipped JSON lines without token ids and tool schemas (what the reward model and
    the expert read): the test fixture tests/review/data/tool_reasoning_rollouts.jsonl.gz."""
    import gzip

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with gzip.open(path, "wt", encoding="utf-8") as f:
        for t in trajectories:
            f.write(t.model_dump_json(exclude={"calls", "tools"}) + "\n")
    return path


def load_rollouts(path: str | Path) -> list[Trajectory]:
    import gzip

    with gzip.open(path, "rt", encoding="utf-8") as f:
        return [Trajectory.model_validate_json(line) for line in f if line.strip()]


def transfer_evaluation(rm_dir: str | Path, run_dirs: list[Path], out: str | Path,
                        encoder: Any = None) -> dict[str, Evaluation]:
    """The reward model at `rm_dir` on each run's rollouts, labelled by the grounding expert in a copy
    of the run's store under `out` (the run itself is not touched). Returns run name -> evaluation."""

    model = RewardModel.load(rm_dir, encoder=encoder)
    results: dict[str, Evaluation] = {}
    for run in run_dirs:
        source = run / "store.sqlite"
        if not source.exists():
            raise FileNotFoundError(f"{source} does not exist: pass run directories of the compare stage")
        copy = Path(out) / "transfer" / run.name
        copy.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(source, copy / "store.sqlite")
        with TrajectoryStore(copy) as store:
            if not store.labels():
                label_with_tool_expert(store, store.query())
            data = load_label_data(store)
        ids = sorted(data.texts)
        scores = dict(zip(ids, model.raw_scores([data.texts[i] for i in ids]), strict=True))
        results[run.name] = evaluate(scores, data, data.preferences, list(data.ratings))
    return results
