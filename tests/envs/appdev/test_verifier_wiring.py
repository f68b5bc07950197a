"""A run's `[verifier]` table decides who judges appdev episodes in that process (training.py)."""

from __future__ import annotations

import pytest

from forgerl.envs.appdev.verifier_config import app_verifier_override, set_app_verifier
from forgerl.rollout.appdev_verifier import ModelAppVerifier
from forgerl.train.config import TrainConfig
from forgerl.training import default_source


@pytest.fixture(autouse=True)
def _reset_override():
    yield
    set_app_verifier(None)


def test_model_verifier_table_becomes_the_process_verifier():
    config = TrainConfig.model_validate({"env": "appdev", "verifier": {
        "kind": "model", "model": {"kind": "remote", "url": "http://127.0.0.1:9", "model": "default"}}})
    default_source(config)
    chosen = app_verifier_override()
    assert isinstance(chosen, ModelAppVerifier)
    assert chosen.model.url == "http://127.0.0.1:9"  # the engine itself is opened on first use only


def test_default_is_the_rubric_executor_and_resets_a_previous_choice():
    set_app_verifier(lambda *args: None)  # type: ignore[arg-type,return-value]
    default_source(TrainConfig.model_validate({"env": "appdev"}))
    assert app_verifier_override() is None


def test_model_kind_without_its_engine_is_a_config_error_naming_the_table():
    with pytest.raises(ValueError, match="verifier.model: missing"):
        TrainConfig.model_validate({"env": "appdev", "verifier": {"kind": "model"}})


def test_keep_evidence_puts_screenshots_under_the_run_directory(tmp_path, monkeypatch):
    from forgerl.envs.appdev import AppDevEnv
    from forgerl.envs.appdev.env import EVIDENCE_ENV
    from forgerl.envs.appdev.verifier_config import evidence_root, set_evidence_root

    monkeypatch.delenv(EVIDENCE_ENV, raising=False)
    try:
        default_source(TrainConfig.model_validate({"env": "appdev", "run_dir": str(tmp_path / "run"),
                                                   "verifier": {"keep_evidence": True}}))
        assert evidence_root() == tmp_path / "run" / "appdev-evidence"
        assert AppDevEnv()._evidence_root == tmp_path / "run" / "appdev-evidence"
        default_source(TrainConfig.model_validate({"env": "appdev", "run_dir": str(tmp_path / "run")}))
        assert evidence_root() is None and AppDevEnv()._evidence_root is None
    finally:
        set_evidence_root(None)
