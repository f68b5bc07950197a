"""Any Hugging Face causal-LM directory loads: markers missing from its tokenizer are added as single
tokens, the embedding matrix grows to match, and the engine generates with it."""

from __future__ import annotations

import asyncio

import pytest
import torch
from tokenizers import Tokenizer, models, pre_tokenizers, trainers
from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

from forgerl.chat import encode_segments, get_format
from forgerl.engine import SamplingParams, load_engine
from forgerl.errors import ConfigError
from forgerl.model.loading import load_policy
from forgerl.types import Message


@pytest.fixture(scope="module")
def llama_dir(tmp_path_factory):
    """A tiny Llama checkpoint whose tokenizer knows none of the chat-format markers."""
    out = tmp_path_factory.mktemp("llama")
    raw = Tokenizer(models.BPE(unk_token=None))
    raw.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    trainer = trainers.BpeTrainer(vocab_size=400, special_tokens=["</s>"], initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    raw.train_from_iterator(["hello world, tools and answers 1234567890 " * 20], trainer=trainer)
    from tokenizers import decoders

    raw.decoder = decoders.ByteLevel()
    tok = PreTrainedTokenizerFast(tokenizer_object=raw, eos_token="</s>")
    tok.save_pretrained(out)
    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=len(tok), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=512)
    LlamaForCausalLM(config).save_pretrained(out)
    return out


def test_hf_directory_gets_markers_and_resized_embeddings(llama_dir):
    model, tok = load_policy(str(llama_dir), device="cpu", chat_format="minimax_m2")
    fmt = get_format("minimax_m2")
    for marker in fmt.special_tokens:
        assert len(tok.encode(marker, add_special_tokens=False)) == 1, marker
    assert model.get_input_embeddings().weight.shape[0] >= len(tok)


def test_engine_generates_with_an_hf_directory(llama_dir):
    engine = load_engine(str(llama_dir), chat_format="hermes", device="cpu", max_context=256)
    try:
        fmt = get_format("hermes")
        prompt = encode_segments(engine.tokenizer, fmt.render([Message(role="user", content="hello")])).ids
        result = asyncio.run(engine.generate(prompt, SamplingParams(max_tokens=5, seed=0)))
        assert 1 <= len(result.completion_ids) <= 5 and len(result.logprobs) == len(result.completion_ids)
        assert all(lp <= 0 for lp in result.logprobs)
        assert engine.tokenizer.convert_tokens_to_ids(fmt.end_of_message) in engine.default_stop_ids
    finally:
        engine.close()


def test_bad_model_paths_say_what_to_do(tmp_path):
    with pytest.raises(ConfigError, match="never downloads"):
        load_policy("some-org/some-model")
    with pytest.raises(ConfigError, match="no config.json"):
        load_policy(str(tmp_path))
