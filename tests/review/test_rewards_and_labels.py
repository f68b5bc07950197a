"""Combined rewards, rubric config, label helpers, agreement and queue (no HTTP)."""

from __future__ import annotations

import math

import pytest

from forgerl.review.labels import agreement, label_queue, record_comment, record_preference, record_rubric
from forgerl.review.rewards import ExpertRewardConfig, combined_reward, combined_rewards, expert_scores
from forgerl.review.rubric import DEFAULT_RUBRIC, load_rubric
from forgerl.store import TrajectoryStore


def test_combined_reward_formula():
    cfg = ExpertRewardConfig(w_verifier=1.0, w_expert=3.0, w_rm=1.0)
    assert combined_reward(1.0, 0.0, 0.9, cfg) == pytest.approx(0.25)  # labelled: expert wins over RM
    assert combined_reward(1.0, None, 0.5, cfg) == pytest.approx(0.75)  # unlabelled: verifier + RM
    assert combined_reward(0.2, None, None, cfg) == 0.2
    assert combined_reward(None, 0.8, None, cfg) == 0.8
    assert combined_reward(None, None, None, cfg) is None
    assert combined_reward(1.0, 0.0, None, ExpertRewardConfig(w_expert=0.0)) == 1.0
    with pytest.raises(ValueError, match="all reward weights are zero"):
        ExpertRewardConfig(w_verifier=0, w_expert=0, w_rm=0)


@pytest.fixture()
def store(tmp_path):
    from forgerl.review.demo import make_demo_run

    with TrajectoryStore(tmp_path / "run") as s:
        make_demo_run(s, n_tasks=2, rollouts=3)
        yield s


def test_expert_scores_and_combined_rewards(store):
    scores = {"correctness": 5, "process": 1, "communication": 3}  # normalised 1, 0, .5 -> .5
    record_rubric(store, "ops_000_0", "alice", DEFAULT_RUBRIC, scores)
    record_rubric(store, "ops_000_0", "bob", DEFAULT_RUBRIC, {"correctness": 5, "process": 5, "communication": 5})
    expert = expert_scores(store)
    assert expert == {"ops_000_0": pytest.approx(0.75)}
    trajs = [store.get_trajectory("ops_000_0"), store.get_trajectory("ops_000_1")]
    rewards = combined_rewards(trajs, expert, {"ops_000_1": 0.4}, ExpertRewardConfig(w_verifier=1, w_expert=1, w_rm=1))
    assert rewards == [pytest.approx((trajs[0].reward + 0.75) / 2), pytest.approx((trajs[1].reward + 0.4) / 2)]


def test_label_helpers_validate(store):
    with pytest.raises(ValueError, match="missing scores"):
        record_rubric(store, "ops_000_0", "alice", DEFAULT_RUBRIC, {"correctness": 5})
    with pytest.raises(ValueError, match="integer from 1 to 5"):
        record_rubric(store, "ops_000_0", "alice", DEFAULT_RUBRIC, {"correctness": 0, "process": 1, "communication": 1})
    with pytest.raises(ValueError, match="must be one of the pair"):
        record_preference(store, "ops_000_0", "ops_000_1", "alice", "ops_001_0", "x", "v1")
    with pytest.raises(ValueError, match="message_index"):
        record_comment(store, "ops_000_0", "alice", 99, "x", "v1")


def test_preference_relabel_supersedes_own_pair_in_either_order(store):
    record_preference(store, "ops_000_0", "ops_000_1", "alice", "ops_000_0", "first", "v1")
    record_preference(store, "ops_000_1", "ops_000_0", "alice", "ops_000_1", "changed my mind", "v1")
    current = store.labels(kind="preference", current_only=True)
    assert [(lab.expert, lab.payload["reason"]) for lab in current] == [("alice", "changed my mind")]


def test_agreement_per_item_and_pair(store):
    r = DEFAULT_RUBRIC
    record_rubric(store, "ops_000_0", "alice", r, {"correctness": 5, "process": 3, "communication": 2})
    record_rubric(store, "ops_000_0", "bob", r, {"correctness": 5, "process": 4, "communication": 5})
    record_rubric(store, "ops_000_1", "alice", r, {"correctness": 1, "process": 3, "communication": 2})
    record_rubric(store, "ops_000_1", "bob", r, {"correctness": 2, "process": 3, "communication": 2})
    record_rubric(store, "ops_000_2", "carol", r, {"correctness": 1, "process": 1, "communication": 1})
    ag = agreement(store, r)
    items = {i.item: i for i in ag.items}
    assert items["correctness"].n_pairs == 2 and items["correctness"].exact == 0.5
    assert items["process"].within_one == 1.0 and items["process"].mean_abs_diff == 0.5
    assert items["communication"].mean_abs_diff == 1.5
    (pair,) = ag.pairs
    assert pair.experts == ("alice", "bob") and pair.n_scores == 6 and pair.score_exact == pytest.approx(3 / 6)
    assert math.isnan(pair.preference_agree)


def test_queue_prefers_disagreement_and_skips_own_labels(store):
    r = DEFAULT_RUBRIC
    record_rubric(store, "ops_000_0", "alice", r, {"correctness": 5, "process": 5, "communication": 5})
    record_rubric(store, "ops_000_0", "bob", r, {"correctness": 1, "process": 1, "communication": 1})
    rows = {row["id"]: row["reward"] for row in store.query_rows()}
    far = next(t for t in rows if t != "ops_000_0")
    queue = label_queue(store, r, expert="carol", rm_scores={far: 1.0 - rows[far]})
    top = {e.trajectory_id for e in queue[:2]}
    assert {"ops_000_0", far} == top
    assert all(e.trajectory_id != "ops_000_0" for e in label_queue(store, r, expert="alice"))


def test_rubric_toml(tmp_path):
    path = tmp_path / "r.toml"
    path.write_text('version = "t1"\nscale_min = 0\nscale_max = 2\n[[items]]\nname = "safety"\nguidance = "g"\n')
    rubric = load_rubric(path)
    assert rubric.version == "t1" and list(rubric.scale) == [0, 1, 2] and rubric.normalise(1) == 0.5
    path.write_text('version = "t1"\nscale_min = 3\nscale_max = 2\n[[items]]\nname = "safety"\n')
    with pytest.raises(ValueError, match="scale_max"):
        load_rubric(path)
    with pytest.raises(ValueError, match="no rubric file"):
        load_rubric(tmp_path / "missing.toml")
