"""The reward model as a reward component of training: the blend, what the store keeps, the
config's checks and the clear errors for a bad reward-model directory."""

from __future__ import annotations

import pytest

from forgerl.errors import ConfigError
from forgerl.review.train_hook import (
    apply_reward_model,
    load_training_reward_model,
    verifier_reward,
)
from forgerl.train.config import RewardModelSpec, dump_config, load_config
from forgerl.types import Boundary, Failure, Message, Trajectory, TrajectoryStatus


class FakeRewardModel:
    """Scores by trajectory id; records every batch it is asked to score."""

    def __init__(self, scores: dict[str, float]) -> None:
        self.scores, self.batches = scores, []

    def score(self, trajectories):
        self.batches.append([t.id for t in trajectories])
        return [self.scores[t.id] for t in trajectories]


def traj(tid: str, reward: float | None, status: TrajectoryStatus = TrajectoryStatus.COMPLETED) -> Trajectory:
    return Trajectory(id=tid, task_id="t", reward=reward, status=status, reward_breakdown={"outcome": reward or 0.0},
                      messages=[Message(role="user", content="q")])


def spec(weight: float) -> RewardModelSpec:
    return RewardModelSpec.model_construct(path="rm-dir", weight=weight)  # no directory check: a fake model


def test_no_reward_model_is_a_no_op():
    groups = [[traj("a", 1.0), traj("b", 0.0)]]
    assert apply_reward_model(groups, None, RewardModelSpec()) == {}
    assert [t.reward for t in groups[0]] == [1.0, 0.0] and "reward_model" not in groups[0][0].metadata


def test_blend_records_all_three_numbers_and_scores_in_one_batch():
    groups = [[traj("a", 1.0), traj("b", 0.0)], [traj("c", 0.0), traj("f", None, TrajectoryStatus.FAILED)]]
    rm = FakeRewardModel({"a": 0.2, "b": 0.9, "c": 0.5})
    metrics = apply_reward_model(groups, rm, spec(0.5))
    assert rm.batches == [["a", "b", "c"]]  # one batch; the failed rollout is not scored
    a, b, c, f = groups[0] + groups[1]
    # reward = (verifier + w * rm) / (1 + w), w = 0.5
    assert a.reward == pytest.approx((1.0 + 0.5 * 0.2) / 1.5)
    assert b.reward == pytest.approx((0.0 + 0.5 * 0.9) / 1.5)
    assert c.reward == pytest.approx(0.25 / 1.5)
    assert f.reward is None and "reward_model" not in f.metadata
    assert a.reward_breakdown == {"outcome": 1.0, "verifier": 1.0, "reward_model": 0.2}
    assert a.metadata["reward_model"] == {"verifier_reward": 1.0, "score": 0.2, "weight": 0.5, "gated": False,
                                          "combined": a.reward, "path": "rm-dir"}
    assert [verifier_reward(t) for t in (a, b, c)] == [1.0, 0.0, 0.0]
    assert metrics["rollout/verifier_reward"] == pytest.approx(1 / 3)
    assert metrics["rollout/verifier_pass_rate"] == pytest.approx(1 / 3)
    assert metrics["rollout/rm_score"] == pytest.approx((0.2 + 0.9 + 0.5) / 3)
    # the RM can reverse the verifier's order inside a group when it weighs enough
    assert b.reward < a.reward
    groups2 = [[traj("a", 1.0), traj("b", 0.0)]]
    apply_reward_model(groups2, FakeRewardModel({"a": 0.0, "b": 1.0}), spec(2.0))
    assert groups2[0][1].reward > groups2[0][0].reward


def test_the_reward_model_only_counts_for_well_formed_episodes():
    """Issue 8: the policy learnt unparsable tool markup the RM scored ~0.9. Gated, a malformed
    episode keeps only its verifier reward, so it can never beat one that did the task."""
    broken = traj("broken", 0.0, TrajectoryStatus.TRUNCATED)
    unparsed = traj("unparsed", 0.0)
    unparsed.errors.append(Failure(boundary=Boundary.PARSE, message="unclosed <invoke>"))
    tool_error = traj("tool_error", 0.0)  # a tool refusing is not a format problem
    tool_error.errors.append(Failure(boundary=Boundary.TOOL, message="unknown item"))
    honest = traj("honest", 0.0)
    groups = [[broken, unparsed, tool_error, honest]]
    rm = FakeRewardModel({"broken": 0.95, "unparsed": 0.9, "tool_error": 0.3, "honest": 0.2})
    metrics = apply_reward_model(groups, rm, spec(0.5))
    assert broken.reward == 0.0 and unparsed.reward == 0.0  # (0 + 0.5 * 0) / 1.5
    assert tool_error.reward == pytest.approx(0.5 * 0.3 / 1.5) and honest.reward == pytest.approx(0.5 * 0.2 / 1.5)
    assert min(tool_error.reward, honest.reward) > max(broken.reward, unparsed.reward)
    assert broken.metadata["reward_model"]["gated"] and broken.metadata["reward_model"]["score"] == 0.95
    assert broken.reward_breakdown["reward_model"] == 0.0 and not honest.metadata["reward_model"]["gated"]
    assert metrics["rollout/rm_gated_fraction"] == 0.5
    assert metrics["rollout/rm_score"] == pytest.approx((0.95 + 0.9 + 0.3 + 0.2) / 4)  # raw scores
    # a malformed episode that passed keeps its verifier reward: the gate never takes a pass away
    lucky = traj("lucky", 1.0, TrajectoryStatus.TRUNCATED)
    apply_reward_model([[lucky]], FakeRewardModel({"lucky": 0.9}), spec(0.5))
    assert lucky.reward == pytest.approx(1 / 1.5)


def test_with_a_weight_below_one_a_pass_outranks_any_failure():
    passed, failed = traj("p", 1.0), traj("f", 0.0)
    apply_reward_model([[passed, failed]], FakeRewardModel({"p": 0.0, "f": 1.0}), spec(0.99))
    assert passed.reward > failed.reward


def test_applying_twice_does_not_blend_twice():
    groups = [[traj("a", 1.0)]]
    rm = FakeRewardModel({"a": 0.0})
    apply_reward_model(groups, rm, spec(1.0))
    assert apply_reward_model(groups, rm, spec(1.0)) == {}
    assert groups[0][0].reward == pytest.approx(0.5) and len(rm.batches) == 1


def test_config_is_off_by_default_and_checks_the_directory(tmp_path):
    cfg = load_config()
    assert cfg.reward_model.path is None
    with pytest.raises(ConfigError, match="is not a directory.*forgerl rm train"):
        load_config(reward_model={"path": str(tmp_path / "missing")})
    with pytest.raises(ConfigError, match="not a reward model directory"):
        load_config(reward_model={"path": str(tmp_path)})
    (tmp_path / "reward_model.json").write_text("{}")
    (tmp_path / "head.safetensors").write_bytes(b"")
    with pytest.raises(ConfigError, match="weight is 0"):
        load_config(reward_model={"path": str(tmp_path), "weight": 0.0})
    with pytest.raises(ConfigError, match="weight"):
        load_config(reward_model={"weight": -1.0})
    with pytest.raises(ConfigError, match="reward_model"):
        load_config(reward_model={"path": str(tmp_path), "bogus": 1})
    cfg = load_config(reward_model={"path": str(tmp_path), "weight": 2.0})
    toml = tmp_path / "config.toml"
    toml.write_text(dump_config(cfg))
    assert load_config(toml).reward_model == cfg.reward_model  # the run's config.toml reloads


def test_loading_a_broken_reward_model_is_a_config_error(tmp_path):
    assert load_training_reward_model(RewardModelSpec()) is None
    (tmp_path / "reward_model.json").write_text('{"config": {"encoder": "/nowhere"}}')
    with pytest.raises(ConfigError, match="cannot load the reward model"):
        load_training_reward_model(RewardModelSpec.model_construct(path=str(tmp_path), weight=1.0))
