"""Checkpoints: policies with tied weights (SmolLM2 ties its embedding and LM head) are saved once
and loaded back tied, equal to what was saved (exact); every file carries a sha256 checked at load,
a damaged, truncated or missing file is a one-line error naming it, and a resume falls back to the
previous good checkpoint."""

from __future__ import annotations

import json
import logging
import shutil
from types import SimpleNamespace

import pytest
import torch

from forgerl.store import TrajectoryStore
from forgerl.train.checkpoint import CHECKSUMS_FILENAME, CheckpointError, load_checkpoint
from forgerl.train.run import _load_latest_checkpoint, save_checkpoint


def tied_llama():
    from transformers import AutoModelForCausalLM, LlamaConfig

    cfg = LlamaConfig(vocab_size=64, hidden_size=16, intermediate_size=32, num_hidden_layers=1, num_attention_heads=2,
                      num_key_value_heads=1, max_position_embeddings=64, tie_word_embeddings=True)
    return AutoModelForCausalLM.from_config(cfg)


def test_tied_weights_checkpoint_round_trip(tmp_path):
    store = TrajectoryStore(tmp_path / "store.sqlite")
    run_id = store.add_run({})
    pushed = []

    def run_for(policy):
        return SimpleNamespace(run_dir=tmp_path, step=3, version=3, policy=policy, store=store, run_id=run_id,
                               optimizer=torch.optim.AdamW(policy.parameters(), lr=1e-3),
                               engine=SimpleNamespace(update_weights=lambda w, v: pushed.append(v)))

    torch.manual_seed(0)
    trained = tied_llama()
    assert trained.lm_head.weight is trained.model.embed_tokens.weight
    save_checkpoint(run_for(trained))  # save_file(state_dict()) refused the shared tensor here

    fresh = tied_llama()
    resumed = run_for(fresh)
    resumed.step = resumed.version = 0
    _load_latest_checkpoint(resumed)
    assert (resumed.step, resumed.version, pushed) == (3, 3, [3])
    assert fresh.lm_head.weight is fresh.model.embed_tokens.weight  # still one tensor
    for (name, a), (_, b) in zip(trained.state_dict().items(), fresh.state_dict().items()):
        assert torch.equal(a, b), name


# -- integrity (issue 26, item 9) -----------------------------------------------------------------

def small_policy(seed: int) -> torch.nn.Module:
    """~260 KB of float32 weights: room for 64 KB of damage in the middle of the file."""
    torch.manual_seed(seed)
    return torch.nn.Sequential(*(torch.nn.Linear(128, 128) for _ in range(4)))


def trained_run(tmp_path, store, run_id, policy, step):
    optimizer = torch.optim.AdamW(policy.parameters(), lr=1e-3)
    policy(torch.ones(1, 128)).sum().backward()
    optimizer.step()  # so the optimizer has state (moments) to save
    pushed: list[int] = []
    return SimpleNamespace(run_dir=tmp_path, step=step, version=step, policy=policy, store=store, run_id=run_id,
                           optimizer=optimizer, engine=SimpleNamespace(update_weights=lambda w, v: pushed.append(v)),
                           pushed=pushed)


@pytest.fixture()
def saved(tmp_path):
    """Checkpoints at steps 2 and 4 of one run (different weights); returns (store, run_id, {step: policy})."""
    store = TrajectoryStore(tmp_path)
    run_id = store.add_run({})
    policies = {}
    for step in (2, 4):
        policies[step] = small_policy(step)
        save_checkpoint(trained_run(tmp_path, store, run_id, policies[step], step))
    yield store, run_id, policies
    store.close()


def fresh(tmp_path, store, run_id):
    run = trained_run(tmp_path, store, run_id, small_policy(99), 0)
    run.step = run.version = 0
    return run


def damage_middle(path, n=64 * 1024):
    data = bytearray(path.read_bytes())
    start = len(data) // 2 - n // 2
    data[start:start + n] = b"\xff" * n
    path.write_bytes(bytes(data))


def one_line_naming(exc_info, path, *words):
    message = str(exc_info.value)
    assert "\n" not in message and str(path) in message, message
    for word in words:
        assert word in message, message


def test_a_checkpoint_is_written_atomically_with_a_sha256_per_file(saved, tmp_path):
    step_dir = tmp_path / "checkpoints" / "step_000004"
    manifest = json.loads((step_dir / CHECKSUMS_FILENAME).read_text())
    assert sorted(manifest["files"]) == ["model.safetensors", "optimizer.pt", "rng.pt", "state.json"]
    assert all(len(f["sha256"]) == 64 and f["bytes"] > 0 for f in manifest["files"].values())
    assert not list((tmp_path / "checkpoints").glob("*.tmp"))


def test_a_truncated_safetensors_file_is_a_one_line_error_naming_it(saved, tmp_path):
    store, run_id, _ = saved
    model = tmp_path / "checkpoints" / "step_000004" / "model.safetensors"
    model.write_bytes(model.read_bytes()[: model.stat().st_size // 2])
    run = fresh(tmp_path, store, run_id)
    with pytest.raises(CheckpointError) as exc_info:
        load_checkpoint(model.parent, run.policy, run.optimizer)
    one_line_naming(exc_info, model, "truncated")
    (model.parent / CHECKSUMS_FILENAME).unlink()  # an older checkpoint: the loader's error, named
    with pytest.raises(CheckpointError) as exc_info:
        load_checkpoint(model.parent, run.policy, run.optimizer)
    one_line_naming(exc_info, model, "cannot be loaded")


def test_64_kb_of_ff_inside_the_weights_is_caught_at_load(saved, tmp_path):
    store, run_id, _ = saved
    model = tmp_path / "checkpoints" / "step_000004" / "model.safetensors"
    damage_middle(model)
    run = fresh(tmp_path, store, run_id)
    with pytest.raises(CheckpointError) as exc_info:
        load_checkpoint(model.parent, run.policy, run.optimizer)
    one_line_naming(exc_info, model, "corrupt", "sha256")
    (model.parent / CHECKSUMS_FILENAME).unlink()  # no checksum to catch it: the finite-weights check does
    with pytest.raises(CheckpointError) as exc_info:
        load_checkpoint(model.parent, run.policy, run.optimizer)
    one_line_naming(exc_info, model, "non-finite")


def test_a_missing_file_is_named(saved, tmp_path):
    store, run_id, _ = saved
    optimizer_file = tmp_path / "checkpoints" / "step_000004" / "optimizer.pt"
    optimizer_file.unlink()
    run = fresh(tmp_path, store, run_id)
    with pytest.raises(CheckpointError) as exc_info:
        load_checkpoint(optimizer_file.parent, run.policy, run.optimizer)
    one_line_naming(exc_info, optimizer_file, "missing")


def test_an_old_checkpoint_without_checksums_still_loads_with_a_warning(saved, tmp_path, caplog):
    store, run_id, policies = saved
    step_dir = tmp_path / "checkpoints" / "step_000004"
    (step_dir / CHECKSUMS_FILENAME).unlink()
    run = fresh(tmp_path, store, run_id)
    with caplog.at_level(logging.WARNING, logger="forgerl.train.checkpoint"):
        _load_latest_checkpoint(run)
    assert (run.step, run.version, run.pushed) == (4, 4, [4])
    assert "no checksums.json" in caplog.text and str(step_dir) in caplog.text
    for a, b in zip(policies[4].state_dict().values(), run.policy.state_dict().values()):
        assert torch.equal(a, b)


def test_resume_falls_back_to_the_previous_good_checkpoint(saved, tmp_path, caplog):
    store, run_id, policies = saved
    damage_middle(tmp_path / "checkpoints" / "step_000004" / "model.safetensors")
    run = fresh(tmp_path, store, run_id)
    with caplog.at_level(logging.WARNING, logger="forgerl.train.checkpoint"):
        _load_latest_checkpoint(run)
    assert (run.step, run.version, run.pushed) == (2, 2, [2])
    for a, b in zip(policies[2].state_dict().values(), run.policy.state_dict().values()):
        assert torch.equal(a, b)
    assert "step_000004/model.safetensors is corrupt" in caplog.text
    assert "previous good checkpoint" in caplog.text and "step_000002" in caplog.text

    shutil.rmtree(tmp_path / "checkpoints" / "step_000002")  # nothing good left: a clear error, no guess
    with pytest.raises(CheckpointError) as exc_info:
        _load_latest_checkpoint(fresh(tmp_path, store, run_id))
    one_line_naming(exc_info, tmp_path / "checkpoints" / "step_000004" / "model.safetensors", "no earlier checkpoint")


def test_a_moved_run_directory_loads_its_own_checkpoints(saved, tmp_path):
    store, run_id, policies = saved
    store.close()
    moved = tmp_path.parent / (tmp_path.name + "-moved")
    shutil.copytree(tmp_path, moved)
    shutil.rmtree(tmp_path / "checkpoints")  # the store in the copy still names these paths
    with TrajectoryStore(moved) as copy_store:
        run = fresh(moved, copy_store, run_id)
        _load_latest_checkpoint(run)
    assert run.step == 4
    for a, b in zip(policies[4].state_dict().values(), run.policy.state_dict().values()):
        assert torch.equal(a, b)
