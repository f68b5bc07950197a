"""Training config: TOML round trip, unknown fields and no-op combinations rejected with clear errors."""

from __future__ import annotations

import pytest

from forgerl.errors import ConfigError
from forgerl.train.config import TrainConfig, dump_config, load_config


def test_defaults_round_trip_through_toml(tmp_path):
    cfg = TrainConfig(steps=3, loss={"name": "dapo", "eps_high": 0.28})
    path = tmp_path / "run.toml"
    path.write_text(dump_config(cfg))
    assert load_config(path) == cfg


def test_overrides_win_and_none_is_ignored(tmp_path):
    path = tmp_path / "c.toml"
    path.write_text("steps = 7\n[optim]\nlr = 1e-3\n")
    cfg = load_config(path, steps=9, optim=None)
    assert cfg.steps == 9 and cfg.optim.lr == 1e-3


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("stepz = 3", "stepz"),
        ("group_size = 1", "group_size must be >= 2"),
        ("max_tokens = 4000", "must be smaller than max_context"),
        ("[loss]\nname = \"grpo\"\ntrust_region_mask = true", "does not apply to loss 'grpo'"),
        ("[loss]\nname = \"nope\"", "loss.name"),
        ("steps = ", "not valid TOML"),
        ("batch_mode = \"chain\"\n[loss]\nname = \"gspo\"", "changes the sequence-level loss 'gspo'"),
        ("batch_mode = \"trie\"", "batch_mode"),
        ("[optim]\nmicro_batch_tokens = 0", "optim.micro_batch_tokens: Input should be greater than or equal to 1"),
    ],
)
def test_bad_configs_say_what_is_wrong(tmp_path, text, message):
    path = tmp_path / "bad.toml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=message):
        load_config(path)


def test_missing_file():
    with pytest.raises(ConfigError, match="does not exist"):
        load_config("/nonexistent/run.toml")


def test_every_field_is_documented():
    for name, field in TrainConfig.model_fields.items():
        assert field.description, f"TrainConfig.{name} has no docstring"


def test_batch_mode_defaults_to_the_prefix_tree_and_keeps_the_references():
    assert TrainConfig().batch_mode == "tree"
    for mode in ("tree", "chain", "call"):
        assert TrainConfig(batch_mode=mode).batch_mode == mode
    for loss in ("grpo", "gspo", "ppo"):  # tree and call stay exact for sequence-level losses
        assert TrainConfig(batch_mode="tree", loss={"name": loss}).batch_mode == "tree"


def test_reward_model_is_accepted_in_every_rollout_mode(tmp_path):
    """Issue 18: the reward model is the rollout source's reward transform, so no mode refuses it."""
    rm = tmp_path / "rm"
    rm.mkdir()
    (rm / "reward_model.json").write_text("{}")
    (rm / "head.safetensors").write_bytes(b"")
    assert load_config(None, reward_model={"path": str(rm)}).reward_model.path == str(rm)
    for mode in ("windowed", "fifo", "greedy"):
        assert load_config(None, reward_model={"path": str(rm)}, rollout={"mode": mode}).rollout.mode == mode


def test_tool_timeout_is_the_agent_loops_default_and_must_be_positive(tmp_path):
    from forgerl.agent.tools import DEFAULT_TOOL_TIMEOUT_S
    from forgerl.train.rollouts import tool_timeout_s

    assert TrainConfig().tool_timeout_s == DEFAULT_TOOL_TIMEOUT_S == tool_timeout_s(TrainConfig())
    path = tmp_path / "c.toml"
    path.write_text("tool_timeout_s = 0\n")
    with pytest.raises(ConfigError, match="tool_timeout_s"):
        load_config(path)
