"""The doctor in the training loop: each condition is reported once when it first shows (again only
if it gets worse), recorded in doctor.jsonl, shown under the live table and listed in the report;
a healthy run says nothing; a failing doctor never stops training."""

from __future__ import annotations

import json
import logging
from types import SimpleNamespace

import pytest

from forgerl.doctor import DOCTOR_LOG, DoctorLogTail, LiveDoctor, Thresholds, read_doctor_log
from forgerl.store import TrajectoryStore
from forgerl.train import loop
from forgerl.train.config import load_config, public_config
from forgerl.train.report import write_report

from .conftest import Episode, healthy_episode


def replay(run, doctor: LiveDoctor, *, with_trajectories: bool = True) -> dict[int, list]:
    """Feed a crafted run to a live doctor step by step, as the loop does; step -> new findings."""
    with TrajectoryStore(run.run_dir) as store:
        table: dict[int, dict[str, float]] = {}
        for step, name, value in store.metrics(run.run_id):
            table.setdefault(step, {})[name] = value
    doctor.load_history([(0, name, value) for name, value in table.pop(0, {}).items()])
    return {step: doctor.observe(step, metrics, [run.trajectories[i] for i in run.ids[step]] if with_trajectories else None)
            for step, metrics in sorted(table.items())}


def fired(new: dict[int, list]) -> list[tuple[int, str, str]]:
    return [(step, f.code, f.severity) for step, found in new.items() for f in found]


def config_of(run) -> dict:
    return public_config(load_config(run.run_dir / "config.toml"))


def test_a_healthy_run_is_quiet_live(crafted, tmp_path):
    run = crafted()
    doctor = LiveDoctor(tmp_path / "live", config_of(run))
    (tmp_path / "live").mkdir()
    assert fired(replay(run, doctor)) == []
    assert not (tmp_path / "live" / DOCTOR_LOG).exists()


def test_a_condition_fires_once_then_once_more_when_it_turns_critical(crafted):
    def collapse(step, m):
        m["train/entropy"] = 0.08 if step <= 3 else 0.012 if step <= 8 else 0.0005

    run = crafted(metrics=collapse)
    doctor = LiveDoctor(run.run_dir, config_of(run))
    events = [e for e in fired(replay(run, doctor)) if e[1] == "entropy_collapse"]
    assert [(code, severity) for _, code, severity in events] == [("entropy_collapse", "warning"),
                                                                  ("entropy_collapse", "critical")]
    first, second = events[0][0], events[1][0]
    assert 5 <= first < second <= 12
    logged = read_doctor_log(run.run_dir)
    assert [(step, f.code, f.severity) for step, f in logged if f.code == "entropy_collapse"] == events
    assert all(f.evidence and f.suggestion for _, f in logged)


def test_a_resumed_run_does_not_repeat_what_it_reported(crafted):
    def collapse(step, m):
        m["train/entropy"] = 0.08 if step <= 3 else 0.005

    run = crafted(metrics=collapse)
    replay(run, LiveDoctor(run.run_dir, config_of(run)))
    before = len(read_doctor_log(run.run_dir))
    assert before >= 1
    assert fired(replay(run, LiveDoctor(run.run_dir, config_of(run)))) == []  # the resumed process
    assert len(read_doctor_log(run.run_dir)) == before


def test_groups_without_signal_fire_live_from_the_batch(crafted):
    def all_fail(step, group, index):
        return healthy_episode(step, group, index) if step <= 2 else Episode(passed=False)

    run = crafted(episode=all_fail)
    new = replay(run, LiveDoctor(run.run_dir, config_of(run)))
    groups = [(step, f) for step, found in new.items() for f in found if f.code == "groups_without_signal"]
    assert len(groups) == 1
    step, finding = groups[0]
    assert step == 5  # the first step with enough steps to call a rate (Thresholds.min_steps)
    assert set(finding.trajectory_ids) <= {tid for s in (3, 4, 5) for tid in run.ids[s]}
    assert finding.config_change == {"difficulty": [2]}  # tool-reasoning starts at its frontier, [3]
    # without the batch the metrics alone cannot tell a group's spread
    quiet = replay(run, LiveDoctor(None, config_of(run)), with_trajectories=False)
    assert "groups_without_signal" not in {code for _, code, _ in fired(quiet)}


def test_information_is_left_to_the_report(crafted):
    def bottleneck(step, m):
        m["time/rollout_s"] = 60.0

    run = crafted(metrics=bottleneck)
    assert fired(replay(run, LiveDoctor(None, config_of(run)))) == []
    asked = fired(replay(run, LiveDoctor(None, config_of(run), min_severity="info")))
    assert [(code, severity) for _, code, severity in asked] == [("throughput_bottleneck", "info")]


def test_the_table_tail_reads_each_new_line_once(tmp_path):
    doctor = LiveDoctor(tmp_path, {}, thresholds=Thresholds(min_steps=1, sync_share=0.0))
    tail = DoctorLogTail(tmp_path)
    assert tail.new() == []
    doctor.observe(1, {"time/rollout_s": 1.0, "time/sync_s": 1.0})
    first = tail.new()
    assert [f.code for _, f in first] == ["throughput_sync"] and first[0][0] == 1
    assert tail.new() == []
    with (tmp_path / DOCTOR_LOG).open("a") as f:
        f.write('{"step": 2, "finding": {"code": "x", "sev')  # a line being written
    assert tail.new() == []
    with (tmp_path / DOCTOR_LOG).open("a") as f:
        f.write('erity": "warning", "title": "t"}}\n')
    assert [(s, f.code) for s, f in tail.new()] == [(2, "x")]
    assert DoctorLogTail(tmp_path).new() == []  # a resumed table starts after what is there


def test_the_report_lists_the_live_warnings(crafted):
    def collapse(step, m):
        m["train/entropy"] = 0.08 if step <= 3 else 0.005

    run = crafted(metrics=collapse)
    replay(run, LiveDoctor(run.run_dir, config_of(run)))
    text = write_report(run.run_dir).read_text()
    assert "## Run doctor" in text
    assert "[WARNING] entropy_collapse" in text or "[CRITICAL] entropy_collapse" in text


def test_the_loop_hook_starts_with_the_runs_history_and_never_stops_training(crafted, caplog):
    run = crafted()
    config = load_config(run.run_dir / "config.toml")
    with TrajectoryStore(run.run_dir) as store:
        fake = SimpleNamespace(run_dir=run.run_dir, config=config, store=store, run_id=run.run_id)
        doctor = loop.open_doctor(fake)
    assert doctor is not None and doctor.series.values("eval/reward")[0] == (0, 0.2)
    assert len(doctor.series.table) == 13  # steps 0..12 of the run so far (a resume)

    def boom(*args, **kwargs):
        raise RuntimeError("detector bug")

    doctor.observe = boom  # type: ignore[method-assign]
    with caplog.at_level(logging.WARNING):
        loop.observe(doctor, 13, {"train/entropy": 0.1}, [])
        loop.observe(doctor, 14, {"train/entropy": 0.1}, [])
    assert doctor.failed
    assert [r.getMessage() for r in caplog.records].count(
        "the run doctor failed at step 13 (RuntimeError: detector bug); it is off for the rest of this run") == 1
    assert len(caplog.records) == 1
    assert loop.open_doctor(SimpleNamespace(run_dir=run.run_dir, config=None, store=None, run_id="x")) is None


@pytest.mark.slow
def test_the_real_loop_records_and_shows_a_live_warning(tmp_path, monkeypatch, capsys):
    """A real (tiny) training run through `forgerl train`: the loop's doctor writes doctor.jsonl,
    the table prints the warning under its row once, and the report lists it. Thresholds are set
    so that weight sync (any share) is a warning, from the first step."""
    from forgerl.cli.main import run_cli

    monkeypatch.setattr(loop, "LiveDoctor", lambda run_dir, config: LiveDoctor(
        run_dir, config, thresholds=Thresholds(min_steps=1, sync_share=0.0)))
    run_dir = tmp_path / "run"
    status = run_cli(["train", "--model", "tiny-random", "--env", "arithmetic", "--steps", "2", "--run-dir", str(run_dir),
                      "--set", "groups_per_step=2", "--set", "group_size=2", "--set", "max_turns=2",
                      "--set", "max_tokens=12", "--set", "eval.every=1", "--set", "eval.tasks=1"])
    assert status == 0
    out = capsys.readouterr().out
    logged = read_doctor_log(run_dir)  # a tiny random model trips other detectors at these thresholds too
    assert (1, "throughput_sync") in [(s, f.code) for s, f in logged]
    assert len({f.code for _, f in logged}) == len(logged)  # each condition once
    report = (run_dir / "report.md").read_text()
    for _, finding in logged:  # each shown once under the table, and listed in the report
        assert out.count(f"doctor: [{finding.severity.upper()}] {finding.code}:") == 1
        assert f"{finding.code}: {finding.title}" in report
    json.dumps([f.model_dump(mode="json") for _, f in logged])
