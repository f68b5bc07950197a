"""The grouped training config (issue 18, item 4): [optim], [lora], [eval], [engine] (a union on
`kind`), one [rollout] table shared with the scheduler, loss traits from rl/, and every old flat key
refused with the key that replaced it (no silent aliasing); stored runs migrate once, loudly."""

from __future__ import annotations

import ast
import inspect
import json
import tomllib
from pathlib import Path
from typing import Any, get_args

import pytest

from forgerl.errors import ConfigError
from forgerl.train.config import (
    ENGINE_KINDS,
    MOVED_KEYS,
    PRE_GROUPED_NAME,
    BuiltinEngineConfig,
    RemoteEngineConfig,
    TrainConfig,
    VllmEngineConfig,
    dump_config,
    load_config,
    migrate_run_config,
    public_config,
)

ROOT = Path(__file__).resolve().parents[2]
DATA = Path(__file__).parent / "data"
EXAMPLES = sorted((ROOT / "examples" / "configs").glob("*.toml"))
# An old value for each flat key, valid before the change (engine keys with a matching engine).
OLD_VALUES: dict[str, Any] = {
    "lr": 3e-4, "betas": [0.9, 0.99], "adam_eps": 1e-8, "weight_decay": 0.1, "grad_clip": 0.5,
    "micro_batch_tokens": 4096, "lora_rank": 8, "lora_alpha": 32.0, "lora_targets": ["q_proj"], "eval_every": 2,
    "eval_tasks": 4, "eval_temperature": 0.5, "engine": "remote", "engine_url": "http://127.0.0.1:8000",
    "engine_admin_token": "t0ken", "vllm_threads": "0-3", "vllm_kv_cache_gib": 2.0,
}


def _get(data: dict[str, Any], dotted: str) -> Any:
    for part in dotted.split("."):
        data = data[part]
    return data


@pytest.mark.parametrize("path", EXAMPLES, ids=[p.stem for p in EXAMPLES])
def test_every_example_config_loads_and_round_trips(path, tmp_path):
    config = load_config(path)
    again = tmp_path / "again.toml"
    again.write_text(dump_config(config))
    assert load_config(again) == config
    assert not set(tomllib.loads(path.read_text())) & set(MOVED_KEYS) - {"engine"}


def test_the_mapping_table_covers_exactly_the_old_flat_keys():
    old = json.loads((DATA / "flat_config_defaults.json").read_text())
    assert set(MOVED_KEYS) == set(old) - set(TrainConfig.model_fields) | {"engine"}
    assert set(OLD_VALUES) == set(MOVED_KEYS)


def test_default_config_maps_one_to_one_from_the_old_defaults():
    """`forgerl train` with no config runs the same run: every old default is at its new key, with
    the same value (the vLLM keys were defaults of an engine not in use: they are vLLM's defaults)."""
    old = json.loads((DATA / "flat_config_defaults.json").read_text())
    new = load_config().model_dump(mode="json")
    vllm_defaults = VllmEngineConfig(kind="vllm").model_dump(mode="json")
    checked = set()
    for key, value in old.items():
        target = MOVED_KEYS.get(key, key)
        if key in ("vllm_threads", "vllm_kv_cache_gib"):
            assert vllm_defaults[target.split(".")[1]] == value, key
        elif key in ("engine_url", "engine_admin_token"):
            assert value is None and target.split(".")[1] not in new["engine"], key
        else:
            assert _get(new, target) == value, f"{key} -> {target}"
        checked.add(target.split(".")[0])
    assert checked | set(NEW_TABLES) == set(new), "a new top-level key without an old counterpart changes the default run"
    for table, leaves_the_default_run_alone in NEW_TABLES.items():
        assert leaves_the_default_run_alone(load_config()), f"[{table}]'s defaults change the default run"


# Tables added since the grouping, each with the check that its defaults leave the default run as it was.
NEW_TABLES = {
    "cores": lambda config: config.core_plan().trainer is None and config.core_plan().engine is None,  # sync: nothing set
    "distributed": lambda config: config.distributed.timeout_s > 0,  # read only when torchrun's world size is above 1
    # unset: the MTP heads are co-trained when the policy has them; the main model's update is the
    # same with or without them (tests/train/test_mtp_cotrain.py)
    "mtp": lambda config: config.mtp.cotrain is None,
    "curriculum": lambda config: config.curriculum is None,  # unset: one family, as `env` says
    "verifier": lambda config: config.verifier.kind == "executor",  # read only by the appdev family
    # unset: the history only grows, as before; [eval.context] unset follows it
    "context": lambda config: config.context.manager == "none" and config.eval.context is None,
}


@pytest.mark.parametrize("old_key", sorted(MOVED_KEYS))
def test_every_old_flat_key_is_refused_naming_its_new_key(old_key, tmp_path):
    new_key = MOVED_KEYS[old_key]
    value = OLD_VALUES[old_key]
    path = tmp_path / "old.toml"
    path.write_text(f"{old_key} = {json.dumps(value)}\n")
    expected = "engine.kind" if old_key == "engine" else new_key
    for attempt in (lambda: load_config(path), lambda: load_config(None, **{old_key: value}),
                    lambda: load_config(None, set_values=[f"{old_key}={json.dumps(value)}"])):
        with pytest.raises(ConfigError) as info:
            attempt()
        text = str(info.value)
        assert old_key in text and (expected in text or f"[engine] kind = {value!r}" in text), text


def test_an_old_run_config_is_refused_with_how_to_migrate():
    with pytest.raises(ConfigError) as info:
        load_config(DATA / "flat_run_config.toml")
    assert "eval_every moved to eval.every" in str(info.value) and "--resume" in (info.value.hint or "")


def test_resume_migrates_an_old_run_directory_once_and_says_so(tmp_path):
    from forgerl.cli.train import _resume_config

    run_dir = tmp_path / "old-run"
    run_dir.mkdir()
    original = (DATA / "flat_run_config.toml").read_text()
    (run_dir / "config.toml").write_text(original)
    printed: list[str] = []

    class Console:
        def print(self, text: str, **_: object) -> None:
            printed.append(text)

    config = _resume_config(Console(), None, {"run_dir": str(run_dir)})
    assert (config.optim.lr, config.eval.every, config.steps, config.engine.kind) == (3e-4, 2, 3, "builtin")
    assert any("lr -> optim.lr" in line and "vllm_threads dropped" in line for line in printed), printed
    assert (run_dir / PRE_GROUPED_NAME).read_text() == original
    assert load_config(run_dir / "config.toml") == config.model_copy(update={"run_dir": "runs/old"})
    assert migrate_run_config(run_dir / "config.toml") == []  # once


def test_a_remote_engine_config_migrates_with_its_url(tmp_path):
    path = tmp_path / "config.toml"
    path.write_text('engine = "remote"\nengine_url = "http://127.0.0.1:9"\nvllm_threads = "0-1"\n')
    changes = migrate_run_config(path)
    assert "engine -> engine.kind" in changes and "engine_url -> engine.url" in changes
    assert load_config(path).engine == RemoteEngineConfig(kind="remote", url="http://127.0.0.1:9")


def test_engine_is_a_union_on_kind():
    assert isinstance(load_config().engine, BuiltinEngineConfig)
    vllm = load_config(None, set_values=["engine.kind=vllm", "engine.threads=0-3"]).engine
    assert isinstance(vllm, VllmEngineConfig) and vllm.threads == "0-3"
    remote = load_config(None, engine={"kind": "remote", "url": "http://h:1"}).engine
    assert isinstance(remote, RemoteEngineConfig) and remote.admin_token is None
    for kind, model in ENGINE_KINDS.items():
        assert callable(getattr(model, "open", None)), f"engine kind {kind} cannot open its engine"


@pytest.mark.parametrize(("engine", "message"), [
    ({"kind": "builtin", "url": "http://h:1"}, "engine.url: not a key of engine kind 'builtin'; it belongs to kind 'remote'"),
    ({"kind": "vllm", "admin_token": "x"}, "engine.admin_token: not a key of engine kind 'vllm'"),
    ({"kind": "remote", "url": "http://h:1", "threads": "0-1"}, "engine.threads: not a key of engine kind 'remote'; it belongs to kind 'vllm'"),
    ({"kind": "remote"}, "engine.url: missing \\(engine kind 'remote' needs it\\)"),
    ({"kind": "sglang"}, "engine"),
    ({"kind": "builtin", "treads": 1}, "engine.treads: unknown key for engine kind 'builtin'"),
    ({"url": "http://h:1"}, "engine.url: not a key of engine kind 'builtin'"),  # no kind: the default's
])
def test_a_key_of_another_engine_kind_is_refused_with_a_message(engine, message):
    with pytest.raises(ConfigError, match=message):
        load_config(None, engine=engine)


def test_the_admin_token_never_reaches_the_run_directory():
    config = load_config(None, engine={"kind": "remote", "url": "http://h:1", "admin_token": "s3cret"})
    assert config.engine.admin_token == "s3cret"
    assert "s3cret" not in dump_config(config) and "admin_token" not in public_config(config)["engine"]


def test_rollout_table_is_the_schedulers_config():
    from forgerl.rollout.scheduler import RolloutConfig, SchedulerConfig
    from forgerl.rollout.source import scheduler_config

    assert TrainConfig.model_fields["rollout"].annotation is RolloutConfig and issubclass(SchedulerConfig, RolloutConfig)
    config = load_config(None, groups_per_step=4, rollout={"mode": "windowed", "capacity": 12, "max_staleness": 3})
    scheduler = scheduler_config(config)
    assert (scheduler.batch_size, scheduler.capacity, scheduler.max_staleness, scheduler.mode) == (4, 12, 3, "windowed")
    with pytest.raises(ConfigError, match="rollout.capacity: Input should be a valid integer"):
        load_config(None, rollout={"mode": "windowed", "capacity": "12"})  # strict, as the other tables


def test_each_loss_declares_its_traits_in_rl():
    from forgerl.rl import LOSSES
    from forgerl.rl.traits import LOSS_TRAITS
    from forgerl.train.config import LossConfig

    assert set(LOSS_TRAITS) == set(LOSSES) == set(get_args(LossConfig.model_fields["name"].annotation))
    for name, traits in LOSS_TRAITS.items():
        params = inspect.signature(LOSSES[name]).parameters
        assert (params["eps_low"].default, params["eps_high"].default) == (traits.eps_low, traits.eps_high), name
        assert ("trust_region_mask" in params) == traits.trust_region_mask, name


def loss_name_comparisons(folder: Path) -> list[str]:
    """Comparisons in `folder`'s modules against loss names: a literal (`name == "cispo"`) or a
    module-level collection of them (`name in TOKEN_LEVEL_LOSSES`)."""
    from forgerl.rl import LOSSES

    def names_in(node: ast.AST) -> set[str]:
        return {c.value for c in ast.walk(node) if isinstance(c, ast.Constant) and c.value in LOSSES}

    offenders = []
    for path in sorted(folder.glob("*.py")):
        tree = ast.parse(path.read_text())
        collections = {t.id for node in tree.body if isinstance(node, ast.Assign) and names_in(node.value)
                       for t in node.targets if isinstance(t, ast.Name)}
        for node in ast.walk(tree):
            if isinstance(node, ast.Compare):
                used = names_in(node) | {n.id for n in ast.walk(node) if isinstance(n, ast.Name) and n.id in collections}
                if used:
                    offenders.append(f"{path.name}:{node.lineno} {sorted(used)}")
    return offenders


def test_train_has_no_loss_name_comparisons():
    """train/ asks rl/ what a loss is (rl/traits.py) instead of comparing names."""
    offenders = loss_name_comparisons(ROOT / "src" / "forgerl" / "train")
    assert not offenders, offenders
