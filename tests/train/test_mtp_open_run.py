"""A bad [mtp] section fails when the run opens (before the engine starts or step 0 evaluates)."""

from __future__ import annotations

import pytest

from forgerl.errors import ConfigError
from forgerl.train.config import TrainConfig
from forgerl.train.run import open_run


def test_cotrain_true_without_heads_fails_at_open(tmp_path, monkeypatch) -> None:
    import forgerl.train.run as run_module

    opened = []
    monkeypatch.setattr(run_module.TrajectoryStore, "__init__", lambda self, *a, **k: opened.append(a))
    config = TrainConfig(model="tiny-random", run_dir=str(tmp_path / "run"), mtp={"cotrain": True},
                         logging={"backends": []})
    with pytest.raises(ConfigError, match="no MTP heads"):
        open_run(config)
    assert opened == []  # refused before the store (and the engine) were opened


def test_speculation_unset_is_off_for_many_cpu_rollouts_only() -> None:
    """A run-level choice: on CPU, more than CPU_SPECULATIVE_MAX_SLOTS concurrent rollouts turn an
    unset `speculative` off (drafts do not pay there); a GPU, few rollouts or an explicit N keep it."""
    from forgerl.train.config import CPU_SPECULATIVE_MAX_SLOTS, BuiltinEngineConfig

    unset, three = BuiltinEngineConfig(), BuiltinEngineConfig(speculative=3)
    assert unset.drafts("cpu", 64) == 0
    assert unset.drafts("cpu", CPU_SPECULATIVE_MAX_SLOTS) is None
    assert unset.drafts("cuda", 64) is None
    assert three.drafts("cpu", 64) == 3 and BuiltinEngineConfig(speculative=0).drafts("cuda", 1) == 0
