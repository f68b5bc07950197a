"""`forgerl probe` end to end on tiny-random, and its errors."""

from __future__ import annotations

import json

import pytest

from forgerl.cli.main import run_cli
from forgerl.probes.naming import naming_scaffolds
from forgerl.probes.run import model_chat_format, parse_probes


def test_probe_runs_end_to_end_on_tiny_random(tmp_path, capsys) -> None:
    out = tmp_path / "probes.json"
    assert run_cli(["probe", "tiny-random", "--n", "4", "--max-tokens", "8", "--json", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "coined-name copy" in printed and "tiny-random" in printed
    report = json.loads(out.read_text())
    (result,) = report["models"]
    assert report["probe_seed_base"] == 2_000_000_000
    assert result["chat_format"] == "minimax_m2"
    assert set(result["probes"]) == {"coined", "digits", "kv"}
    assert 0.0 <= result["probes"]["digits"]["teacher_forced_per_digit"] <= 1.0


def test_bad_input_is_a_clear_error(capsys) -> None:
    assert run_cli(["probe", "tiny-random", "--probes", "coined,spelling"]) == 2
    assert "unknown probe(s) ['spelling']" in capsys.readouterr().err
    assert run_cli(["probe", "/no/such/policy"]) == 2
    assert "/no/such/policy" in capsys.readouterr().err


def test_probe_names() -> None:
    assert parse_probes("kv, coined,kv") == ["kv", "coined"]
    assert parse_probes("all") == ["coined", "digits", "kv", "naming"]
    assert model_chat_format("default") == "minimax_m2"  # the shipped policy's forgerl.json


def test_the_naming_table_has_issue_7s_scaffolds() -> None:
    scaffolds = naming_scaffolds()
    assert [s.name for s in scaffolds] == ["default", "naming=synonym", "naming=prefix", "naming=camel",
                                           "naming=pascal", "naming=kebab", "naming=upper", "naming=coined"]
    assert [s.name for s in scaffolds if s.held_out] == ["naming=pascal"]
    assert all(s.spec.tool_info.probability == 1.0 and s.spec.tool_info.naming_styles == [s.name.split("=")[1]]
               for s in scaffolds[1:])


@pytest.mark.slow
def test_the_naming_probe_runs_on_tiny_random(tmp_path) -> None:
    out = tmp_path / "naming.json"
    assert run_cli(["probe", "tiny-random", "--probes", "naming", "--naming-n", "1", "--json", str(out)]) == 0
    scaffolds = json.loads(out.read_text())["models"][0]["probes"]["naming"]["scaffolds"]
    assert len(scaffolds) == 8 and all(s["n"] + s["failed"] == 1 for s in scaffolds.values())


@pytest.mark.parametrize(("marker", "expected"), [("<|im_end|>", "hermes"), ("<|end|>", "json_tools"), ("</s>", "minimax_m2")])
def test_a_checkpoint_without_a_record_speaks_the_format_its_tokenizer_knows(tmp_path, marker, expected) -> None:
    from tokenizers import Tokenizer
    from tokenizers.models import WordLevel
    from transformers import PreTrainedTokenizerFast

    vocab = {"<unk>": 0, marker: 1, "a": 2}
    PreTrainedTokenizerFast(tokenizer_object=Tokenizer(WordLevel(vocab, unk_token="<unk>"))).save_pretrained(tmp_path)
    assert model_chat_format(str(tmp_path)) == expected
    (tmp_path / "forgerl.json").write_text('{"chat_format": "json_tools"}')
    assert model_chat_format(str(tmp_path)) == "json_tools"  # the format it was trained in wins
