"""MTP heads on disk (model/mtp.py save_mtp/load_mtp through save_policy and load_policy): the
round trip, loaders that know nothing of MTP, and the warnings and errors of damaged directories."""

from __future__ import annotations

import json
import logging

import pytest
import torch
from safetensors import safe_open

from forgerl.errors import ConfigError
from forgerl.model.loading import load_policy
from forgerl.model.mtp import MTP_FILENAME, MTPShape, attach_mtp, expand_mtp, get_mtp, save_mtp
from forgerl.train.sft import save_policy


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    """tiny-random with 2 trained-looking (randomised) heads, saved as a policy directory."""
    torch.set_num_threads(1)
    model, tokenizer = load_policy("tiny-random")
    heads = attach_mtp(model, MTPShape(2, 1, 8), seed=3)
    with torch.no_grad():
        for p in heads.parameters():
            p.add_(torch.randn_like(p) * 0.01)  # not the fresh init a load would give
    out = save_policy(model, tokenizer, tmp_path_factory.mktemp("mtp_policy"), {"made_by": "test"})
    return model, tokenizer, out


def _head_outputs(model, ids):
    heads = get_mtp(model)
    with torch.no_grad():
        hidden = model.model(input_ids=ids).last_hidden_state
        return heads(hidden, ids, model.model.embed_tokens)


def test_round_trip_keeps_weights_and_outputs(saved) -> None:
    model, _, out = saved
    loaded, _ = load_policy(str(out))
    assert get_mtp(loaded) is not None and get_mtp(loaded).shape == MTPShape(2, 1, 8)
    original, restored = model.state_dict(), loaded.state_dict()
    assert original.keys() == restored.keys()
    assert all(torch.equal(original[k], restored[k]) for k in original)
    ids = torch.randint(1, 2000, (2, 20), generator=torch.Generator().manual_seed(0))
    for a, b in zip(_head_outputs(model, ids), _head_outputs(loaded, ids)):
        assert torch.equal(a, b)


def test_hf_weights_have_no_mtp_and_transformers_loads_them_cleanly(saved) -> None:
    from transformers import AutoModelForCausalLM

    _, _, out = saved
    with safe_open(str(out / "model.safetensors"), "pt") as f:
        assert not [k for k in f.keys() if k.startswith("mtp.")]
    with safe_open(str(out / MTP_FILENAME), "pt") as f:
        assert f.keys() and all(k.startswith("depths.") for k in f.keys())
    config = json.loads((out / "config.json").read_text())
    assert (config["num_mtp_modules"], config["mtp_transformer_layers"], config["mtp_window"]) == (2, 1, 8)
    model, info = AutoModelForCausalLM.from_pretrained(out, output_loading_info=True)
    assert not info["missing_keys"]
    assert not info["unexpected_keys"] and not info["mismatched_keys"]
    assert not hasattr(model, "mtp")


def test_checkpoint_without_mtp_loads_with_mtp_off(tmp_path) -> None:
    model, tokenizer = load_policy("tiny-random")
    save_policy(model, tokenizer, tmp_path, {})
    assert not (tmp_path / MTP_FILENAME).exists()
    loaded, _ = load_policy(str(tmp_path))
    assert get_mtp(loaded) is None and not getattr(loaded.config, "num_mtp_modules", 0)


def test_config_with_mtp_but_no_file_warns_and_loads_off(saved, tmp_path, caplog) -> None:
    import shutil

    _, _, out = saved
    copy = tmp_path / "copy"
    shutil.copytree(out, copy)
    (copy / MTP_FILENAME).unlink()
    with caplog.at_level(logging.WARNING, logger="forgerl.model.mtp"):
        loaded, _ = load_policy(str(copy))
    assert get_mtp(loaded) is None and loaded.config.num_mtp_modules == 0
    assert any(MTP_FILENAME in r.getMessage() and "MTP off" in r.getMessage() for r in caplog.records)


def test_mismatched_mtp_file_is_a_config_error_naming_it(saved, tmp_path) -> None:
    import shutil

    model, _, out = saved
    copy = tmp_path / "copy"
    shutil.copytree(out, copy)
    config = json.loads((copy / "config.json").read_text())
    config["num_mtp_modules"] = 3  # the file holds 2
    (copy / "config.json").write_text(json.dumps(config))
    with pytest.raises(ConfigError, match=MTP_FILENAME):
        load_policy(str(copy))


def test_expand_then_save_and_load(tmp_path) -> None:
    model, tokenizer = load_policy("tiny-random")
    attach_mtp(model, MTPShape(1, 1, 8), seed=5)
    expand_mtp(model, 3)
    save_policy(model, tokenizer, tmp_path, {})
    loaded, _ = load_policy(str(tmp_path))
    assert get_mtp(loaded).shape == MTPShape(3, 1, 8)
    ids = torch.randint(1, 2000, (1, 16), generator=torch.Generator().manual_seed(2))
    outputs = _head_outputs(loaded, ids)
    assert len(outputs) == 3
    for a, b in zip(_head_outputs(model, ids), outputs):
        assert torch.equal(a, b)


def test_save_mtp_removes_a_stale_file(tmp_path) -> None:
    model, _ = load_policy("tiny-random")
    (tmp_path / MTP_FILENAME).write_bytes(b"old")
    assert save_mtp(model, tmp_path) is None and not (tmp_path / MTP_FILENAME).exists()
