"""Every threshold the run doctor uses, in one place, each with the reason for its value.

The values are chosen so that the shipped main job (`forgerl train`, 15 steps of CISPO on
tool-reasoning) raises no warning for what is normal there — a policy already sharpened by SFT
(token entropy ~0.05–0.08 nats), rollouts that dominate the step time on CPU, a third of the
groups without signal early on — while each crafted failure in tests/doctor/ clears them by a wide
margin. Change them with `Thresholds(...)` (`diagnose(run_dir, thresholds=...)`), not in the
detectors.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Thresholds:
    window_frac: float = 1 / 3
    """Trends compare the first and the last third of the steps seen: long enough to average out a
    single noisy batch (8 groups), short enough that a change in the second half shows."""
    min_steps: int = 5
    """Trend and level detectors need at least this many steps, and compare windows of at least 3
    steps where the run has them (doctor/series.py windows): one batch is 8 groups, too few to
    call a rate; live, this keeps the first noisy steps of a healthy run quiet."""

    entropy_ratio: float = 0.25
    """Entropy collapse: the late mean token entropy below a quarter of the early mean. The main
    job's entropy falls to 0.35–0.6 of its start over 15 steps as the policy learns (normal
    sharpening; seeds 0–2 of runs/mtp-s*); a collapse that stops exploration drops it by an order
    of magnitude."""
    entropy_info: float = 0.4
    """Below 40% of its start (but above a quarter) the fall is reported as information: worth
    watching over a longer run."""
    entropy_floor: float = 0.005
    """Critical when the late entropy is also below 0.005 nats/token: sampling is then nearly
    greedy, so groups stop differing and the gradient vanishes."""

    clip_frac: float = 0.2
    """IS clip fraction: more than 20% of trainable tokens outside the clip range on a step means
    the behaviour policy and the trainer disagree on a fifth of the batch (CISPO/DAPO defaults clip
    a few percent at most on fresh data; the main job clips 0)."""
    clip_spike: float = 5.0
    """A spike: a step's clip fraction above 5x the run's median and above `clip_frac_min_spike`."""
    clip_frac_min_spike: float = 0.05
    """Spikes below 5% of tokens are noise whatever the median (a median of 0 makes any ratio huge)."""
    is_ratio_dev: float = 0.1
    """The mean importance ratio more than 0.1 away from 1 on a step: the sampled tokens' probability
    moved by >10% between the engine and the trainer on average (on-policy it is exactly 1)."""

    mismatch_abs: float = 0.02
    """Train/inference mismatch: mean |logp_train - logp_engine| above 0.02 nats in the late
    window. M1 traced a bf16 LM head to a probability correlation of 0.987; the fp32 head gave
    0.997; the builtin engine on CPU matches exactly (0). Only on-policy steps count: on stale
    rollouts the difference is mostly the policy lag, which the IS-ratio detector covers (the
    windowed main job shows a correlation of 0.88 from lag alone)."""
    mismatch_growth: float = 2.0
    """... and at least twice its early value (rising, not a constant offset of the setup)."""
    prob_corr_min: float = 0.99
    """Or the trainer/engine probability correlation below 0.99 (between M1's 0.987 and 0.997)."""

    version_lag: int = 2
    """Stale weights: the freshest weights any rollout of a step used lag the trainer by more than
    this many versions in sync mode (which lags 0; a reused batch after a stop lags 1), by more
    than max_staleness when one is set, or (an asynchronous run without a bound) by a lag that grows
    by a version every step of the late window: the engine is not getting the new weights."""
    staleness_near: float = 0.8
    """Staleness near its bound: the step's max staleness at >= 80% of rollout.max_staleness ..."""
    staleness_steps_frac: float = 0.5
    """... on at least half of the steps, or any rollout dropped or re-queued for staleness."""
    staleness_unbounded: int = 4
    """With no bound (max_staleness unset), rollouts 4+ versions old are worth a bound: CISPO's
    importance weights grow with the lag."""

    no_signal_frac: float = 0.6
    """Groups without signal: 60% of the late window's groups all-equal in reward (all pass or all
    fail), so most rollouts give no advantage and no gradient. With 8 rollouts per group that needs
    a pass rate under ~6% (or over ~94%). The main job has up to 0.5 over two early steps and ~0.2
    late."""
    easy_hard_share: float = 0.6
    """A no-signal share made mostly (60%+) of all-pass groups says the tasks are too easy; of
    all-fail groups, too hard."""

    truncated_frac: float = 0.4
    """Truncation: 40%+ of the late window's episodes ran out of a budget (turns, tokens, context);
    the main job starts at 0.33–0.44 (learning to fit its lookups into 128-token turns is its task)
    and ends at ~0.15."""
    truncated_info: float = 0.1
    format_error_frac: float = 0.7
    """Format errors: 70% of the late window's episodes with at least one unparseable completion
    (a turn cut off at max_tokens counts: its calls cannot be parsed). The main job starts at
    0.6–0.75 and ends at ~0.2; a run whose format breaks down sits near 1."""
    improving: float = 0.75
    """A rate above its threshold that has fallen to 75% of its early value or less is improving:
    reported as information, not a warning (the policy is learning it away)."""
    format_error_info: float = 0.2
    failed_frac: float = 0.05
    """Infrastructure failures: 5%+ of episodes FAILED (kept out of the loss, so the batch shrinks)."""

    heldout_drop: float = 0.1
    """Held-out falls: the last held-out reward at least 0.1 below the run's best held-out reward ..."""
    heldout_se: float = 1.5
    """... and at least 1.5 standard errors of the difference (two binomial means over eval.tasks
    tasks; the evaluations share their tasks, so this is conservative)."""

    hacking_rise: float = 0.05
    """Reward hacking: the learned reward (rm_score) rising by 0.05+ from the early to the late window
    while the verifier's reward falls by 0.05+."""
    hacking_fall: float = 0.05

    moe_growth: float = 1.15
    """MoE imbalance: the worst layer's max/mean expert load growing by 15%+ from the early to the
    late window (routing collapsing onto fewer experts). The shipped model sits near 3 of a
    possible 4 (8 experts, top-2) and falls slowly as the selection bias corrects it: reported as
    information, not a warning."""
    moe_high: float = 2.5
    """Max/mean load of 2.5+ (stable or falling) is reported as information."""

    phase_share: float = 0.7
    """Throughput: the phase that takes 70%+ of the step time is named (information)."""
    sync_share: float = 0.25
    """Weight sync taking 25%+ of the step is a warning (it should be a small fraction)."""
    slowdown: float = 2.0
    """Steps in the late window taking twice as long as early ones (a leak, a growing context)."""


DEFAULT_THRESHOLDS = Thresholds()
