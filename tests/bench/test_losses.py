from forgerl.bench.losses import steps_to_target


def test_steps_to_target_is_the_first_evaluation_at_or_above_it():
    evals = [(2, 0.1), (4, 0.35), (6, 0.3), (8, 0.5)]
    assert steps_to_target(evals, 0.35) == 4
    assert steps_to_target(evals, 0.45) == 8
    assert steps_to_target(evals, 0.9) is None


def test_loss_bench_runs_every_loss_from_the_same_start_and_prints_the_curves(capsys, monkeypatch):
    monkeypatch.setenv("COLUMNS", "250")  # one table row per line
    from forgerl.bench.losses import run_loss_bench
    from forgerl.train.config import TrainConfig

    base = TrainConfig(model="tiny-random", groups_per_step=1, group_size=2, max_turns=1, max_tokens=8, eval={"tasks": 2},
                       difficulty=[1])
    results = run_loss_bench(("cispo", "grpo"), (0,), steps=2, target_gain=0.5, eval_every=1, base=base)
    out = capsys.readouterr().out
    assert set(results) == {"cispo", "grpo"} and all(len(v) == 1 for v in results.values())
    assert "held-out every 1 steps" in out
    assert out.count("0.00 0.00 0.00") == 2  # a random policy scores 0 at steps 0, 1 and 2, for both losses
