"""Exact resume (issue 26, item 8): a run directory given to `--resume` is the run that continues
(a copy resumes itself, the original stays untouched), and a crash mid-step leaves each step once
in the store's training data, its metrics, the exports, the report and TensorBoard."""

from __future__ import annotations

import collections
import hashlib
import json
import re
import shutil
from pathlib import Path

import pytest

from forgerl.store import TrajectoryStore
from forgerl.store.run_dir import export_store
from forgerl.train.config import dump_config, load_config

CONFIG = dict(model="tiny-random", env="arithmetic", difficulty=[1], groups_per_step=2, group_size=2, max_turns=2,
              max_tokens=12, max_context=1024, eval={"every": 10, "tasks": 1}, checkpoint_every=2)
BATCH = CONFIG["groups_per_step"] * CONFIG["group_size"]


class Crash(Exception):
    """Stands in for kill -9 in the middle of a step (after its rollouts were stored)."""


def tree_digest(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


def tensorboard_steps(run_dir: Path, tag: str) -> list[int]:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(run_dir / "tensorboard"), size_guidance={"scalars": 0})
    acc.Reload()
    return [e.step for e in acc.Scalars(tag)]


def crash_during_step(monkeypatch, step: int) -> None:
    """Make the optimizer step of `step` raise: rollouts stored, nothing trained or marked."""
    import forgerl.train.loop as loop

    real, calls = loop.optimize, [0]

    def optimize(run, samples):
        calls[0] += 1
        if calls[0] == step:
            raise Crash(f"killed during step {step}")
        return real(run, samples)

    monkeypatch.setattr(loop, "optimize", optimize)


@pytest.mark.security
@pytest.mark.slow  # ~60 s of CPU: 4 + 2 real steps of a tiny model
def test_a_copy_resumed_after_a_crash_mid_step_continues_itself_exactly(tmp_path, monkeypatch):
    from forgerl.cli.train import run_train
    from forgerl.training import run_training

    original = tmp_path / "run"
    config = load_config(None, **CONFIG, steps=4, run_dir=str(original))
    crash_during_step(monkeypatch, 4)  # steps 1-3 done (3 after the checkpoint at 2), step 4 half done
    with pytest.raises(Crash):
        run_training(config)
    monkeypatch.undo()
    with TrajectoryStore(original) as store:
        run_id = store.runs()[0].id
        assert store.latest_checkpoint(run_id).step == 2
        assert store.count(run_id=run_id) == 4 * BATCH  # steps 1-3 consumed, step 4's stored, untrained

    copy = tmp_path / "copy"
    shutil.copytree(original, copy)
    before = tree_digest(original)
    run_train(resume=True, run_dir=str(copy))  # the copy's config.toml still names the original

    assert tree_digest(original) == before, "resuming the copy must not touch the original"
    assert load_config(copy / "config.toml").run_dir == str(copy)
    with TrajectoryStore(copy) as store:
        assert [c.step for c in store.checkpoints(run_id)] == [2, 4]
        assert all(Path(c.path).parent.parent == copy for c in store.checkpoints(run_id) if c.step == 4)
        per_step = collections.Counter(r["step"] for r in store.query_rows(run_id=run_id))
        assert per_step == {1: BATCH, 2: BATCH, 3: BATCH, 4: BATCH}, "each step's training data once"
        for name in ("rollout/reward", "time/rollout_s"):
            assert [s for s, _, _ in store.metrics(run_id, name)] == [1, 2, 3, 4], name
        assert [s for s, _, _ in store.metrics(run_id, "eval/reward")] == [0, 4]
        assert store.count(run_id=run_id, superseded=True) == 2 * BATCH  # step 3's first try, step 4's rollouts

    target, count = export_store(copy, "jsonl")
    exported = {json.loads(line)["id"] for line in target.read_text().splitlines()}
    assert count == len(exported) == 4 * BATCH
    report_steps = re.findall(r"^\| (\d+) \|", (copy / "report.md").read_text(), flags=re.M)
    assert report_steps == ["0", "1", "2", "3", "4"]
    assert tensorboard_steps(copy, "rollout/reward") == [1, 2, 3, 4]
    assert tensorboard_steps(copy, "eval/reward") == [0, 4]


def test_resume_uses_the_run_dir_given_not_the_one_in_config_toml(tmp_path, monkeypatch):
    """The CLI helper hands the trainer the directory named on the command line (the slow test
    above runs it end to end)."""
    import forgerl.train.report as report
    import forgerl.training as rollout_train

    copy = tmp_path / "copy"
    copy.mkdir()
    (copy / "store.sqlite").touch()
    (copy / "config.toml").write_text(dump_config(load_config(None, **CONFIG, steps=2, run_dir=str(tmp_path / "orig"))))
    seen = {}

    def fake_training(config, **kwargs):
        seen["config"] = config
        from forgerl.train.loop import TrainResult

        return TrainResult(run_dir=config.run_dir)

    monkeypatch.setattr(rollout_train, "run_training", fake_training)
    monkeypatch.setattr(report, "write_report", lambda run_dir: Path(run_dir) / "report.md")
    from forgerl.cli.train import run_train

    run_train(resume=True, run_dir=str(copy), steps=3)
    assert seen["config"].run_dir == str(copy) and seen["config"].steps == 3


def test_tensorboard_shows_each_step_once_after_a_resume(tmp_path):
    pytest.importorskip("tensorboard")
    from forgerl.train.run import _TensorBoardSink

    first = _TensorBoardSink(tmp_path / "tensorboard")
    for step in (1, 2, 3, 4):
        first(step, {"rollout/reward": float(step)})
    first.close()  # ... the run died after step 4; its checkpoint is step 2's
    resumed = _TensorBoardSink(tmp_path / "tensorboard", purge_step=3)
    for step in (3, 4, 5):
        resumed(step, {"rollout/reward": 10.0 + step})
    resumed.close()
    assert tensorboard_steps(tmp_path, "rollout/reward") == [1, 2, 3, 4, 5]


def test_a_damaged_checkpoint_is_one_line_and_exit_2_from_forgerl_train(tmp_path, monkeypatch, capsys):
    import forgerl.training as rollout_train
    from forgerl.train.checkpoint import CheckpointError

    run_dir = tmp_path / "run"
    run_dir.mkdir()
    (run_dir / "config.toml").write_text(dump_config(load_config(None, **CONFIG, steps=2, run_dir=str(run_dir))))
    bad = run_dir / "checkpoints" / "step_000002" / "model.safetensors"

    def damaged(config, **kwargs):
        raise CheckpointError(f"checkpoint file {bad} is truncated: 10 bytes on disk, 20 written at save; "
                              "no earlier checkpoint of this run loads either")

    monkeypatch.setattr(rollout_train, "run_training", damaged)
    from forgerl.cli.main import run_cli

    assert run_cli(["train", "--resume", "--run-dir", str(run_dir)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: checkpoint file ") and str(bad) in err and err.count("\n") <= 2, err
    assert "Traceback" not in err
    assert run_cli(["train", "--resume", "--run-dir", str(tmp_path / "not-a-run")]) == 2
    assert "has no config.toml" in capsys.readouterr().err


@pytest.mark.security
@pytest.mark.slow  # ~30 s of CPU: the windowed loop, 3 + 2 real steps of a tiny model
def test_the_async_loop_resumed_after_a_crash_trains_each_step_once(tmp_path):
    from forgerl.rollout.scheduler import SchedulerConfig
    from forgerl.training import run_async_training

    run_dir = tmp_path / "run"
    config = load_config(None, **CONFIG, steps=4, run_dir=str(run_dir))
    scheduler = SchedulerConfig(batch_size=2, capacity=4, max_staleness=2)

    def die_after_step_3(step, metrics):
        if step == 3:  # logged and acknowledged, not checkpointed (the checkpoint is step 2's)
            raise Crash("killed after step 3")

    with pytest.raises(Crash):
        run_async_training(config, scheduler, on_step=die_after_step_3)
    run_async_training(config, scheduler, resume=True)
    with TrajectoryStore(run_dir) as store:
        run_id = store.runs()[0].id
        per_step = collections.Counter(r["step"] for r in store.query_rows(run_id=run_id, consumed=True))
        assert per_step == {1: BATCH, 2: BATCH, 3: BATCH, 4: BATCH}
        assert [s for s, _, _ in store.metrics(run_id, "rollout/reward")] == [1, 2, 3, 4]
        assert store.count(run_id=run_id, superseded=True) >= BATCH  # step 3's first try
        tasks = collections.Counter(t.group_id for t in store.query(run_id=run_id, consumed=True))
        assert set(tasks.values()) == {CONFIG["group_size"]}, "each task's group trained on once"
    assert tensorboard_steps(run_dir, "rollout/reward") == [1, 2, 3, 4]
