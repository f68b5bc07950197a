"""The run doctor's detectors: each reads a `RunSeries` and returns the findings it sees, with the
evidence (steps, values, example trajectories) and a suggested change.

A detector only reads what the loop logs (train/loop.py, train/step.py, rollout/source.py,
review/train_hook.py, model/moe.py) and the per-step trajectory statistics of doctor/series.py; a
metric the run did not log (no reward model, a dense model) means the detector has nothing to say.
Thresholds live in doctor/thresholds.py. Suggested config changes use TrainConfig's dotted keys
(train/config.py), so the experiment agent can apply them with `--set`.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Callable

from forgerl.doctor.findings import Finding, Severity
from forgerl.doctor.series import ALL_FAIL, ALL_PASS, FORMAT_ERRORS, NO_SIGNAL, VERSION_LAG, RunSeries, mean, windows
from forgerl.doctor.thresholds import Thresholds

Detector = Callable[[RunSeries, Thresholds], list[Finding]]

LOSS_EPS_HIGH: dict[str, float] = {"cispo": 0.28, "dapo": 0.28, "ppo": 0.2, "gspo": 4e-4}
"""Each loss's default upper clip when the config leaves `loss.eps_high` unset (forgerl/rl/*.py;
copied here so the doctor does not import torch; tests/doctor checks they agree)."""


def _r(x: float) -> float:
    return round(x, 4)


def _steps(points: list[tuple[int, float]]) -> list[int]:
    return [s for s, _ in points]


EVIDENCE_POINTS = 64
"""A series in a finding's evidence keeps its first point and its latest ones, at most this many:
a long run's findings (and doctor.jsonl lines) stay small."""


def _series(points: list[tuple[int, float]]) -> dict[int, float]:
    kept = points if len(points) <= EVIDENCE_POINTS else [points[0], *points[-(EVIDENCE_POINTS - 1):]]
    return {s: _r(v) for s, v in kept}


def _trend(s: RunSeries, name: str, th: Thresholds, skip: set[int] | None = None
           ) -> tuple[list[tuple[int, float]], float, float] | None:
    """(points, early mean, late mean) of a metric with enough steps for a trend (leaving out the
    steps in `skip`); else None."""
    points = [(st, v) for st, v in s.values(name) if not skip or st not in skip]
    if len(points) < th.min_steps:
        return None
    early, late = windows(points, th.window_frac)
    return points, mean(early), mean(late)


def entropy_collapse(s: RunSeries, th: Thresholds) -> list[Finding]:
    trend = _trend(s, "train/entropy", th)
    if trend is None:
        return []
    points, early, late = trend
    if not (early > 0 and late < th.entropy_info * early):
        return []
    severity = ("critical" if late < th.entropy_floor else "warning") if late < th.entropy_ratio * early else "info"
    temperature = float(s.setting("temperature", 1.0))
    lr = float(s.setting("optim.lr", 1e-4))
    eps_high = s.setting("loss.eps_high") or LOSS_EPS_HIGH.get(str(s.setting("loss.name", "cispo")), 0.28)
    return [Finding(
        code="entropy_collapse", severity=severity,
        title=f"token entropy {'fell' if severity == 'info' else 'collapsed'} from {early:.3g} to {late:.3g} nats ({late / early:.0%} of its start)",
        evidence={"train/entropy": _series(points), "early_mean": _r(early), "late_mean": _r(late)},
        steps=_steps(windows(points, th.window_frac)[1]),
        suggestion="exploration is dying: groups will stop differing and the gradient with them. Lower the "
                   "learning rate, sample hotter, and let rarely-sampled tokens keep their gradient (a higher "
                   "upper clip of the importance weight).",
        config_change={"optim.lr": lr / 2, "temperature": round(min(1.5, temperature * 1.2), 3),
                       "loss.eps_high": float(f"{float(eps_high) * 1.5:.3g}")})]


def is_ratio_spikes(s: RunSeries, th: Thresholds) -> list[Finding]:
    high, low, ratio = s.values("loss/clip_frac_high"), s.values("loss/clip_frac_low"), s.values("loss/is_ratio_mean")
    clip = {st: v for st, v in high}
    for st, v in low:
        clip[st] = clip.get(st, 0.0) + v
    points = sorted(clip.items())
    flagged: dict[int, str] = {}
    if points:
        median = statistics.median(v for _, v in points)
        for st, v in points:
            if v > th.clip_frac:
                flagged[st] = f"clip fraction {v:.3g} > {th.clip_frac}"
            elif v > th.clip_frac_min_spike and v > th.clip_spike * median:
                flagged[st] = f"clip fraction {v:.3g} spikes above {th.clip_spike:g}x the median {median:.3g}"
    for st, v in ratio:
        if abs(v - 1.0) > th.is_ratio_dev:
            flagged.setdefault(st, f"mean IS ratio {v:.3g}")
    if not flagged:
        return []
    steps = sorted(flagged)
    return [Finding(
        code="is_ratio_spikes", severity="warning",
        title=f"importance-ratio / clip-fraction spikes at {len(steps)} step(s): {flagged[steps[0]]} at step {steps[0]}",
        evidence={"clip_frac": _series(points), "loss/is_ratio_mean": _series(ratio),
                  "why": {st: flagged[st] for st in steps}},
        steps=steps, trajectory_ids=s.example_ids("stale", steps),
        suggestion="the trainer's policy and the one that sampled disagree on many tokens: take smaller steps, keep "
                   "rollouts fresher, and mask tokens outside the trust region.",
        config_change={"optim.lr": float(s.setting("optim.lr", 1e-4)) / 2, "loss.trust_region_mask": True})]


def mismatch_rising(s: RunSeries, th: Thresholds) -> list[Finding]:
    out: list[Finding] = []
    change: dict[str, object] = {"fp32_lm_head": True}
    if str(s.setting("dtype", "auto")) not in ("float32", "fp32"):
        change["dtype"] = "float32"
    # on stale rollouts the engine's log-probs are an older policy's: the difference is the policy
    # lag (the IS ratio's business), not numerics, so only on-policy steps count here
    stale = {st for st, v in (s.values("scheduler/staleness_max") or s.values("rollout/staleness_max")) if v > 0}
    trend = _trend(s, "mismatch/mean_abs_logprob", th, skip=stale)
    corr = [(st, v) for st, v in s.values("mismatch/prob_corr") if st not in stale]
    low_corr = [(st, v) for st, v in corr if v < th.prob_corr_min]
    if trend is not None:
        points, early, late = trend
        if late > th.mismatch_abs and late >= th.mismatch_growth * max(early, 1e-9):
            out.append(Finding(
                code="mismatch_rising", severity="warning",
                title=f"train/inference log-prob mismatch rose from {early:.3g} to {late:.3g} nats per token",
                evidence={"mismatch/mean_abs_logprob": _series(points), "mismatch/prob_corr": _series(corr),
                          "early_mean": _r(early), "late_mean": _r(late)},
                steps=_steps(windows(points, th.window_frac)[1]),
                suggestion="the engine and the trainer compute different probabilities for the same tokens, so the "
                           "importance weights are wrong: run the LM head in FP32 and the engine in the trainer's "
                           "precision, and check the engine gets every weight update.",
                config_change=change))
    if low_corr and not out:
        out.append(Finding(
            code="mismatch_rising", severity="warning",
            title=f"trainer/engine token-probability correlation {min(v for _, v in low_corr):.4g} < {th.prob_corr_min}",
            evidence={"mismatch/prob_corr": _series(corr)}, steps=_steps(low_corr),
            suggestion="the engine's probabilities drift from the trainer's (M1: a bf16 LM head gave 0.987, FP32 0.997).",
            config_change=change))
    return out


def stale_weights(s: RunSeries, th: Thresholds) -> list[Finding]:
    points = s.values(VERSION_LAG)
    bound = s.setting("rollout.max_staleness")
    mode = s.setting("rollout.mode", "sync")
    allowed = int(bound) if bound is not None else th.version_lag
    late = [(st, v) for st, v in points if v > allowed]
    tail = windows(points, th.window_frac)[1] if len(points) >= th.min_steps else []
    # a weight push that stopped working: the lag grows by one version every step
    growing = len(tail) >= 3 and all(b[1] > a[1] for a, b in zip(tail, tail[1:]))
    # an asynchronous run without a bound lags by design (staleness_near_bound covers how far)
    if not late or (mode != "sync" and bound is None and not growing):
        return []
    # sync mode has no staleness knob (max_staleness is for the asynchronous modes): the push is the fix
    change: dict[str, object] = {} if mode == "sync" else {"rollout.max_staleness": max(1, th.version_lag),
                                                            "rollout.on_stale": "requeue"}
    return [Finding(
        code="stale_weights", severity="critical" if growing else "warning",
        title=f"rollouts ran on weights {int(max(v for _, v in late))} versions behind the trainer "
              f"(allowed {allowed}){'; the lag keeps growing' if growing else ''}",
        evidence={VERSION_LAG: _series(points), "allowed": allowed}, steps=_steps(late),
        trajectory_ids=s.example_ids("stale", _steps(late)),
        suggestion="the engine is not serving the trainer's latest weights: check the weight push (engine logs, "
                   "the transport) — every step trains on data from an old policy"
                   + (". " if mode == "sync" else "; bound the lag so stale rollouts are generated again."),
        config_change=change)]


def staleness_near_bound(s: RunSeries, th: Thresholds) -> list[Finding]:
    points = s.values("scheduler/staleness_max") or s.values("rollout/staleness_max")
    bound = s.setting("rollout.max_staleness")
    dropped = sum(v for _, v in s.values("scheduler/stale_dropped"))
    requeued = sum(v for _, v in s.values("scheduler/stale_requeued"))
    mode = s.setting("rollout.mode", "sync")
    if not points:
        return []
    if bound is None:
        high = [(st, v) for st, v in points if v >= th.staleness_unbounded]
        if not high:
            return []
        return [Finding(
            code="staleness_near_bound", severity="warning",
            title=f"rollouts up to {int(max(v for _, v in high))} versions stale with no bound set (mode {mode})",
            evidence={"staleness_max": _series(points)}, steps=_steps(high),
            trajectory_ids=s.example_ids("stale", _steps(high)),
            suggestion="bound the staleness so CISPO's importance weights stay near 1 (M2's windowed FIFO keeps it small).",
            config_change={"rollout.max_staleness": th.staleness_unbounded})]
    bound = int(bound)
    near = [(st, v) for st, v in points if bound > 0 and v >= th.staleness_near * bound]
    if len(near) < th.staleness_steps_frac * len(points) and not (dropped or requeued):
        return []
    capacity = s.setting("rollout.capacity")
    change: dict[str, object] = {"rollout.max_staleness": bound + max(1, bound // 2)}
    if capacity is not None and int(capacity) > 1:
        change["rollout.capacity"] = max(1, int(capacity) // 2)
    return [Finding(
        code="staleness_near_bound", severity="warning",
        title=f"staleness at >= {th.staleness_near:.0%} of its bound {bound} on {len(near)}/{len(points)} steps; "
              f"{dropped:.0f} rollouts dropped, {requeued:.0f} re-queued for staleness",
        evidence={"staleness_max": _series(points), "max_staleness": bound, "stale_dropped": dropped,
                  "stale_requeued": requeued},
        steps=_steps(near), trajectory_ids=s.example_ids("stale", _steps(near)),
        suggestion="rollouts keep arriving at the limit of their allowed lag, so generation work is thrown away or "
                   "redone: allow a little more lag, or keep fewer tickets open so they finish sooner.",
        config_change=change)]


def _level(late: float, early: float, threshold: float, th: Thresholds) -> Severity:
    """A rate's severity: a warning at or above its threshold unless it is clearly improving."""
    return "warning" if late >= threshold and late > th.improving * early else "info"


def groups_without_signal(s: RunSeries, th: Thresholds) -> list[Finding]:
    trend = _trend(s, NO_SIGNAL, th)
    if trend is None:
        return []
    points, _, late = trend
    late_steps = _steps(windows(points, th.window_frac)[1])
    if late < th.no_signal_frac:
        return []
    early = mean(windows(points, th.window_frac)[0])
    improving = len(points) > 1 and late <= th.improving * early
    share_pass = mean([(st, s.table[st].get(ALL_PASS, 0.0)) for st in late_steps])
    share_fail = mean([(st, s.table[st].get(ALL_FAIL, 0.0)) for st in late_steps])
    difficulty = [int(d) for d in s.setting("difficulty", [1])] or [1]
    change: dict[str, object]
    if share_pass >= th.easy_hard_share * late:
        kind, verdict = "all_pass", "the tasks are too easy for the policy now: raise the difficulty"
        change = {"difficulty": [d + 1 for d in difficulty]}
    elif share_fail >= th.easy_hard_share * late:
        kind, verdict = "all_fail", "the tasks are too hard for the policy: lower the difficulty (or warm it up with SFT)"
        change = {"difficulty": [max(1, d - 1) for d in difficulty]}
    else:
        kind, verdict = "no_signal", "mixed: widen the difficulty range and sample more per task"
        change = {"group_size": int(s.setting("group_size", 8)) * 2}
    return [Finding(
        code="groups_without_signal", severity="info" if improving else "warning",
        title=f"{late:.0%} of the late steps' groups carry no signal (all-pass {share_pass:.0%}, all-fail {share_fail:.0%})",
        evidence={NO_SIGNAL: _series(points), "late_all_pass": _r(share_pass), "late_all_fail": _r(share_fail)},
        steps=late_steps, trajectory_ids=s.example_ids(kind, late_steps),
        suggestion=f"a group whose rollouts all score the same has zero advantage and trains nothing; {verdict}.",
        config_change=change)]


def truncation_and_format(s: RunSeries, th: Thresholds) -> list[Finding]:
    out: list[Finding] = []
    trunc = _trend(s, "rollout/truncated_frac", th)
    if trunc is not None and trunc[2] >= th.truncated_info:
        points, early, late = trunc
        steps = _steps(windows(points, th.window_frac)[1])
        max_tokens, max_turns = int(s.setting("max_tokens", 128)), int(s.setting("max_turns", 8))
        out.append(Finding(
            code="truncation", severity=_level(late, early, th.truncated_frac, th),
            title=f"{late:.0%} of the late steps' episodes were truncated (early {early:.0%})",
            evidence={"rollout/truncated_frac": _series(points)}, steps=steps,
            trajectory_ids=s.example_ids("truncated", steps),
            suggestion="episodes run out of a budget (tokens per turn, turns or context) before they finish; give them "
                       "more room, or reward finishing within it.",
            config_change={"max_tokens": max_tokens * 2, "max_turns": max_turns + max(2, max_turns // 2)}))
    fmt = _trend(s, FORMAT_ERRORS, th)
    if fmt is not None and fmt[2] >= th.format_error_info:
        points, early, late = fmt
        steps = _steps(windows(points, th.window_frac)[1])
        out.append(Finding(
            code="format_errors", severity=_level(late, early, th.format_error_frac, th),
            title=f"{late:.0%} of the late steps' episodes had an unparseable completion (early {early:.0%})",
            evidence={FORMAT_ERRORS: _series(points), "rollout/errors_per_episode": _series(s.values("rollout/errors_per_episode"))},
            steps=steps, trajectory_ids=s.example_ids("format_error", steps),
            suggestion="the policy often writes output the chat format cannot parse (or is cut off mid-call): check the "
                       "chat format matches the model's training, SFT on well-formed calls, or penalise format errors.",
            config_change={"max_tokens": int(s.setting("max_tokens", 128)) * 2}))
    failed = s.values("rollout/failed_frac")
    bad = [(st, v) for st, v in failed if v >= th.failed_frac]
    if bad:
        out.append(Finding(
            code="infrastructure_failures", severity="warning",
            title=f"{max(v for _, v in bad):.0%} of a step's episodes failed (infrastructure) at {len(bad)} step(s)",
            evidence={"rollout/failed_frac": _series(failed)}, steps=_steps(bad),
            suggestion="failed episodes are kept out of the loss (the batch shrinks): look at the episodes' errors "
                       "(engine, sandbox, verifier) in the store."))
    return out


def heldout_falls(s: RunSeries, th: Thresholds) -> list[Finding]:
    evals = s.values("eval/reward")
    if len(evals) < 3:
        return []
    best = max(v for _, v in evals)
    peaks = [st for st, v in evals if v == best]
    best_step, peak_step = peaks[0], peaks[-1]  # RUN:best's step (ties: the earlier) / where the fall starts
    last_step, last = evals[-1]
    n = max(1, int(s.setting("eval.tasks", 32)))
    se = math.sqrt(max(best * (1 - best), 0.0) / n + max(last * (1 - last), 0.0) / n) if 0 <= last <= 1 and 0 <= best <= 1 else 0.0
    drop = best - last
    if last_step <= peak_step or drop < th.heldout_drop or drop < th.heldout_se * se:
        return []
    train = s.values("rollout/reward")
    before = [(st, v) for st, v in train if st <= peak_step]
    after = [(st, v) for st, v in train if st > peak_step]
    rising = bool(before and after) and mean(after) >= mean(before)
    title = (f"held-out reward fell from {best:.3f} (step {peak_step}) to {last:.3f} (step {last_step})"
             + (f" while the training reward rose ({mean(before):.3f} -> {mean(after):.3f} mean)" if rising else ""))
    return [Finding(
        code="heldout_falls", severity="warning", title=title,
        evidence={"eval/reward": _series(evals), "best": _r(best), "best_step": best_step, "peak_step": peak_step,
                  "last": _r(last), "drop": _r(drop), "drop_in_se": _r(drop / se) if se > 0 else None, "eval_tasks": n,
                  "rollout/reward": _series(train),
                  "train_reward_before": _r(mean(before)) if before else None,
                  "train_reward_after": _r(mean(after)) if after else None},
        steps=[st for st, _ in evals if st >= peak_step],
        suggestion=f"the policy got worse on held-out tasks after step {peak_step}"
                   + (" while it kept improving on its training tasks: it is over-fitting them. " if rising else ". ")
                   + f"Use the best checkpoint (RUN:best, step {best_step}), train fewer steps or with a smaller "
                     "learning rate, and evaluate more often to catch the peak.",
        config_change={"steps": peak_step, "optim.lr": float(s.setting("optim.lr", 1e-4)) / 2,
                       "eval.every": max(1, min(int(s.setting("eval.every", 5)), max(1, best_step // 2)))})]


def reward_hacking(s: RunSeries, th: Thresholds) -> list[Finding]:
    rm, verifier = _trend(s, "rollout/rm_score", th), _trend(s, "rollout/verifier_reward", th)
    if rm is None or verifier is None:
        return []
    rm_points, rm_early, rm_late = rm
    v_points, v_early, v_late = verifier
    if not (rm_late - rm_early >= th.hacking_rise and v_early - v_late >= th.hacking_fall):
        return []
    weight = float(s.setting("reward_model.weight", 0.5))
    steps = _steps(windows(v_points, th.window_frac)[1])
    return [Finding(
        code="reward_hacking", severity="critical",
        title=f"the learned reward rose ({rm_early:.3f} -> {rm_late:.3f}) while the verifier's fell "
              f"({v_early:.3f} -> {v_late:.3f})",
        evidence={"rollout/rm_score": _series(rm_points), "rollout/verifier_reward": _series(v_points)},
        steps=steps, trajectory_ids=s.example_ids("rm_over_verifier", steps),
        suggestion="the policy is learning what the reward model likes rather than what the verifier checks: lower "
                   "the reward model's weight (or drop it), label some of these rollouts and retrain it.",
        config_change={"reward_model.weight": round(weight / 2, 4)})]


def moe_imbalance(s: RunSeries, th: Thresholds) -> list[Finding]:
    trend = _trend(s, "moe/max_over_mean_load", th)
    if trend is None:
        return []
    points, early, late = trend
    step_size = float(s.setting("moe_bias_step", 1e-3))
    growing = late >= th.moe_growth * early
    if not growing and late < th.moe_high:
        return []
    return [Finding(
        code="moe_imbalance", severity="warning" if growing else "info",
        title=(f"MoE load imbalance growing: the busiest expert's load rose from {early:.2f}x to {late:.2f}x the mean"
               if growing else f"MoE load stays imbalanced: the busiest expert gets {late:.2f}x the mean load (early {early:.2f}x)"),
        evidence={"moe/max_over_mean_load": _series(points),
                  "moe/mean_max_over_mean_load": _series(s.values("moe/mean_max_over_mean_load"))},
        steps=_steps(windows(points, th.window_frac)[1]),
        suggestion="routing concentrates on few experts (capacity wasted, those experts over-trained): let the "
                   "aux-loss-free selection bias correct faster.",
        config_change={"moe_bias_step": step_size * 2})]


def throughput(s: RunSeries, th: Thresholds) -> list[Finding]:
    phases = ("time/rollout_s", "time/train_s", "time/sync_s", "time/wait_s")
    rows = [(st, {p: row[p] for p in phases if p in row and math.isfinite(row[p])}) for st, row in sorted(s.table.items())]
    rows = [(st, r) for st, r in rows if r]
    if len(rows) < th.min_steps:
        return []
    totals = {p: sum(r.get(p, 0.0) for _, r in rows) for p in phases}
    whole = sum(totals.values())
    if whole <= 0:
        return []
    shares = {p: totals[p] / whole for p in phases if totals[p] > 0}
    out: list[Finding] = []
    evidence = {"share": {p: _r(v) for p, v in shares.items()}, "seconds": {p: _r(v) for p, v in totals.items() if v}}
    if shares.get("time/sync_s", 0.0) >= th.sync_share:
        out.append(Finding(
            code="throughput_sync", severity="warning",
            title=f"weight sync takes {shares['time/sync_s']:.0%} of the step time",
            evidence=evidence, steps=[st for st, _ in rows],
            suggestion="pushing weights to the engine dominates: use a faster transport (shared memory), LoRA "
                       "(smaller updates), or fewer, larger steps.",
            config_change={"groups_per_step": int(s.setting("groups_per_step", 8)) * 2}))
    per_step = [(st, sum(r.values())) for st, r in rows]
    early, late = windows(per_step, th.window_frac)
    if mean(late) >= th.slowdown * mean(early):
        out.append(Finding(
            code="throughput_slowdown", severity="warning",
            title=f"steps slowed down from {mean(early):.1f} s to {mean(late):.1f} s",
            evidence={"step_seconds": _series(per_step)}, steps=_steps(late),
            suggestion="each step takes longer as the run goes on: look for growing episodes (tokens, turns), a "
                       "growing queue, or a leak."))
    top, share = max(shares.items(), key=lambda kv: kv[1])
    if share >= th.phase_share:
        remedy = {"time/rollout_s": ("rollouts dominate: collect them while training (windowed FIFO) or add engine "
                                     "replicas", {"rollout.mode": "windowed"} if s.setting("rollout.mode", "sync") == "sync" else {}),
                  "time/train_s": ("the optimizer step dominates: larger micro-batches (fewer passes) or LoRA",
                                   {"optim.micro_batch_tokens": int(s.setting("optim.micro_batch_tokens", 8192)) * 2}),
                  "time/wait_s": ("the trainer waits for rollouts: open more tickets or add engine replicas", {}),
                  "time/sync_s": ("weight sync dominates (see above)", {})}[top]
        out.append(Finding(
            code="throughput_bottleneck", severity="info",
            title=f"{top.removeprefix('time/').removesuffix('_s')} takes {share:.0%} of the step time",
            evidence=evidence, steps=[], suggestion=remedy[0], config_change=remedy[1]))
    return out


DETECTORS: tuple[Detector, ...] = (entropy_collapse, is_ratio_spikes, mismatch_rising, stale_weights,
                                   staleness_near_bound, groups_without_signal, truncation_and_format, heldout_falls,
                                   reward_hacking, moe_imbalance, throughput)
"""Every detector, in the order findings are reported (then sorted by severity)."""

SEVERITY_ORDER = {"critical": 0, "warning": 1, "info": 2}


def run_detectors(s: RunSeries, th: Thresholds, detectors: tuple[Detector, ...] = DETECTORS) -> list[Finding]:
    """Every detector's findings, most severe first (stable within a severity)."""
    found = [f for detect in detectors for f in detect(s, th)]
    return sorted(found, key=lambda f: SEVERITY_ORDER[f.severity])
