"""MTP heads in training checkpoints and on their way to vLLM: a resume restores the heads and
their optimizer state; mtp.safetensors is checksummed like every other file; model.safetensors
(one-process or sharded) never holds `mtp.*`; vLLM is never sent the heads."""

from __future__ import annotations

import json
from types import SimpleNamespace

import pytest
import torch
from safetensors import safe_open

from forgerl.model.loading import load_policy
from forgerl.model.mtp import MTP_FILENAME, MTPShape, attach_mtp, get_mtp
from forgerl.store import TrajectoryStore
from forgerl.train.checkpoint import (
    CHECKSUMS_FILENAME,
    MODEL_FILENAME,
    CheckpointError,
    load_checkpoint,
    write_checkpoint,
    write_sharded_checkpoint,
)
from forgerl.train.run import _load_latest_checkpoint, save_checkpoint


def policy_with_heads(seed: int) -> torch.nn.Module:
    torch.set_num_threads(1)
    model, _ = load_policy("tiny-random", seed=seed)
    attach_mtp(model, MTPShape(2, 1, 8), seed=seed)
    return model


def one_step(model: torch.nn.Module) -> torch.optim.Optimizer:
    """An AdamW step touching the heads too, so the optimizer holds state for their parameters."""
    from forgerl.model.lora import causal_lm

    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    lm = causal_lm(model)
    ids = torch.randint(1, 2000, (1, 12), generator=torch.Generator().manual_seed(0))
    hidden = lm.model(input_ids=ids).last_hidden_state
    outputs = get_mtp(lm)(hidden, ids, lm.model.embed_tokens)
    (lm.lm_head(hidden).logsumexp(-1).mean() + sum(lm.lm_head(o).logsumexp(-1).mean() for o in outputs)).backward()
    optimizer.step()
    return optimizer


def _keys(path) -> list[str]:
    with safe_open(str(path), "pt") as f:
        return list(f.keys())


def test_resume_restores_mtp_weights_and_their_optimizer_state(tmp_path) -> None:
    store = TrajectoryStore(tmp_path / "store.sqlite")
    run_id = store.add_run({})
    trained = policy_with_heads(0)
    optimizer = one_step(trained)
    run = SimpleNamespace(run_dir=tmp_path, step=2, version=2, policy=trained, store=store, run_id=run_id,
                          optimizer=optimizer, engine=SimpleNamespace(update_weights=lambda w, v: None))
    save_checkpoint(run)
    directory = tmp_path / "checkpoints" / "step_000002"
    assert not [k for k in _keys(directory / MODEL_FILENAME) if k.startswith("mtp.")]
    assert MTP_FILENAME in json.loads((directory / CHECKSUMS_FILENAME).read_text())["files"]
    fresh = policy_with_heads(1)  # other main weights and other heads
    fresh_optimizer = torch.optim.AdamW(fresh.parameters(), lr=1e-3)
    resumed = SimpleNamespace(run_dir=tmp_path, step=0, version=0, policy=fresh, store=store, run_id=run_id,
                              optimizer=fresh_optimizer, engine=SimpleNamespace(update_weights=lambda w, v: None))
    _load_latest_checkpoint(resumed)
    assert resumed.step == 2
    for (name, a), (_, b) in zip(trained.state_dict().items(), fresh.state_dict().items()):
        assert torch.equal(a, b), name
    heads_ids = {id(p) for p in get_mtp(fresh).parameters()}
    index = {id(p): i for i, p in enumerate(fresh.parameters())}
    saved_state, loaded_state = optimizer.state_dict()["state"], fresh_optimizer.state_dict()["state"]
    for pid in heads_ids:
        i = index[pid]
        assert torch.equal(saved_state[i]["exp_avg"], loaded_state[i]["exp_avg"])


def test_a_damaged_mtp_file_fails_verification_and_a_missing_one_fails_the_load(tmp_path) -> None:
    model = policy_with_heads(0)
    optimizer = one_step(model)
    directory = write_checkpoint(tmp_path / "step_000001", model, optimizer, {"step": 1, "version": 1})
    data = bytearray((directory / MTP_FILENAME).read_bytes())
    data[-100] ^= 0xFF
    (directory / MTP_FILENAME).write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match=MTP_FILENAME):
        load_checkpoint(directory, policy_with_heads(1), torch.optim.AdamW(model.parameters()))
    # written without the file (a policy without heads) but resumed by one with heads: named, not silent
    plain, _ = load_policy("tiny-random")
    bare = write_checkpoint(tmp_path / "step_000002", plain, torch.optim.AdamW(plain.parameters()),
                            {"step": 2, "version": 2})
    with pytest.raises(CheckpointError, match=MTP_FILENAME):
        load_checkpoint(bare, model, optimizer)


def test_sharded_checkpoint_splits_the_heads_out(tmp_path) -> None:
    model = policy_with_heads(0)
    state = {"step": 1, "version": 1}
    directory = write_sharded_checkpoint(tmp_path / "a", lambda: model.state_dict(), model, lambda p: p.mkdir(), state)
    assert not [k for k in _keys(directory / MODEL_FILENAME) if k.startswith("mtp.")]
    assert set(_keys(directory / MTP_FILENAME)) == set(get_mtp(model).state_dict())
    plain, _ = load_policy("tiny-random")
    directory = write_sharded_checkpoint(tmp_path / "b", lambda: plain.state_dict(), plain, lambda p: p.mkdir(), state)
    assert (directory / MODEL_FILENAME).is_file() and not (directory / MTP_FILENAME).exists()


def test_vllm_gets_no_mtp_weights(tmp_path, tokenizer) -> None:
    from forgerl.engine.vllm.checkpoints import export_checkpoint
    from forgerl.engine.vllm.client import VLLMEngine

    model = policy_with_heads(0)
    out = export_checkpoint(model, tokenizer, tmp_path / "vllm", dtype="float32")
    assert not [k for k in _keys(out / "model.safetensors") if k.startswith("mtp.")]
    assert not json.loads((out / "config.json").read_text()).get("num_mtp_modules")
    assert get_mtp(model) is not None  # the trainer's policy keeps its heads

    pushed = []
    engine = VLLMEngine("http://127.0.0.1:9", tokenizer, model_name="m")
    engine.attach_pusher(SimpleNamespace(push=lambda state, version, **_: pushed.append(set(state)) or
                                         SimpleNamespace(ok=True, error=None)))
    engine.update_weights(model.state_dict(), 1)
    assert pushed and not [k for k in pushed[0] if k.startswith("mtp.")]
    assert "lm_head.weight" in pushed[0]


def test_export_keeps_the_heads(tmp_path, tokenizer) -> None:
    from forgerl.train.export import export_model

    model = policy_with_heads(0)
    write_checkpoint(tmp_path / "run" / "checkpoints" / "step_000001", model, one_step(model), {"step": 1, "version": 1},
                     tokenizer=tokenizer)
    out = export_model(str(tmp_path / "run"), tmp_path / "exported")
    assert (out / MTP_FILENAME).is_file() and not (out / "optimizer.pt").exists()
    loaded, _ = load_policy(str(out))
    for name, tensor in model.state_dict().items():
        assert torch.equal(tensor, loaded.state_dict()[name]), name


def test_lora_checkpoint_resumes_the_wrapped_heads_and_loads_merged(tmp_path, tokenizer) -> None:
    """LoRA wraps the heads' projections too: the checkpoint resumes them adapter and all, and
    mtp.safetensors holds them merged, so `--model` of the checkpoint loads the heads."""
    from forgerl.model.lora import add_lora, inference_weights

    def lora_policy(seed):
        return add_lora(policy_with_heads(seed), rank=4, alpha=8, targets=["q_proj", "v_proj"])

    trained = lora_policy(0)
    assert any(".mtp." in name and "lora_A" in name for name, _ in trained.named_parameters())
    with torch.no_grad():
        for name, p in trained.named_parameters():
            if "lora_B" in name:
                p.add_(0.01)  # a trained adapter: merged weights differ from the base
    optimizer = one_step(trained)
    merged = inference_weights(trained)
    saved = {name: tensor.clone() for name, tensor in trained.state_dict().items()}
    # (merging and un-merging the adapter rounds the base weights in memory: compare with `saved`)
    directory = write_checkpoint(tmp_path / "step_000001", trained, optimizer, {"step": 1, "version": 1},
                                 tokenizer=tokenizer)
    fresh = lora_policy(1)
    load_checkpoint(directory, fresh, torch.optim.AdamW(fresh.parameters()))
    for name, tensor in fresh.state_dict().items():
        assert torch.equal(tensor, saved[name]), name
    loaded, _ = load_policy(str(directory))
    assert get_mtp(loaded) is not None
    heads = [name for name in loaded.state_dict() if name.startswith("mtp.")]
    assert heads and any(not torch.equal(merged[n], saved[n.replace("q_proj.", "q_proj.base_layer.")
                                                         .replace("mtp.", "base_model.model.mtp.", 1)])
                         for n in heads if "q_proj.weight" in n)  # the adapter was merged into the heads
    for name, tensor in loaded.state_dict().items():
        assert torch.allclose(tensor, merged[name], atol=1e-6), name
