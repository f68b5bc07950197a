"""`forgerl pretrain` on the command line: a short run, and the mistakes it refuses."""

from __future__ import annotations

import json

import pytest

from forgerl.cli.main import run_cli


@pytest.mark.slow  # ~8 s on a quiet 2-core machine (the model loads); test_run.py covers the loop itself
def test_a_short_run_writes_its_curve_and_model(tmp_path) -> None:
    out = tmp_path / "pt"
    code = run_cli(["pretrain", "--out", str(out), "--tokens", "100", "--seq-len", "64", "--batch-size", "1",
                    "--mix", "synthetic=1", "--warmup", "1", "--threads", "1"])
    assert code == 0
    lines = [json.loads(x) for x in (out / "loss.jsonl").read_text().splitlines()]
    assert [r["step"] for r in lines] == [1, 2]  # 100 tokens = 2 steps of 64
    assert list(lines[0]["per_source"]) == ["synthetic"]
    assert (out / "checkpoints" / "step_000002" / "config.json").is_file()


def test_bad_options_are_refused_with_a_message(tmp_path, capsys) -> None:
    assert run_cli(["pretrain", "--out", str(tmp_path), "--tokens", "5", "--steps", "3"]) == 2
    assert "--tokens or --steps, not both" in capsys.readouterr().err
    assert run_cli(["pretrain", "--out", str(tmp_path), "--mix", "books=1"]) == 2
    err = capsys.readouterr().err
    assert "unknown source 'books'" in err and "code, synthetic, episodes" in err
    assert run_cli(["pretrain", "--out", str(tmp_path), "--steps", "1", "--resume"]) == 2
    assert "holds no pre-training run" in capsys.readouterr().err
