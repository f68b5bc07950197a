"""scripts/engine_parity.py without training: the config both engines share, the side-by-side
table, and joining results of separate invocations only when their arguments agree."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path
from typing import Any

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "engine_parity.py"


@pytest.fixture(scope="module")
def parity() -> Any:
    spec = importlib.util.spec_from_file_location("engine_parity", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["engine_parity"] = module
    spec.loader.exec_module(module)
    return module


def _fake_result(engine: str, rewards: list[float]) -> dict[str, Any]:
    steps = {i + 1: {"rollout/reward": r, "rollout/pass_rate": r / 2, "rollout/truncated_frac": 0.0,
                     "rollout/staleness_max": 0.0, "mismatch/mean_abs_logprob": 0.01 if engine == "builtin" else 0.05,
                     "time/step_s": 10.0} for i, r in enumerate(rewards)}
    return {"seconds": 42.0, "eval": [(0, 0.1), (len(rewards), 0.3)], "steps": steps}


def test_engines_share_every_setting_but_the_engine(parity: Any, tmp_path: Path) -> None:
    args = parity.parse_args(["--out", str(tmp_path), "--env", "tool-reasoning", "--difficulty", "1",
                              "--chat-format", "hermes", "--steps", "3", "--seed", "7"])
    a = parity.build_config("builtin", args, "tiny-random").model_dump()
    b = parity.build_config("vllm", args, "tiny-random").model_dump()
    assert (a.pop("engine")["kind"], b.pop("engine")["kind"]) == ("builtin", "vllm")
    assert (a.pop("run_dir"), b.pop("run_dir")) == (str(tmp_path / "builtin"), str(tmp_path / "vllm"))
    assert a == b
    assert (a["difficulty"], a["chat_format"], a["steps"], a["seed"]) == ([1], "hermes", 3, 7)


def test_reasoning_gym_spec_becomes_a_trainable_family(parity: Any, tmp_path: Path) -> None:
    from forgerl.envs.base import family_info

    args = parity.parse_args(["--out", str(tmp_path), "--env", "reasoning-gym:basic_arithmetic:1"])
    config = parity.build_config("builtin", args, "tiny-random")
    assert family_info(config.env).name == "reasoning-gym:basic_arithmetic:1"


def test_table_puts_engines_side_by_side(parity: Any) -> None:
    results = {"builtin": _fake_result("builtin", [0.2, 0.4]), "vllm": _fake_result("vllm", [0.3])}
    text = parity.table(results)
    lines = text.splitlines()
    assert lines[0] == ("| step | reward builtin | reward vllm | pass builtin | pass vllm | trunc builtin | trunc vllm | "
                        "stale builtin | stale vllm | |dlogp| builtin | |dlogp| vllm | s/step builtin | s/step vllm |")
    assert lines[2].startswith("| 1 | 0.200 | 0.300 | 0.100 | 0.150 |")
    assert "| 0.010 | 0.050 |" in lines[2]
    assert lines[3].startswith("| 2 | 0.400 | - |")  # a step one engine has not reached
    assert "held-out eval reward [vllm]: step 0: 0.100, step 1: 0.300" in text


def test_separate_invocations_join_only_with_equal_arguments(parity: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                             capsys: pytest.CaptureFixture[str]) -> None:
    ran: list[str] = []

    def fake_run_one(engine: str, args: Any, model: str) -> dict[str, Any]:
        ran.append(engine)
        return _fake_result(engine, [0.25, 0.5])

    monkeypatch.setattr(parity, "run_one", fake_run_one)
    monkeypatch.setattr(parity, "plot", lambda results, path: None)
    common = ["--model", "tiny-random", "--out", str(tmp_path), "--steps", "2"]
    assert parity.main(common + ["--engines", "builtin"]) == 0
    assert parity.main(common + ["--engines", "vllm"]) == 0
    assert ran == ["builtin", "vllm"]
    saved = json.loads((tmp_path / "parity.json").read_text())
    assert sorted(saved["results"]) == ["builtin", "vllm"]
    assert "reward builtin | reward vllm" in (tmp_path / "parity.md").read_text()

    capsys.readouterr()
    assert parity.main(common[:-1] + ["3", "--engines", "vllm"]) == 0  # other --steps: builtin's result no longer joins
    assert "ignoring" in capsys.readouterr().err
    assert sorted(json.loads((tmp_path / "parity.json").read_text())["results"]) == ["vllm"]


def test_unknown_engine_is_refused(parity: Any, tmp_path: Path) -> None:
    with pytest.raises(SystemExit, match="--engines must list builtin and/or vllm"):
        parity.main(["--engines", "sglang", "--out", str(tmp_path)])


def _tied_llama(seed: int) -> Any:
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    config = LlamaConfig(vocab_size=64, hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=2,
                         num_key_value_heads=1, max_position_embeddings=128, tie_word_embeddings=True)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return LlamaForCausalLM(config).eval()


def test_builtin_engine_takes_weights_of_a_model_with_tied_embeddings() -> None:
    """The parity run's first push on SmolLM2 (tied embeddings) failed: the trainer's state dict names
    the shared matrix twice (embed_tokens.weight, lm_head.weight) and the engine knew only one name."""
    import asyncio

    import torch

    from forgerl.engine.base import SamplingParams
    from forgerl.engine.llm import LLMEngine
    from forgerl.testing import CharTokenizer

    served, trained = _tied_llama(0), _tied_llama(1)
    new = trained.state_dict()
    assert "lm_head.weight" in new and "model.embed_tokens.weight" in new
    engine = LLMEngine(served, CharTokenizer(), max_context=64, num_slots=2)
    try:
        engine.update_weights(new, version=3)
        for name, tensor in served.state_dict().items():
            assert torch.equal(tensor, new[name]), name
        assert served.lm_head.weight.data_ptr() == served.model.embed_tokens.weight.data_ptr()  # still tied
        prompt = [1, 2, 3, 4]
        result = asyncio.run(engine.generate(prompt, SamplingParams(max_tokens=6, temperature=0)))
        ids = torch.tensor([prompt])
        with torch.no_grad():
            for _ in range(6):
                ids = torch.cat([ids, trained(ids).logits[:, -1:].argmax(-1)], dim=1)
        assert result.completion_ids == ids[0, len(prompt):].tolist() and result.policy_version == 3
    finally:
        engine.close()


def test_table_only_runs_nothing(parity: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(parity, "run_one", lambda *a: pytest.fail("--table-only must not train"))
    monkeypatch.setattr(parity, "plot", lambda results, path: None)
    common = ["--model", "tiny-random", "--out", str(tmp_path)]
    with pytest.raises(SystemExit, match="no results"):
        parity.main(common + ["--table-only"])
    args = parity.parse_args(common)
    (tmp_path / "builtin.json").write_text(json.dumps({"args": parity.run_args(args), "model": "m",
                                                       "result": _fake_result("builtin", [0.5])}))
    assert parity.main(common + ["--table-only"]) == 0
    assert "| 1 | 0.500 |" in (tmp_path / "parity.md").read_text()


def test_a_run_without_its_json_is_read_back_from_its_store(parity: Any, tmp_path: Path,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    """A run that crashed after logging its steps (no <engine>.json) still joins the table, but
    only when its stored config is the one these arguments give."""
    from forgerl.store import TrajectoryStore

    monkeypatch.setattr(parity, "plot", lambda results, path: None)
    common = ["--model", "tiny-random", "--out", str(tmp_path), "--steps", "2"]
    args = parity.parse_args(common)
    with TrajectoryStore(tmp_path / "vllm") as store:
        run_id = store.add_run(parity.build_config("vllm", args, "tiny-random").model_dump(mode="json"))
        store.log_metrics(run_id, 0, {"eval/reward": 0.25})
        for step, reward in ((1, 0.5), (2, 0.75)):
            store.log_metrics(run_id, step, {"rollout/reward": reward, "time/rollout_s": 3.0, "time/train_s": 1.0})
    assert parity.main(common + ["--table-only"]) == 0
    text = (tmp_path / "parity.md").read_text()
    assert "| 1 | 0.500 |" in text and "| 2 | 0.750 |" in text and "| 4.000 |" in text  # s/step = rollout + train
    assert "step 0: 0.250 (8 s, steps only, read from its store)" in text
    with pytest.raises(SystemExit, match="no results"):  # another seed: another config, so not this run
        parity.main(common + ["--seed", "1", "--table-only"])
