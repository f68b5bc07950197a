"""`forgerl bench engine --vllm` for real (slow: one vLLM server start): the tiny default policy is
replaced by its dense stand-in in every compared column, the MoE policy kept as a reference row,
and the vLLM column generates exactly the tokens the others do."""

from __future__ import annotations

import os

import pytest

from forgerl.bench.engine import BUILTIN, HF_BATCHED, REFERENCE, VLLM, run_engine_bench
from forgerl.errors import ConfigError

START_TIMEOUT_S = int(float(os.environ.get("FORGERL_VLLM_START_TIMEOUT", "900")))
pytestmark = [pytest.mark.slow, pytest.mark.timeout(START_TIMEOUT_S + 300)]


def test_bench_vllm_column_on_the_default_policy_standin(capsys):
    from forgerl.engine.vllm import vllm_python

    try:
        vllm_python()
    except ConfigError as exc:
        pytest.skip(f"vLLM is not installed: {exc}")
    ratios = run_engine_bench(model="tiny-random", sessions=4, turns=2, max_tokens=6, device="cpu",
                              skip_per_request=True, vllm=True)
    out = capsys.readouterr().out
    assert "stand-in" in out and "minimax_m2" in out
    assert ratios[VLLM] > 0 and ratios[HF_BATCHED] > 0 and ratios[BUILTIN] == 1.0
    assert any(k.startswith(REFERENCE) and k.endswith("tokens/s") for k in ratios)
    # every column generated sessions x turns x max_tokens tokens (vLLM with ignore_eos)
    assert out.count(" 48 ") >= 3, out
