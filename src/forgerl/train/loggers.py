"""Experiment trackers as metric sinks: Weights & Biases and MLflow, next to the store and TensorBoard.

Turned on by `[logging] backends = [...]` (train/config.py, LoggingConfig); each backend's package
is an optional extra (`pip install 'forgerl[wandb]'`, `'forgerl[mlflow]'`) imported only when the
run opens its logger, so `import forgerl` and `forgerl --help` never load them.

What a tracker gets: the run's config as parameters (secrets left out, as in the run's config.toml),
every step's metrics (the dict TensorBoard gets) at `step=` the training step, the store's run id
as a tag and in the default run name, and at the end the last held-out reward as a summary
(`final/eval_reward`), the run's status, and report.md and reward.png as artifacts.

Resuming: the tracker's own run id is kept in the run directory (`loggers.json`), so a resumed run
continues the same W&B / MLflow run. A tracker cannot take points back, so each step goes to it
at most once: the steps a resume redoes (those after the checkpoint it resumes from that were
already sent before the crash) keep their first values there, while the store, the report and
TensorBoard show the redone ones. W&B refuses a step lower than one it has already seen anyway
(dropped with a warning); the skip keeps MLflow, whose history would otherwise hold the step
twice, the same.

A tracker that fails mid-run (a network error, a full disk) does not stop training: the failure
is logged once as a warning and the store keeps every metric. One that cannot start fails the run
before its first step, with the reason.
"""

from __future__ import annotations

import importlib.util
import json
import logging
import math
import os
import re
import secrets
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from forgerl.errors import ConfigError

if TYPE_CHECKING:
    from forgerl.train.config import LoggingConfig, TrainConfig
    from forgerl.train.run import Run

log = logging.getLogger(__name__)

STATE_FILE = "loggers.json"
"""In the run directory: per tracker, the id of its run and the last step it was sent."""

BACKEND_PACKAGES: dict[str, str] = {"wandb": "wandb", "mlflow": "mlflow"}
"""Tracker -> the module it needs; the pip extra has the tracker's name."""

FINAL_REWARD_KEY = "final/eval_reward"
MLFLOW_PARAMS_PER_CALL = 100  # MLflow's log_batch limits
MLFLOW_METRICS_PER_CALL = 1000
_MLFLOW_UNSAFE = re.compile(r"[^A-Za-z0-9_\-. :/]")


def backend_installed(backend: str) -> bool:
    """Whether the tracker's package can be imported, without importing it (find_spec is cheap)."""
    module = BACKEND_PACKAGES[backend]
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):  # a broken or half-removed install
        return False


def missing_backend_error(backend: str) -> str:
    """What to do when a configured tracker is not installed."""
    return (f"logging.backends names {backend!r}, but the {BACKEND_PACKAGES[backend]} package is not installed: "
            f"pip install 'forgerl[{backend}]' (or remove {backend!r} from [logging] backends)")


def open_loggers(config: TrainConfig, run_dir: Path, run_id: str) -> list[Any]:
    """The tracker sinks the config asks for, started (a resumed run continues its trackers' runs)."""
    sinks: list[Any] = []
    try:
        for backend in config.logging.backends:
            if backend == "wandb":
                sinks.append(WandbLogger(config, run_dir, run_id))
            elif backend == "mlflow":
                sinks.append(MlflowLogger(config, run_dir, run_id))
    except BaseException:
        for sink in sinks:
            sink.close()
        raise
    return sinks


def flat_params(config: TrainConfig) -> dict[str, str]:
    """The public config as `section.key` -> text: what MLflow takes as parameters."""
    from forgerl.train.config import public_config  # cycle: train.config imports this module

    out: dict[str, str] = {}

    def walk(prefix: str, value: Any) -> None:
        if isinstance(value, dict):
            for key, inner in value.items():
                walk(f"{prefix}.{key}" if prefix else str(key), inner)
        else:
            out[prefix] = value if isinstance(value, str) else json.dumps(value)

    walk("", public_config(config))
    return out


def mlflow_name(name: str) -> str:
    """A metric or parameter name MLflow accepts, and one its file store can keep beside its parent
    metric: `rollout/reward/family=cowork` -> `rollout/reward.family:cowork` (a `/` would make
    `rollout/reward` a directory); other characters outside MLflow's alphabet become `_` (family
    names can come from plug-ins)."""
    segments = name.split("/")
    merged = [segments[0]]
    for segment in segments[1:]:
        if "=" in segment:
            merged[-1] += "." + segment
        else:
            merged.append(segment)
    return _MLFLOW_UNSAFE.sub("_", "/".join(merged).replace("=", ":"))[:250] or "_"


def default_run_name(config: LoggingConfig, run_dir: Path, run_id: str) -> str:
    """`[logging] run_name`, else the run directory's name and the store's run id."""
    return config.run_name or f"{run_dir.name}-{run_id}"


class _StateFile:
    """`loggers.json`: small, rewritten atomically (a crash leaves the old or the new file)."""

    def __init__(self, run_dir: Path) -> None:
        self.path = run_dir / STATE_FILE

    def read(self, backend: str) -> dict[str, Any]:
        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return {}
        except (OSError, ValueError) as exc:
            raise ConfigError(f"{self.path} is damaged ({exc}): delete it to start new tracker runs "
                              "(the trackers' earlier runs are then not continued)") from None
        entry = data.get(backend, {}) if isinstance(data, dict) else {}
        return entry if isinstance(entry, dict) else {}

    def write(self, backend: str, entry: dict[str, Any]) -> None:
        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            data = {}
        data = data if isinstance(data, dict) else {}
        data[backend] = entry
        tmp = self.path.with_suffix(".json.tmp")
        tmp.write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")
        os.replace(tmp, self.path)


class TrackerSink:
    """A metric sink (`sink(step, metrics)`, `finish(run, status)`, `close()`) around one tracker:
    sends each step once, remembers the last step sent, and turns a failing tracker into a warning."""

    backend = ""

    def __init__(self, config: TrainConfig, run_dir: Path, run_id: str) -> None:
        self.config, self.run_dir, self.run_id = config, run_dir, run_id
        self.state_file = _StateFile(run_dir)
        state = self.state_file.read(self.backend)
        self.last_step: int = int(state.get("last_step", -1))
        self.failed = False
        self.finished = False
        try:
            self.state = self.start(state)
        except ConfigError:
            raise
        except Exception as exc:  # noqa: BLE001 — the tracker's own errors, shown with what to check
            raise ConfigError(f"could not start the {self.backend} logger: {type(exc).__name__}: {exc}") from exc
        self.state_file.write(self.backend, {**self.state, "last_step": self.last_step})

    # -- what a tracker implements ---------------------------------------------------------------
    def start(self, state: dict[str, Any]) -> dict[str, Any]:
        """Start or continue the tracker's run; returns what to keep in loggers.json."""
        raise NotImplementedError

    def send(self, step: int, metrics: dict[str, float]) -> None:
        raise NotImplementedError

    def send_final(self, status: str, final_reward: float | None, artifacts: list[Path]) -> None:
        raise NotImplementedError

    def stop(self, status: str) -> None:
        raise NotImplementedError

    # -- the sink protocol -----------------------------------------------------------------------
    def __call__(self, step: int, metrics: dict[str, float]) -> None:
        if step <= self.last_step or self.failed:  # sent before a resume (see the module docstring)
            return
        if not self._guard(lambda: self.send(step, metrics), f"step {step}"):
            return
        self.last_step = step
        self._guard(lambda: self.state_file.write(self.backend, {**self.state, "last_step": step}), "loggers.json")

    def finish(self, run: Run, status: str) -> None:
        """At the end of the run: the report and reward plot as artifacts, the final held-out reward
        and the status, then the tracker's run is closed with that status."""
        if not self.failed:
            self._guard(lambda: self.send_final(status, final_eval_reward(run), report_files(run.run_dir)), "the end of the run")
        self._guard(lambda: self.stop(status), "closing")
        self.finished = True

    def close(self) -> None:
        """Closing without finish (the run failed to open): the tracker run ends as failed."""
        if not self.finished:
            self._guard(lambda: self.stop("failed"), "closing")
            self.finished = True

    def _guard(self, action: Any, what: str) -> bool:
        try:
            action()
            return True
        except Exception as exc:  # noqa: BLE001 — a tracker outage must not end a training run
            if not self.failed:
                log.warning("%s logger failed at %s (%s: %s); it is off for the rest of this run: the store keeps "
                            "every metric", self.backend, what, type(exc).__name__, exc)
            self.failed = True
            return False


def final_eval_reward(run: Run) -> float | None:
    """The held-out reward of the latest evaluated step (None when the run never evaluated)."""
    from forgerl.train.run import EVAL_METRIC  # cycle: train.run imports this module (via train.config)

    values = [(step, value) for step, _, value in run.store.metrics(run.run_id, EVAL_METRIC) if math.isfinite(value)]
    return max(values)[1] if values else None


def report_files(run_dir: Path) -> list[Path]:
    """report.md and reward.png, written now from the store (the CLI writes them again, identically)."""
    from forgerl.train.report import write_report  # heavy: train.report, kept out of forgerl --help (via train.config)

    write_report(run_dir)
    return [p for p in (run_dir / "report.md", run_dir / "reward.png") if p.is_file()]


class WandbLogger(TrackerSink):
    """Weights & Biases: `[logging] mode = "offline"` writes the run under the run directory's
    `wandb/` (or $WANDB_DIR) for a later `wandb sync`; online needs `wandb login` or $WANDB_API_KEY."""

    backend = "wandb"

    def start(self, state: dict[str, Any]) -> dict[str, Any]:
        import wandb

        from forgerl.train.config import public_config  # cycle: train.config imports this module

        cfg = self.config.logging
        wandb_id = str(state.get("id") or secrets.token_hex(8))  # W&B ids: [a-z0-9], unique per project
        kwargs: dict[str, Any] = {} if os.environ.get("WANDB_DIR") else {"dir": str(self.run_dir)}
        self.wandb = wandb
        self.run = wandb.init(
            project=cfg.project, name=default_run_name(cfg, self.run_dir, self.run_id), id=wandb_id, resume="allow",
            mode=cfg.mode, config={**public_config(self.config), "forgerl_run_id": self.run_id},
            tags=[f"forgerl:{self.run_id}"[:64]], reinit="create_new",
            settings=wandb.Settings(console="off"),  # leave the terminal (the live table, signals) to forgerl
            **kwargs)
        return {"id": wandb_id}

    def send(self, step: int, metrics: dict[str, float]) -> None:
        self.run.log(dict(metrics), step=step)

    def send_final(self, status: str, final_reward: float | None, artifacts: list[Path]) -> None:
        if final_reward is not None:
            self.run.summary[FINAL_REWARD_KEY] = final_reward
        self.run.summary["forgerl/status"] = status
        if artifacts:
            artifact = self.wandb.Artifact(f"forgerl-report-{self.run_id}", type="report")
            for path in artifacts:
                artifact.add_file(str(path), name=path.name)
            self.run.log_artifact(artifact)

    def stop(self, status: str) -> None:
        self.run.finish(exit_code=0 if status == "completed" else 1)


_MLFLOW_STATUS = {"completed": "FINISHED", "interrupted": "KILLED"}


class MlflowLogger(TrackerSink):
    """MLflow: the tracking URI is `[logging] mlflow_tracking_uri`, else $MLFLOW_TRACKING_URI, else
    MLflow's default (`sqlite:///mlflow.db` in the working directory); the experiment is `project`."""

    backend = "mlflow"

    def start(self, state: dict[str, Any]) -> dict[str, Any]:
        from mlflow.exceptions import MlflowException
        from mlflow.tracking import MlflowClient

        cfg = self.config.logging
        self.client = MlflowClient(tracking_uri=cfg.mlflow_tracking_uri)
        run_id = state.get("run_id")
        if run_id:
            try:
                self.client.update_run(str(run_id), status="RUNNING")
            except MlflowException as exc:
                raise ConfigError(
                    f"the MLflow run {run_id} this run logged to (see {self.run_dir / STATE_FILE}) is not in the tracking "
                    f"store {self.client.tracking_uri!r} ({exc.message}): point [logging] mlflow_tracking_uri (or "
                    f"$MLFLOW_TRACKING_URI) at the store it was logged to, or delete the 'mlflow' entry of "
                    f"{STATE_FILE} to start a new MLflow run") from None
            self.mlflow_run_id = str(run_id)
            return {"run_id": self.mlflow_run_id}
        experiment = self.client.get_experiment_by_name(cfg.project)
        experiment_id = experiment.experiment_id if experiment else self.client.create_experiment(cfg.project)
        created = self.client.create_run(experiment_id, run_name=default_run_name(cfg, self.run_dir, self.run_id),
                                         tags={"forgerl.run_id": self.run_id, "forgerl.run_dir": str(self.run_dir)})
        self.mlflow_run_id = created.info.run_id
        self._log_params(flat_params(self.config))
        return {"run_id": self.mlflow_run_id}

    def _log_params(self, params: dict[str, str]) -> None:
        from mlflow.entities import Param

        items = [Param(mlflow_name(k), v) for k, v in params.items()]
        for i in range(0, len(items), MLFLOW_PARAMS_PER_CALL):
            self.client.log_batch(self.mlflow_run_id, params=items[i:i + MLFLOW_PARAMS_PER_CALL])

    def send(self, step: int, metrics: dict[str, float]) -> None:
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        items = [Metric(mlflow_name(name), float(value), now, step) for name, value in metrics.items()]
        for i in range(0, len(items), MLFLOW_METRICS_PER_CALL):
            self.client.log_batch(self.mlflow_run_id, metrics=items[i:i + MLFLOW_METRICS_PER_CALL])

    def send_final(self, status: str, final_reward: float | None, artifacts: list[Path]) -> None:
        if final_reward is not None:
            self.client.log_metric(self.mlflow_run_id, FINAL_REWARD_KEY, final_reward, step=max(self.last_step, 0))
        self.client.set_tag(self.mlflow_run_id, "forgerl.status", status)
        for path in artifacts:
            self.client.log_artifact(self.mlflow_run_id, str(path))

    def stop(self, status: str) -> None:
        self.client.set_terminated(self.mlflow_run_id, _MLFLOW_STATUS.get(status, "FAILED"))
