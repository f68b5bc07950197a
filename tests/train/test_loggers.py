"""W&B (offline) and MLflow (local file store) metric sinks: per-step metrics, the config as
parameters, the final held-out reward and the report as artifacts, one tracker run continued on
resume with no step sent twice, trackers that are not installed refused at load time, and a tracker
outage that does not stop training."""

from __future__ import annotations

import json
import struct
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest

from forgerl.errors import ConfigError
from forgerl.store import TrajectoryStore
from forgerl.train.config import load_config
from forgerl.train.loggers import STATE_FILE, MlflowLogger, WandbLogger, mlflow_name

TINY = dict(model="tiny-random", env="arithmetic", difficulty=[1], groups_per_step=1, group_size=2, max_turns=1,
            max_tokens=8, max_context=512, eval={"every": 1, "tasks": 1}, device="cpu")


@pytest.fixture
def offline_trackers(tmp_path, monkeypatch):
    """W&B offline and quiet; MLflow's file store allowed (MLflow 3 wants an opt-in for it)."""
    pytest.importorskip("wandb")
    pytest.importorskip("mlflow")
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    monkeypatch.delenv("WANDB_DIR", raising=False)
    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    return (tmp_path / "mlruns").as_uri()


def wandb_records(path: Path) -> list:
    """The records of an offline `.wandb` file (a LevelDB-style log of protobuf Records after a
    7-byte header), read with W&B's own protobuf schema."""
    from wandb.proto import wandb_internal_pb2 as pb

    block, data = 32768, path.read_bytes()
    assert data[:4] == b":W&B"
    pos, pending, out = 7, b"", []
    while pos + 7 <= len(data):
        left = block - pos % block
        if left < 7:
            pos += left
            continue
        _crc, length, kind = struct.unpack("<IHB", data[pos:pos + 7])
        if length == 0 and kind == 0:
            pos += left
            continue
        pending += data[pos + 7:pos + 7 + length]
        pos += 7 + length
        if kind in (1, 4):  # FULL or LAST
            record = pb.Record()
            record.ParseFromString(pending)
            out.append(record)
            pending = b""
    return out


def wandb_history(run_dir: Path) -> list[tuple[str, dict[int, dict[str, float]], list, dict]]:
    """Per offline W&B run file (oldest first): its run id, step -> metrics, artifacts, summary."""
    out = []
    for path in sorted(run_dir.glob("wandb/offline-run-*/run-*.wandb")):
        history, artifacts, summary, wandb_id, config, started = {}, [], {}, "", {}, 0.0
        for rec in wandb_records(path):
            kind = rec.WhichOneof("record_type")
            if kind == "run":
                wandb_id, started = rec.run.run_id, rec.run.start_time.ToNanoseconds()
                config.update({i.key: json.loads(i.value_json) for i in rec.run.config.update})
                config["_tags"] = list(rec.run.tags)
            elif kind == "config":
                config.update({i.key: json.loads(i.value_json) for i in rec.config.update})
            elif kind == "history":
                items = {(i.key or "/".join(i.nested_key)): json.loads(i.value_json) for i in rec.history.item}
                history[rec.history.step.num] = {k: v for k, v in items.items() if not k.startswith("_")}
            elif kind == "artifact":
                artifacts.append((rec.artifact.type, sorted(c.path for c in rec.artifact.manifest.contents)))
            elif kind == "summary":
                summary.update({i.key: json.loads(i.value_json) for i in rec.summary.update if i.key})
        out.append((started, (wandb_id, history, artifacts, {**summary, "_config": config})))
    return [entry for _, entry in sorted(out, key=lambda pair: pair[0])]


def _store_with_run(run_dir: Path) -> tuple[TrajectoryStore, str]:
    run_dir.mkdir(parents=True, exist_ok=True)
    store = TrajectoryStore(run_dir)
    return store, store.add_run({"kind": "test"})


def _log(store: TrajectoryStore, run_id: str, sink, steps: range) -> None:
    for step in steps:
        metrics = {"rollout/reward": step / 10, "rollout/reward/family=arithmetic": step / 10, "eval/reward": 0.5 + step / 10}
        store.log_metrics(run_id, step, metrics)
        sink(step, metrics)


def _finish(store: TrajectoryStore, run_id: str, run_dir: Path, sink, status: str = "completed") -> None:
    sink.finish(SimpleNamespace(store=store, run_id=run_id, run_dir=run_dir), status)
    sink.close()


# -- load-time checks ----------------------------------------------------------------------------

@pytest.mark.parametrize("backend", ["wandb", "mlflow"])
def test_a_tracker_that_is_not_installed_is_refused_with_the_extra_to_install(backend, monkeypatch):
    monkeypatch.setitem(sys.modules, backend, None)  # `import wandb` now fails; find_spec says absent
    with pytest.raises(ConfigError, match=rf"pip install 'forgerl\[{backend}\]'"):
        load_config(None, logging={"backends": ["tensorboard", backend]})


def test_logging_section_refuses_credentials_in_the_uri_and_duplicates():
    pytest.importorskip("mlflow")
    with pytest.raises(ConfigError, match="MLFLOW_TRACKING_PASSWORD"):
        load_config(None, logging={"backends": ["mlflow"], "mlflow_tracking_uri": "https://me:secret@mlflow.example"})
    with pytest.raises(ConfigError, match="twice"):
        load_config(None, logging={"backends": ["tensorboard", "tensorboard"]})
    with pytest.raises(ConfigError, match="not in logging.backends"):
        load_config(None, logging={"mlflow_tracking_uri": "http://127.0.0.1:5000"})
    with pytest.raises(ConfigError, match="logging.backends"):
        load_config(None, logging={"backends": ["comet"]})


def test_the_logging_section_round_trips_through_the_run_config(tmp_path):
    from forgerl.train.config import dump_config

    config = load_config(None, logging={"backends": [], "project": "p", "run_name": "n"})
    (tmp_path / "c.toml").write_text(dump_config(config))
    assert load_config(tmp_path / "c.toml").logging == config.logging


def test_mlflow_names_are_ones_mlflow_and_its_file_store_accept():
    assert mlflow_name("rollout/reward/family=cowork") == "rollout/reward.family:cowork"
    assert mlflow_name("rollout/reward/family=<x>é") == "rollout/reward.family:_x__"
    assert mlflow_name("train/loss") == "train/loss"


# -- W&B offline ---------------------------------------------------------------------------------

def test_wandb_offline_run_gets_steps_config_summary_and_report_and_resume_continues_it(tmp_path, offline_trackers):
    run_dir = tmp_path / "run"
    config = load_config(None, **TINY, run_dir=str(run_dir), logging={"backends": ["wandb"], "mode": "offline",
                                                                      "project": "forgerl-test"})
    store, run_id = _store_with_run(run_dir)
    sink = WandbLogger(config, run_dir, run_id)
    _log(store, run_id, sink, range(0, 3))
    sink.close()  # a crash: no finish; steps 0-2 were sent
    wandb_id = json.loads((run_dir / STATE_FILE).read_text())["wandb"]["id"]

    resumed = WandbLogger(config, run_dir, run_id)  # the resume redoes step 2, then runs step 3
    _log(store, run_id, resumed, range(2, 4))
    _finish(store, run_id, run_dir, resumed)

    first, second = wandb_history(run_dir)
    assert first[0] == second[0] == wandb_id  # the same W&B run, continued
    assert sorted(first[1]) == [0, 1, 2] and sorted(second[1]) == [3]  # step 2 not sent twice
    assert first[1][1] == {"rollout/reward": 0.1, "rollout/reward/family=arithmetic": 0.1, "eval/reward": 0.6}
    config_seen = first[3]["_config"]
    assert config_seen["forgerl_run_id"] == run_id and config_seen["env"] == "arithmetic"
    assert config_seen["logging"]["project"] == "forgerl-test" and f"forgerl:{run_id}" in config_seen["_tags"]
    assert second[3]["final/eval_reward"] == pytest.approx(0.8) and second[3]["forgerl/status"] == "completed"
    assert second[2] == [("report", ["report.md", "reward.png"])]
    store.close()


# -- MLflow local store --------------------------------------------------------------------------

def test_mlflow_run_gets_steps_params_summary_and_artifacts_and_resume_continues_it(tmp_path, offline_trackers):
    from mlflow.tracking import MlflowClient

    run_dir = tmp_path / "run"
    config = load_config(None, **TINY, run_dir=str(run_dir),
                         logging={"backends": ["mlflow"], "mlflow_tracking_uri": offline_trackers, "project": "exp"})
    store, run_id = _store_with_run(run_dir)
    sink = MlflowLogger(config, run_dir, run_id)
    _log(store, run_id, sink, range(0, 3))
    sink.close()
    client = MlflowClient(tracking_uri=offline_trackers)
    mlflow_run_id = json.loads((run_dir / STATE_FILE).read_text())["mlflow"]["run_id"]
    assert client.get_run(mlflow_run_id).info.status == "FAILED"  # closed without finish

    resumed = MlflowLogger(config, run_dir, run_id)
    assert client.get_run(mlflow_run_id).info.status == "RUNNING"
    _log(store, run_id, resumed, range(2, 4))
    _finish(store, run_id, run_dir, resumed)

    run = client.get_run(mlflow_run_id)
    assert run.info.status == "FINISHED" and run.info.run_name == f"run-{run_id}"
    assert run.data.tags["forgerl.run_id"] == run_id and run.data.tags["forgerl.status"] == "completed"
    assert run.data.params["env"] == "arithmetic" and run.data.params["logging.backends"] == '["mlflow"]'
    history = [(m.step, m.value) for m in client.get_metric_history(mlflow_run_id, "eval/reward")]
    assert sorted(history) == [(0, 0.5), (1, 0.6), (2, 0.7), (3, 0.8)]  # each step once
    assert [m.step for m in client.get_metric_history(mlflow_run_id, "rollout/reward.family:arithmetic")] == [0, 1, 2, 3]
    assert run.data.metrics["final/eval_reward"] == pytest.approx(0.8)
    assert sorted(a.path for a in client.list_artifacts(mlflow_run_id)) == ["report.md", "reward.png"]
    store.close()


def test_mlflow_resume_against_another_store_says_what_to_do(tmp_path, offline_trackers):
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    (run_dir / STATE_FILE).write_text(json.dumps({"mlflow": {"run_id": "0123456789abcdef", "last_step": 3}}))
    config = load_config(None, **TINY, run_dir=str(run_dir),
                         logging={"backends": ["mlflow"], "mlflow_tracking_uri": offline_trackers})
    with pytest.raises(ConfigError, match="delete the 'mlflow' entry"):
        MlflowLogger(config, run_dir, "run-x")


def test_a_tracker_that_fails_mid_run_warns_once_and_training_goes_on(tmp_path, offline_trackers, caplog):
    run_dir = tmp_path / "run"
    config = load_config(None, **TINY, run_dir=str(run_dir),
                         logging={"backends": ["mlflow"], "mlflow_tracking_uri": offline_trackers})
    store, run_id = _store_with_run(run_dir)
    sink = MlflowLogger(config, run_dir, run_id)
    calls = []

    def outage(step, metrics):
        calls.append(step)
        raise ConnectionError("tracking server down")

    sink.send = outage
    _log(store, run_id, sink, range(0, 3))  # no exception reaches the training loop
    _finish(store, run_id, run_dir, sink, "completed")
    assert calls == [0] and sink.failed
    assert sum("mlflow logger failed" in r.message for r in caplog.records) == 1
    store.close()


# -- end to end ----------------------------------------------------------------------------------

@pytest.mark.slow  # ~15 s: two real training steps of the tiny model, both trackers
def test_training_sends_the_tensorboard_metrics_to_wandb_and_mlflow(tmp_path, offline_trackers):
    from mlflow.tracking import MlflowClient

    from forgerl.training import run_training

    run_dir = tmp_path / "run"
    config = load_config(None, **TINY, steps=2, run_dir=str(run_dir),
                         logging={"backends": ["tensorboard", "wandb", "mlflow"], "mode": "offline",
                                  "mlflow_tracking_uri": offline_trackers})
    run_training(config)
    with TrajectoryStore(run_dir) as store:
        run_id = store.runs()[-1].id
        logged = {(s, n) for s, n, _ in store.metrics(run_id)}
    [(_, history, artifacts, summary)] = wandb_history(run_dir)
    assert {(s, n) for s, row in history.items() for n in row} == logged
    assert artifacts and summary["forgerl/status"] == "completed"
    client = MlflowClient(tracking_uri=offline_trackers)
    mlflow_run = client.get_run(json.loads((run_dir / STATE_FILE).read_text())["mlflow"]["run_id"])
    assert {mlflow_name(n) for _, n in logged} | {"final/eval_reward"} == set(mlflow_run.data.metrics)
    assert list((run_dir / "tensorboard").glob("events.out.tfevents.*"))
