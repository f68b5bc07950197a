"""How a run ends (issue 27 items 1 and 5): a final status in the store (completed / failed /
interrupted), a stop request finishes the step and checkpoints it, an abandoned step's stored
rollouts are reused by the resume, and the checkpoints load back as models."""

from __future__ import annotations

import pytest

from forgerl.store import TrajectoryStore
from forgerl.train.config import load_config
from forgerl.train.interrupt import Abandon, StopControl, TrainingInterrupted

CONFIG = dict(model="tiny-random", env="arithmetic", difficulty=[1], groups_per_step=2, group_size=2, max_turns=2,
              max_tokens=12, max_context=1024, eval={"every": 1, "tasks": 1}, checkpoint_every=10)


def _status(run_dir) -> str:
    with TrajectoryStore(run_dir) as store:
        return store.runs()[-1].status


def test_first_request_finishes_the_step_second_abandons_but_never_mid_update(capsys):
    control = StopControl(current_step=lambda: 4)
    control.request_stop()
    assert control.stop_requested and "finishing step 4" in capsys.readouterr().err
    control.begin_update()
    control.request_abandon()  # during the weight update: waits
    assert "after the weight update" in capsys.readouterr().err
    with pytest.raises(Abandon):
        control.end_update()
    with pytest.raises(Abandon):  # a trainer thread about to update after the abandon stops first
        StopControl(abandon_requested=True).begin_update()


def test_a_run_that_raises_ends_failed(tmp_path, monkeypatch):
    import forgerl.train.loop as loop
    import forgerl.training as training

    def broken(run, samples):
        raise RuntimeError("boom")

    monkeypatch.setattr(loop, "optimize", broken)
    with pytest.raises(RuntimeError, match="boom"):
        training.run_training(load_config(None, **CONFIG, steps=1, run_dir=str(tmp_path / "run")))
    assert _status(tmp_path / "run") == "failed"


@pytest.mark.security
@pytest.mark.slow  # ~40-60 s: three real steps of the tiny model with evaluations
def test_stop_then_abandon_then_resume_reuses_rollouts_and_completes(tmp_path, monkeypatch):
    import forgerl.train.loop as loop
    import forgerl.training as training
    from forgerl.eval.run import run_eval
    from forgerl.train.checkpoint import checkpoint_dir, read_best_pointer

    run_dir = tmp_path / "run"
    config = load_config(None, **CONFIG, steps=3, run_dir=str(run_dir))
    control = StopControl()
    # a stop request from a hook after step 1: the step is finished, checkpointed, status interrupted
    with pytest.raises(TrainingInterrupted) as stopped:
        training.run_training(config, on_step=lambda step, metrics: control.request_stop(), control=control)
    assert not stopped.value.abandoned and stopped.value.step == 1
    assert f"forgerl train --resume --run-dir {run_dir}" in str(stopped.value)
    assert (checkpoint_dir(run_dir, 1) / "config.json").is_file() and _status(run_dir) == "interrupted"
    assert read_best_pointer(run_dir)["step"] == 1  # the only evaluated checkpoint

    # resume; abandon step 2 in its optimizer (after its rollouts were stored): nothing trained
    real_optimize, abandon = loop.optimize, StopControl()

    def abandoned(run, samples):
        abandon.request_stop()
        abandon.request_abandon()

    monkeypatch.setattr(loop, "optimize", abandoned)
    with pytest.raises(TrainingInterrupted) as dropped:
        training.run_training(load_config(run_dir / "config.toml"), resume=True, control=abandon)
    assert dropped.value.abandoned and _status(run_dir) == "interrupted"
    with TrajectoryStore(run_dir) as store:
        pending = store.query(run_id=store.runs()[-1].id, consumed=False)
    assert len(pending) == 4  # step 2's rollouts, stored, untrained

    # resume again: step 2 reuses them (nothing collected for it), step 3 collects, status completed
    monkeypatch.setattr(loop, "optimize", real_optimize)
    import forgerl.rollout.source as source

    collected: list[int] = []
    real_group = source.rollout_group

    async def counting(run, spec, **kwargs):
        group = await real_group(run, spec, **kwargs)
        collected.append(spec["k"] // CONFIG["groups_per_step"] + 1)  # the step the group is for
        return group

    monkeypatch.setattr(source, "rollout_group", counting)
    training.run_training(load_config(run_dir / "config.toml"), resume=True)
    assert collected == [3, 3] and _status(run_dir) == "completed"  # step 2 reused, step 3 collected
    with TrajectoryStore(run_dir) as store:
        consumed_ids = {t.id for t in store.query(run_id=store.runs()[-1].id, consumed=True)}
    assert {t.id for t in pending} <= consumed_ids

    # the run's checkpoints come back out as models
    for reference in (str(run_dir), f"{run_dir}:best", f"{run_dir}:step_1"):
        report = run_eval("arithmetic", reference, 1, max_turns=1, max_tokens=8)
        assert report.overall.episodes + report.overall.failed_infra == 1
