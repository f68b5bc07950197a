"""The doctor on a real run of the main job (`forgerl train`, 15 steps of CISPO on tool-reasoning):
its per-step metrics, exported from the run's store into data/main_job_metrics.json (the
trajectories are left out: megabytes), written back into a run directory through the store.

The README says of the main job: held-out reward rises from 0.03 to peaks of 0.72–0.81 at steps
5–10 and ends at 0.47–0.66 at step 15. The doctor must report that dip, while the training reward
keeps rising, and nothing else above information — live as well as after the run.
"""

from __future__ import annotations

import json
from pathlib import Path

from forgerl.doctor import LiveDoctor, diagnose
from forgerl.store import TrajectoryStore

DATA = Path(__file__).parent / "data" / "main_job_metrics.json"


def rebuild(tmp_path: Path) -> Path:
    data = json.loads(DATA.read_text())
    run_dir = tmp_path / "main-job"
    run_dir.mkdir()
    (run_dir / "config.toml").write_text(data["config_toml"])
    with TrajectoryStore(run_dir) as store:
        run_id = store.add_run({"source": data["source"]})
        for step, metrics in sorted(data["metrics"].items(), key=lambda kv: int(kv[0])):
            store.log_metrics(run_id, int(step), metrics)
    return run_dir


def test_the_main_jobs_held_out_dip_is_reported_and_nothing_else(tmp_path):
    run_dir = rebuild(tmp_path)
    findings = diagnose(run_dir)
    assert [(f.code, f.severity) for f in findings if f.severity != "info"] == [("heldout_falls", "warning")]
    dip = findings[0]
    evals = dip.evidence["eval/reward"]
    assert evals[0] < 0.05 and 0.715 <= dip.evidence["best"] <= 0.815 and dip.evidence["best_step"] in (5, 10)
    assert 0.465 <= dip.evidence["last"] <= 0.665 and dip.steps[-1] == 15
    assert "while the training reward rose" in dip.title
    assert dip.config_change["steps"] == dip.evidence["peak_step"] == 10  # the README: the dip comes after step 10


def test_live_the_dip_shows_once_at_the_last_evaluation(tmp_path):
    data = json.loads(DATA.read_text())
    doctor = LiveDoctor(tmp_path, {})
    doctor.load_history([(0, name, value) for name, value in data["metrics"]["0"].items()])
    fired = [(step, f.code) for step in range(1, 16) for f in doctor.observe(step, data["metrics"][str(step)])]
    assert fired == [(15, "heldout_falls")]
