"""The pre-training loop: its loss against a hand computation, exact resume, a loadable result."""

from __future__ import annotations

import json
import math

import pytest
import torch

from forgerl.errors import ConfigError
from forgerl.model.loading import load_policy
from forgerl.pretrain.config import PretrainConfig
from forgerl.pretrain.corpus import parse_mix
from forgerl.pretrain.run import CURVE_FILE, per_source, run_pretrain, token_losses

MIX = parse_mix("synthetic=0.5,code=0.25,episodes=0.25")


def small(steps: int, **kw) -> PretrainConfig:
    return PretrainConfig(steps=steps, seq_len=128, batch_size=2, warmup=2, checkpoint_every=2, mix=MIX,
                          reading_check=4, **kw)


def curve(path) -> list[dict]:
    return [json.loads(line) for line in (path / CURVE_FILE).read_text().splitlines()]


def test_token_losses_against_a_hand_computation() -> None:
    logits = torch.tensor([[[0.0, math.log(3.0)], [math.log(4.0), 0.0], [5.0, 5.0]]])  # [1, 3, 2]
    ids = torch.tensor([[0, 1, 0]])
    # position 0 predicts token 1 with p = 3/4; position 1 predicts token 0 with p = 4/5
    assert token_losses(logits, ids).tolist()[0] == pytest.approx([-math.log(0.75), -math.log(0.8)])
    # a target's source is its token's: the names of positions 1.. of the row
    assert per_source(torch.tensor([[1.0, 3.0, 6.0]]), [["x", "a", "b", "a"]]) == {"a": 3.5, "b": 3.0}


def test_resume_continues_exactly_and_the_result_loads(tmp_path) -> None:
    """4 steps in one go == 2 steps, then --resume to 4: the same losses (to 1e-6) and the same
    weights; the run directory is a model `--model DIR` and `forgerl sft --init DIR` load."""
    torch.manual_seed(0)
    whole = run_pretrain(small(4), tmp_path / "whole", echo=lambda _: None)
    stopped = run_pretrain(small(4), tmp_path / "split", stop_at=2, echo=lambda _: None)
    assert stopped.name == "step_000002"
    split = run_pretrain(small(4), tmp_path / "split", resume=True, echo=lambda _: None)
    a, b = curve(tmp_path / "whole"), curve(tmp_path / "split")
    assert [r["step"] for r in b] == [1, 2, 3, 4]
    assert [r["loss"] for r in a] == pytest.approx([r["loss"] for r in b], abs=1e-6)
    assert [r["per_source"] for r in a] == [r["per_source"] for r in b]
    assert [r.get("reading") for r in a] == [r.get("reading") for r in b]
    assert [r["step"] for r in a if "reading" in r] == [2, 4]  # scored at each checkpoint
    assert set(a[-1]["reading"]) == {"copy", "lookup", "name", "digits"}
    assert len({name for r in a for name in r["per_source"]}) >= 2  # the resume point is past a source change
    assert all(r["aux"] > 0 for r in a) and a[-1]["tokens"] == 4 * 2 * 128
    assert a[-1]["loss"] < a[0]["loss"]

    for path in (whole, split):
        assert path.name == "step_000004"
    model_a, tok = load_policy(str(tmp_path / "whole"))  # a run directory names its newest checkpoint
    model_b, _ = load_policy(str(tmp_path / "split"))
    for (name, p), q in zip(model_a.state_dict().items(), model_b.state_dict().values(), strict=True):
        assert torch.equal(p, q), name
    fresh, _ = load_policy("tiny-random")
    ids = torch.tensor([tok.encode("def f(x):\n    return x")])
    with torch.no_grad():
        assert not torch.allclose(model_a(ids).logits, fresh(ids).logits)


def test_a_run_directory_is_not_reused_by_accident(tmp_path) -> None:
    run_pretrain(small(2), tmp_path, echo=lambda _: None)
    with pytest.raises(ConfigError, match="already holds a pre-training run"):
        run_pretrain(small(2), tmp_path, echo=lambda _: None)
    with pytest.raises(ConfigError, match=r"other settings \(lr\)"):
        run_pretrain(small(2, lr=1e-4), tmp_path, resume=True, echo=lambda _: None)
    with pytest.raises(ConfigError, match="holds no pre-training run"):
        run_pretrain(small(2), tmp_path / "empty", resume=True, echo=lambda _: None)
    with pytest.raises(ConfigError, match="longer than the model's context"):
        run_pretrain(PretrainConfig(steps=1, seq_len=8192, mix=MIX), tmp_path / "long", echo=lambda _: None)
