"""`forgerl doctor RUN_DIR [--json]`: exit 0 for a healthy run, 1 when a warning or worse is found,
2 (the CLI's user error) when the directory is not a run; the JSON is the findings' fields."""

from __future__ import annotations

import json

from forgerl.cli.main import run_cli
from forgerl.doctor import Finding


def test_a_healthy_run_exits_0(crafted, capsys):
    run = crafted()
    assert run_cli(["doctor", str(run.run_dir)]) == 0
    out = capsys.readouterr().out
    assert "no findings" in out or "info" in out
    assert "warning" not in out.lower()


def test_a_sick_run_exits_1_with_the_evidence(crafted, capsys):
    def collapse(step, m):
        m["train/entropy"] = 0.08 if step <= 3 else 0.005

    run = crafted(metrics=collapse)
    assert run_cli(["doctor", str(run.run_dir)]) == 1
    out = capsys.readouterr().out
    assert "entropy_collapse" in out and "--set optim.lr=5e-05" in out and "train/entropy" in out


def test_json_lists_every_finding(crafted, capsys):
    evals = {0: 0.03, 4: 0.72, 8: 0.75, 12: 0.47}
    run = crafted(evals=lambda step: evals.get(step, 0.0))
    assert run_cli(["doctor", str(run.run_dir), "--json"]) == 1
    findings = [Finding.model_validate(item) for item in json.loads(capsys.readouterr().out)]
    assert [f.code for f in findings if f.severity != "info"] == ["heldout_falls"]
    assert findings[0].evidence["best_step"] == 8


def test_not_a_run_exits_2_and_says_what_to_give(tmp_path, capsys):
    assert run_cli(["doctor", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "error:" in err and "not a run directory (no store.sqlite)" in err and "--run-dir" in err
    assert run_cli(["doctor", str(tmp_path / "nowhere"), "--json"]) == 2
    assert "is not a directory" in capsys.readouterr().err


def test_the_live_warnings_a_run_recorded_are_listed(crafted, capsys):
    from forgerl.doctor import LiveDoctor

    run = crafted()
    LiveDoctor(run.run_dir, {})._record(7, [Finding(code="entropy_collapse", severity="warning", title="fell")])
    assert run_cli(["doctor", str(run.run_dir)]) == 0  # the diagnosis of the whole run decides the status
    out = capsys.readouterr().out
    assert "live warnings recorded during the run (1" in out and "step 7: [WARNING] entropy_collapse: fell" in out
