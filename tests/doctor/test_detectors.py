"""Each condition the doctor knows, crafted into a run directory, gives the right finding with its
evidence (steps, values, example trajectories of the run) and a config change that is a real
TrainConfig key; the healthy crafted run gives no warning."""

from __future__ import annotations

import json

import pytest

from forgerl.doctor import Finding, diagnose, format_findings
from forgerl.errors import ConfigError
from forgerl.store import TrajectoryStore
from forgerl.train.config import load_config
from forgerl.types import TrajectoryStatus

from .conftest import Episode, healthy_episode


def only(findings: list[Finding], code: str) -> Finding:
    found = [f for f in findings if f.code == code]
    assert len(found) == 1, f"expected one {code!r} among {[(f.code, f.severity) for f in findings]}"
    return found[0]


def warnings(findings: list[Finding]) -> list[tuple[str, str]]:
    return [(f.code, f.severity) for f in findings if f.severity != "info"]


def assert_applicable(run, finding: Finding) -> None:
    """The suggested change applies to the run's config: every key is a TrainConfig key, of the
    right type, and the result is a valid config (as `forgerl train CONFIG --set ...` loads it)."""
    assert finding.suggestion
    items = [f"{key}={json.dumps(value)}" for key, value in finding.config_change.items()]
    config = load_config(run.run_dir / "config.toml", set_values=items)
    for key, value in finding.config_change.items():
        node = config
        for part in key.split("."):
            node = getattr(node, part)
        assert node == (tuple(value) if isinstance(node, tuple) else value), key


def assert_examples_are(run, finding: Finding, predicate) -> None:
    """The finding names example trajectories, all from this run's store, all showing the condition."""
    assert finding.trajectory_ids
    with TrajectoryStore(run.run_dir) as store:
        for tid in finding.trajectory_ids:
            assert predicate(store.get_trajectory(tid)), tid


def test_a_healthy_run_raises_no_warning(crafted):
    run = crafted()
    findings = diagnose(run.run_dir)
    assert warnings(findings) == []
    assert "critical" not in format_findings(findings).lower()


def test_entropy_collapse_warning_then_critical(crafted):
    def collapse(step, m):
        m["train/entropy"] = 0.08 * (0.6 ** step)  # 0.048 at step 1 ... 0.00017 at step 12

    run = crafted(metrics=collapse)
    finding = only(diagnose(run.run_dir), "entropy_collapse")
    assert finding.severity == "critical"
    assert finding.steps == [9, 10, 11, 12]
    assert finding.evidence["late_mean"] < 0.005 < finding.evidence["early_mean"]
    assert finding.config_change == {"optim.lr": pytest.approx(5e-5), "temperature": 1.2, "loss.eps_high": 0.42}
    assert_applicable(run, finding)

    def fall(step, m):
        m["train/entropy"] = 0.08 if step <= 4 else 0.012

    assert only(diagnose(crafted(name="milder", metrics=fall).run_dir), "entropy_collapse").severity == "warning"


def test_a_clip_fraction_spike_names_its_step(crafted):
    def spike(step, m):
        if step == 7:
            m["loss/clip_frac_high"] = 0.35

    run = crafted(metrics=spike)
    finding = only(diagnose(run.run_dir), "is_ratio_spikes")
    assert finding.severity == "warning" and finding.steps == [7]
    assert finding.evidence["clip_frac"][7] == pytest.approx(0.35)
    assert finding.config_change["loss.trust_region_mask"] is True
    assert_applicable(run, finding)


def test_an_is_ratio_drift_is_a_spike_too(crafted):
    def drift(step, m):
        if step >= 10:
            m["loss/is_ratio_mean"] = 1.25

    assert only(diagnose(crafted(metrics=drift).run_dir), "is_ratio_spikes").steps == [10, 11, 12]


def test_train_inference_mismatch_rising(crafted):
    def rising(step, m):
        m["mismatch/mean_abs_logprob"] = 0.001 * 1.6 ** step  # 0.0016 -> 0.28

    run = crafted(metrics=rising, config={"dtype": "bfloat16"})
    finding = only(diagnose(run.run_dir), "mismatch_rising")
    assert finding.evidence["late_mean"] > 0.02 and finding.evidence["late_mean"] > 2 * finding.evidence["early_mean"]
    assert finding.config_change == {"fp32_lm_head": True, "dtype": "float32"}
    assert_applicable(run, finding)


def test_stale_weights_when_the_engine_keeps_serving_version_0(crafted):
    def stuck(step, group, index):
        return Episode(passed=healthy_episode(step, group, index).passed, policy_version=0)

    run = crafted(episode=stuck)
    finding = only(diagnose(run.run_dir), "stale_weights")
    assert finding.severity == "critical"  # the lag keeps growing
    assert finding.steps == list(range(4, 13))  # lag 3+ > the allowed 2
    assert finding.evidence["doctor/version_lag"][12] == 11
    assert_examples_are(run, finding, lambda t: t.calls[0].policy_version == 0)
    assert_applicable(run, finding)


def test_staleness_at_its_bound(crafted):
    def at_bound(step, m):
        m.update({"scheduler/staleness_max": 2.0, "scheduler/staleness_mean": 1.5, "scheduler/stale_requeued": 3.0,
                  "scheduler/stale_dropped": 0.0})

    run = crafted(metrics=at_bound, config={"rollout": {"mode": "windowed", "max_staleness": 2, "capacity": 32}})
    finding = only(diagnose(run.run_dir), "staleness_near_bound")
    assert finding.evidence["stale_requeued"] == 36 and finding.evidence["max_staleness"] == 2
    assert len(finding.steps) == 12
    assert finding.config_change == {"rollout.max_staleness": 3, "rollout.capacity": 16}
    assert_applicable(run, finding)


def test_unbounded_staleness(crafted):
    def old(step, m):
        m["scheduler/staleness_max"] = 6.0 if step > 6 else 1.0

    finding = only(diagnose(crafted(metrics=old, config={"rollout": {"mode": "greedy"}}).run_dir), "staleness_near_bound")
    assert finding.steps == [7, 8, 9, 10, 11, 12] and finding.config_change == {"rollout.max_staleness": 4}


@pytest.mark.parametrize(("passed", "kind", "difficulty"), [(False, "all_fail", [2]), (True, "all_pass", [4])])
def test_groups_without_signal_say_which_way_the_difficulty_is_off(crafted, passed, kind, difficulty):
    def uniform(step, group, index):
        return healthy_episode(step, group, index) if step <= 4 else Episode(passed=passed)

    run = crafted(episode=uniform, config={"difficulty": [3]})
    finding = only(diagnose(run.run_dir), "groups_without_signal")
    assert finding.severity == "warning"
    assert finding.evidence[f"late_{kind}"] == 1.0
    assert finding.config_change == {"difficulty": difficulty}
    assert ("too hard" if not passed else "too easy") in finding.suggestion
    assert_examples_are(run, finding, lambda t: t.reward == (1.0 if passed else 0.0) and int(t.group_id[4:].split("-")[0]) > 4)
    assert_applicable(run, finding)


def test_truncation_and_format_errors(crafted):
    def broken(step, group, index):
        bad = index < 3 and step > 3  # 3 of 4 episodes from step 4 on
        return Episode(passed=index == 3, status=TrajectoryStatus.TRUNCATED if bad else TrajectoryStatus.COMPLETED,
                       parse_error=bad)

    run = crafted(episode=broken)
    findings = diagnose(run.run_dir)
    trunc, fmt = only(findings, "truncation"), only(findings, "format_errors")
    assert trunc.severity == fmt.severity == "warning"
    assert trunc.evidence["rollout/truncated_frac"][12] == 0.75
    assert fmt.evidence["doctor/format_error_frac"][12] == 0.75
    assert trunc.config_change == {"max_tokens": 256, "max_turns": 12}
    assert_examples_are(run, trunc, lambda t: t.status == TrajectoryStatus.TRUNCATED)
    assert_examples_are(run, fmt, lambda t: any(e.boundary == "parse" for e in t.errors))
    assert_applicable(run, trunc)
    assert_applicable(run, fmt)


def test_truncation_that_is_being_learned_away_is_information(crafted):
    def fading(step, group, index):
        truncated = index < (3 if step <= 4 else 2 if step <= 8 else 1) and group % 2 == 0
        return Episode(passed=index == 3, status=TrajectoryStatus.TRUNCATED if truncated else TrajectoryStatus.COMPLETED)

    assert only(diagnose(crafted(episode=fading).run_dir), "truncation").severity == "info"


def test_infrastructure_failures(crafted):
    def failing(step, group, index):
        return Episode(passed=False, status=TrajectoryStatus.FAILED) if group == 0 and step == 6 else healthy_episode(step, group, index)

    finding = only(diagnose(crafted(episode=failing).run_dir), "infrastructure_failures")
    assert finding.steps == [6] and finding.evidence["rollout/failed_frac"][6] == 0.125


def test_held_out_falls_while_the_training_reward_rises(crafted):
    evals = {0: 0.03, 4: 0.72, 8: 0.75, 12: 0.47}

    run = crafted(evals=lambda step: evals.get(step, 0.0))
    finding = only(diagnose(run.run_dir), "heldout_falls")
    assert finding.severity == "warning"
    assert finding.evidence["best_step"] == finding.evidence["peak_step"] == 8
    assert finding.evidence["drop"] == pytest.approx(0.28)
    assert finding.steps == [8, 12]
    assert "training reward rose" in finding.title
    assert finding.evidence["train_reward_after"] > finding.evidence["train_reward_before"]
    assert finding.config_change["steps"] == 8
    assert_applicable(run, finding)


def test_a_tied_peak_falls_from_its_last_step_and_points_to_the_first_checkpoint(crafted):
    evals = {0: 0.03, 4: 0.72, 8: 0.72, 12: 0.47}
    finding = only(diagnose(crafted(evals=lambda s: evals.get(s, 0.0)).run_dir), "heldout_falls")
    assert (finding.evidence["best_step"], finding.evidence["peak_step"]) == (4, 8)
    assert "(step 8)" in finding.title and "RUN:best, step 4" in finding.suggestion and finding.steps == [8, 12]


def test_a_held_out_wobble_within_the_noise_is_not_a_fall(crafted):
    evals = {0: 0.03, 4: 0.72, 8: 0.75, 12: 0.69}
    assert "heldout_falls" not in [f.code for f in diagnose(crafted(evals=lambda s: evals.get(s, 0.0)).run_dir)]


def test_reward_hacking_learned_reward_up_verifier_down(crafted):
    def hacked(step, group, index):
        # the verifier passes fewer (3 of 4 -> 1 of 4) while the reward model scores higher (0.4 -> 0.84)
        return Episode(passed=index < (3 if step <= 4 else 2 if step <= 8 else 1), rm_score=0.4 + 0.04 * (step - 1))

    run = crafted(episode=hacked)
    finding = only(diagnose(run.run_dir), "reward_hacking")
    assert finding.severity == "critical"
    assert finding.evidence["rollout/rm_score"][12] == pytest.approx(0.84)
    assert finding.evidence["rollout/verifier_reward"][12] == 0.25
    assert finding.config_change == {"reward_model.weight": 0.25}
    assert_examples_are(run, finding, lambda t: t.metadata["reward_model"]["verifier_reward"] < 1.0
                        and t.metadata["reward_model"]["score"] > 0.7)
    assert_applicable(run, finding)


def test_moe_imbalance_growing(crafted):
    def growing(step, m):
        m["moe/max_over_mean_load"] = 1.5 + 0.12 * step

    run = crafted(metrics=growing)
    finding = only(diagnose(run.run_dir), "moe_imbalance")
    assert finding.severity == "warning" and finding.config_change == {"moe_bias_step": 0.002}
    assert_applicable(run, finding)


def test_weight_sync_taking_a_quarter_of_the_step(crafted):
    def slow_sync(step, m):
        m["time/sync_s"] = 5.0

    run = crafted(metrics=slow_sync)
    finding = only(diagnose(run.run_dir), "throughput_sync")
    assert finding.severity == "warning" and finding.evidence["share"]["time/sync_s"] > 0.25
    assert_applicable(run, finding)


def test_steps_slowing_down(crafted):
    def slower(step, m):
        m["time/rollout_s"] = 5.0 * (1 + step)

    finding = only(diagnose(crafted(metrics=slower).run_dir), "throughput_slowdown")
    assert finding.steps == [9, 10, 11, 12] and finding.evidence["step_seconds"][12] == pytest.approx(69.1)


def test_a_bottleneck_is_named_as_information(crafted):
    def rollout_bound(step, m):
        m["time/rollout_s"] = 40.0

    run = crafted(metrics=rollout_bound)
    finding = only(diagnose(run.run_dir), "throughput_bottleneck")
    assert finding.severity == "info" and finding.config_change == {"rollout.mode": "windowed"}
    assert_applicable(run, finding)


def test_not_a_run_directory(tmp_path):
    with pytest.raises(ConfigError, match="not a directory"):
        diagnose(tmp_path / "missing")
    with pytest.raises(ConfigError, match="no store.sqlite"):
        diagnose(tmp_path)
    (tmp_path / "store.sqlite").write_text("this is not sqlite")
    with pytest.raises(ConfigError, match="not a readable forgerl store"):
        diagnose(tmp_path)


def test_a_bad_config_toml_is_named(crafted):
    run = crafted()
    (run.run_dir / "config.toml").write_text("steps = [")
    with pytest.raises(ConfigError, match="config.toml is not valid TOML"):
        diagnose(run.run_dir)


def test_the_default_clip_bounds_the_doctor_knows_are_the_losses_own():
    from forgerl.doctor.detectors import LOSS_EPS_HIGH
    from forgerl.rl.cispo import CISPO_EPS_HIGH
    from forgerl.rl.dapo import DAPO_EPS_HIGH
    from forgerl.rl.gspo import GSPO_EPS_HIGH
    from forgerl.rl.ppo import PPO_EPS

    assert LOSS_EPS_HIGH == {"cispo": CISPO_EPS_HIGH, "dapo": DAPO_EPS_HIGH, "ppo": PPO_EPS, "gspo": GSPO_EPS_HIGH}


def test_a_gspo_run_is_told_a_gspo_sized_clip(crafted):
    def collapse(step, m):
        m["train/entropy"] = 0.08 if step <= 3 else 0.005

    run = crafted(metrics=collapse, config={"loss": {"name": "gspo"}})
    assert only(diagnose(run.run_dir), "entropy_collapse").config_change["loss.eps_high"] == 6e-4
