"""Models in, models out (issue 27 item 1): a checkpoint is a Hugging Face model directory that
`--model RUN`, `RUN:best`, `RUN:step_N` and transformers load (weights checked against the
checksums first), and `forgerl export` writes a clean copy with a model card."""

from __future__ import annotations

import json
import stat
from pathlib import Path

import pytest
import torch

from forgerl.errors import ConfigError
from forgerl.model.loading import load_policy
from forgerl.train.checkpoint import checkpoint_dir, write_best_pointer, write_checkpoint
from forgerl.train.export import export_model

LOGIT_ATOL = 1e-5  # same weights, same FP32 forward: only kernel-order noise


def _perturbed(model: torch.nn.Module, scale: float) -> None:
    with torch.no_grad():
        for param in model.parameters():
            param.add_(scale * torch.randn_like(param) * 0.01)


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory) -> tuple[Path, dict[int, torch.nn.Module], object]:
    """A run directory with checkpoints at steps 1 and 2 (different weights), best = step 1."""
    import copy

    root = tmp_path_factory.mktemp("run")
    policy, tokenizer = load_policy("tiny-random", dtype="float32")
    optimizer = torch.optim.AdamW(policy.parameters(), lr=1e-3)
    saved = {}
    torch.manual_seed(0)
    for step in (1, 2):
        _perturbed(policy, step)
        write_checkpoint(checkpoint_dir(root, step), policy, optimizer, {"step": step, "version": step}, tokenizer=tokenizer)
        saved[step] = copy.deepcopy(policy).eval()
    write_best_pointer(root, 1, 0.8)
    return root, saved, tokenizer


def _logits(model: torch.nn.Module) -> torch.Tensor:
    ids = torch.arange(5, 30).reshape(1, -1)
    with torch.no_grad():
        return model(ids).logits


@pytest.mark.parametrize(("suffix", "step"), [("", 2), (":latest", 2), (":best", 1), (":step_1", 1), (":step_2", 2)])
def test_a_run_reference_loads_its_checkpoint(run_dir, suffix, step):
    root, saved, _ = run_dir
    model, tokenizer = load_policy(f"{root}{suffix}", dtype="float32")
    assert torch.allclose(_logits(model), _logits(saved[step]), atol=LOGIT_ATOL)
    assert len(tokenizer) == model.get_input_embeddings().weight.shape[0]


def test_transformers_loads_a_checkpoint_with_the_same_logits(run_dir):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    root, saved, tokenizer = run_dir
    directory = checkpoint_dir(root, 2)
    manifest = json.loads((directory / "checksums.json").read_text())["files"]
    assert {"config.json", "generation_config.json", "tokenizer.json", "model.safetensors"} <= set(manifest)
    hf = AutoModelForCausalLM.from_pretrained(directory, dtype=torch.float32).eval()
    assert torch.allclose(_logits(hf), _logits(saved[2]), atol=LOGIT_ATOL)
    assert AutoTokenizer.from_pretrained(directory).get_vocab() == tokenizer.get_vocab()


def test_a_damaged_checkpoint_is_refused_by_name_and_the_run_falls_back(tmp_path, run_dir):
    import shutil

    root, saved, _ = run_dir
    copy_dir = tmp_path / "run"
    shutil.copytree(root, copy_dir)
    config = checkpoint_dir(copy_dir, 2) / "config.json"
    config.write_text(config.read_text().replace("128", "129", 1))
    with pytest.raises(ConfigError, match="config.json"):
        load_policy(f"{copy_dir}:step_2")
    model, _ = load_policy(str(copy_dir), dtype="float32")  # latest good: step 1
    assert torch.allclose(_logits(model), _logits(saved[1]), atol=LOGIT_ATOL)


def test_unknown_references_say_what_exists(run_dir, tmp_path):
    root, _, _ = run_dir
    with pytest.raises(ConfigError, match=r"checkpointed steps: 1, 2"):
        load_policy(f"{root}:step_7")
    (tmp_path / "checkpoints").mkdir()
    with pytest.raises(ConfigError, match="no best checkpoint"):
        load_policy(f"{tmp_path}:best")


def test_best_pointer_is_validated(tmp_path, run_dir):
    import shutil

    root, _, _ = run_dir
    shutil.copytree(root, tmp_path / "run")
    (tmp_path / "run" / "checkpoints" / "best.json").write_text(json.dumps({"checkpoint": "../../etc", "step": 1}))
    with pytest.raises(ConfigError, match="best.json is corrupt"):
        load_policy(f"{tmp_path / 'run'}:best")


def test_export_writes_a_clean_loadable_model_directory(run_dir, tmp_path):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    root, saved, _ = run_dir
    out = export_model(f"{root}:best", tmp_path / "exported")
    names = {p.name for p in out.iterdir()}
    assert {"config.json", "model.safetensors", "tokenizer.json", "README.md", "generation_config.json"} <= names
    assert not names & {"optimizer.pt", "rng.pt", "state.json", "checksums.json"}
    assert stat.S_IMODE((out / "model.safetensors").stat().st_mode) & 0o044  # readable by others (umask allowing)
    hf = AutoModelForCausalLM.from_pretrained(out, dtype=torch.float32).eval()
    assert torch.allclose(_logits(hf), _logits(saved[1]), atol=LOGIT_ATOL)
    AutoTokenizer.from_pretrained(out)
    model, _ = load_policy(str(out), dtype="float32")  # forgerl --model DIR
    assert torch.allclose(_logits(model), _logits(saved[1]), atol=LOGIT_ATOL)
    assert "step 1" in (out / "README.md").read_text()
    with pytest.raises(ConfigError, match="already exists"):
        export_model(str(root), out)


def test_lora_checkpoint_is_merged_with_the_adapter_kept(tmp_path):
    from safetensors import safe_open
    from transformers import AutoModelForCausalLM

    from forgerl.model.lora import add_lora
    from forgerl.train.checkpoint import load_checkpoint

    def tiny_llama():
        from transformers import LlamaConfig, LlamaForCausalLM

        torch.manual_seed(0)
        return LlamaForCausalLM(LlamaConfig(vocab_size=300, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                                            num_attention_heads=4, num_key_value_heads=2)).eval()

    policy = add_lora(tiny_llama(), rank=4, alpha=8, targets=["q_proj", "v_proj"])
    with torch.no_grad():
        for name, p in policy.named_parameters():
            if "lora_B" in name:
                p.normal_(0, 0.5)
    optimizer = torch.optim.AdamW([p for p in policy.parameters() if p.requires_grad], lr=1e-3)
    directory = write_checkpoint(checkpoint_dir(tmp_path, 1), policy, optimizer, {"step": 1, "version": 1})
    manifest = json.loads((directory / "checksums.json").read_text())["files"]
    assert "adapter/adapter_model.safetensors" in manifest and "adapter/adapter_config.json" in manifest
    with safe_open(str(directory / "model.safetensors"), "pt") as f:
        assert not [k for k in f.keys() if "lora_" in k or "base_layer" in k]
    hf = AutoModelForCausalLM.from_pretrained(directory, dtype=torch.float32).eval()
    assert torch.allclose(_logits(hf), _logits(policy), atol=LOGIT_ATOL)
    fresh = add_lora(tiny_llama(), rank=4, alpha=8, targets=["q_proj", "v_proj"])  # B = 0: not the trained adapter
    load_checkpoint(directory, fresh, torch.optim.AdamW([p for p in fresh.parameters() if p.requires_grad], lr=1e-3))
    assert torch.allclose(_logits(fresh), _logits(policy), atol=1e-6)  # resume restores the adapters
