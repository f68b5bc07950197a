from forgerl.train.bench import steps_to_target


def test_steps_to_target_is_the_first_evaluation_at_or_above_it():
    evals = [(2, 0.1), (4, 0.35), (6, 0.3), (8, 0.5)]
    assert steps_to_target(evals, 0.35) == 4
    assert steps_to_target(evals, 0.45) == 8
    assert steps_to_target(evals, 0.9) is None
