"""The default tokenizer (shipped, reproducible) and fitting any HF tokenizer to a chat format."""

from __future__ import annotations

import copy
import json
import random

import pytest
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import PreTrainedTokenizerFast

from forgerl.chat import get_format, list_formats
from forgerl.chat.base import encode_segments, segments_text
from forgerl.model.tokenizer import (
    ASSET_DIR,
    DIGITS_ASSET_DIR,
    PAD_TOKEN,
    all_markers,
    load_default_tokenizer,
    prepare_tokenizer,
    synthetic_episode,
    train_default_tokenizer,
)


def test_default_tokenizer_is_cached_and_small(tokenizer) -> None:
    assert load_default_tokenizer() is tokenizer
    assert 2048 <= len(tokenizer) <= 4096 + 64
    assert tokenizer.pad_token == PAD_TOKEN
    assert tokenizer.eos_token == get_format("minimax_m2").end_of_message


def test_every_marker_is_one_special_token(tokenizer) -> None:
    markers = all_markers()
    assert set(markers) >= {t for n in list_formats() for t in get_format(n).special_tokens}
    ids = [tokenizer.encode(m, add_special_tokens=False) for m in markers]
    assert all(len(i) == 1 for i in ids), dict(zip(markers, ids, strict=True))
    assert len({i[0] for i in ids}) == len(markers)  # all distinct
    # Still one token when glued to arbitrary text (added tokens are split out before BPE).
    for m, (mid,) in zip(markers, ids, strict=True):
        assert mid in tokenizer.encode(f"ab{m}cd", add_special_tokens=False)
    # They are special: a plain decode can drop them.
    assert tokenizer.decode(ids[1], skip_special_tokens=True) == ""


@pytest.mark.parametrize("name", ["minimax_m2", "hermes", "json_tools"])
def test_rendered_episodes_round_trip_losslessly(tokenizer, name) -> None:
    fmt = get_format(name)
    rng = random.Random(7)
    for _ in range(20):
        msgs, tools = synthetic_episode(rng)
        msgs.append(msgs[-1].model_copy(update={"content": "ünïcødé 日本語 ✓ \t  spaces  \n\n", "role": "user", "reasoning": None, "tool_calls": []}))
        segs = fmt.render(msgs, tools)
        rendered = encode_segments(tokenizer, segs)
        assert tokenizer.decode(rendered.ids, skip_special_tokens=False) == segments_text(segs)


def test_tokenizer_compresses_rendered_text(tokenizer) -> None:
    """Trained on the formats' text: a rendered episode costs well under one token per 2 chars."""
    msgs, tools = synthetic_episode(random.Random(11))
    text = segments_text(get_format("minimax_m2").render(msgs, tools))
    assert len(tokenizer.encode(text, add_special_tokens=False)) < len(text) / 2.5


def _model_json(path) -> dict:
    data = json.loads((path / "tokenizer.json").read_text(encoding="utf-8"))
    return {"model": data["model"], "added": [(t["id"], t["content"], t["special"]) for t in data["added_tokens"]]}


@pytest.mark.parametrize("digit_groups", [False, True])
def test_training_reproduces_the_shipped_tokenizer(tmp_path, digit_groups) -> None:
    train_default_tokenizer(tmp_path, digit_groups=digit_groups)
    assert _model_json(tmp_path) == _model_json(DIGITS_ASSET_DIR if digit_groups else ASSET_DIR)
    retrained = PreTrainedTokenizerFast.from_pretrained(str(tmp_path))
    assert retrained.get_vocab() == load_default_tokenizer(digit_groups).get_vocab()


def _bare_tokenizer() -> PreTrainedTokenizerFast:
    """A small HF tokenizer built here, knowing none of the markers and with no pad token."""
    bpe = Tokenizer(models.BPE())
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=400, initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    bpe.train_from_iterator(["hello world, think about tools and calls <think> </think>"] * 50, trainer)
    return PreTrainedTokenizerFast(tokenizer_object=bpe, clean_up_tokenization_spaces=False)


@pytest.mark.parametrize("name", ["minimax_m2", "hermes", "json_tools"])
def test_prepare_tokenizer_adds_markers_and_pad(name) -> None:
    fmt = get_format(name)
    tok = _bare_tokenizer()
    assert tok.pad_token is None
    assert any(len(tok.encode(m, add_special_tokens=False)) > 1 for m in fmt.special_tokens)
    before = len(tok)
    assert prepare_tokenizer(tok, fmt) is tok
    assert tok.pad_token is not None and tok.pad_token_id is not None
    assert len(tok) == before + len(fmt.special_tokens) + 1
    for m in fmt.special_tokens:
        (mid,) = tok.encode(m, add_special_tokens=False)
        assert mid in tok.encode(f"x{m}y", add_special_tokens=False)
    # Idempotent; names and several formats work too.
    prepare_tokenizer(tok, name)
    assert len(tok) == before + len(fmt.special_tokens) + 1
    prepare_tokenizer(tok, list_formats())
    for n in list_formats():
        assert all(len(tok.encode(m, add_special_tokens=False)) == 1 for m in get_format(n).special_tokens)
    # Rendered text survives the round trip through the prepared tokenizer.
    msgs, tools = synthetic_episode(random.Random(3))
    segs = fmt.render(msgs, tools)
    assert tok.decode(encode_segments(tok, segs).ids, skip_special_tokens=False) == segments_text(segs)


def test_prepare_default_tokenizer_adds_nothing(tokenizer) -> None:
    tok = copy.deepcopy(tokenizer)
    prepare_tokenizer(tok, list_formats())
    assert len(tok) == len(tokenizer)


def test_the_digit_variant_splits_numbers_into_groups_of_at_most_three(tokenizer) -> None:
    """A number is the same tokens wherever it stands, no token crosses a group of three digits (977 of
    the 1,000 three-digit groups are one token; the rest, such as 093, are two), and few digit tokens
    exist, so each one is common in any training text. The plain tokenizer has none of that."""
    plain = [tokenizer.decode([i]) for i in tokenizer.encode("1234567890123456", add_special_tokens=False)]
    assert plain != ["123", "456", "789", "012", "345", "6"]
    tokenizer = load_default_tokenizer(digit_groups=True)
    assert len(tokenizer) < len(load_default_tokenizer())
    rng = random.Random(5)
    for _ in range(200):
        number = str(rng.randrange(10 ** rng.randint(1, 24)))
        pieces = [tokenizer.decode([i]) for i in tokenizer.encode(number, add_special_tokens=False)]
        assert "".join(pieces) == number
        ends = {sum(len(p) for p in pieces[:k + 1]) for k in range(len(pieces))}
        assert ends >= set(range(3, len(number), 3)) | {len(number)}
        for before in (" ", ": ", "=", "$", "total was ", "\n", "x"):
            ids = tokenizer.encode(before + number + ".", add_special_tokens=False)
            assert [tokenizer.decode([i]) for i in ids][-len(pieces) - 1:-1] == pieces, before
    digit_tokens = [t for t in tokenizer.get_vocab() if tokenizer.convert_tokens_to_string([t]).strip().isdigit()]
    assert len(digit_tokens) <= 10 + 100 + 1000


def test_tiny_random_digits_is_the_same_model_on_the_digit_tokenizer() -> None:
    from forgerl.model.loading import load_policy

    model, tok = load_policy("tiny-random-digits", device="cpu")
    plain, _ = load_policy("tiny-random", device="cpu")
    assert tok.get_vocab() == load_default_tokenizer(digit_groups=True).get_vocab()
    assert model.config.vocab_size == len(tok) < plain.config.vocab_size
    assert model.config.hidden_size == plain.config.hidden_size and model.config.num_hidden_layers == plain.config.num_hidden_layers
