"""`POST /admin/weights` with a file in which one tensor is bad: 400, and the served weights and
version stay bit-identical (issue 26 item 7), so completions are never garbage under an old stamp."""

from __future__ import annotations

import httpx
import torch
from safetensors.torch import save_file

from forgerl.engine.llm import LLMEngine
from forgerl.server.app import create_app
from forgerl.testing import build_micro_moe

TOKEN = "s3cret-admin"
MODEL = "weights-atomic"


def test_a_push_with_one_bad_tensor_is_refused_whole(serve_app, m2_tokenizer, m2_format, tmp_path):
    serving = build_micro_moe(seed=0)
    engine = LLMEngine(serving, m2_tokenizer, model_name=MODEL, max_context=64, num_slots=2)
    live = serve_app(create_app(engine, m2_format, admin_token=TOKEN))
    before = {k: v.detach().clone() for k, v in serving.state_dict().items()}
    pushed = {k: v.contiguous() for k, v in build_micro_moe(seed=1).state_dict().items()
              if k != "lm_head.weight"}  # tied with the embeddings: safetensors keeps one name
    last = list(pushed)[-1]
    pushed[last] = torch.zeros(pushed[last].shape[0] + 1, *pushed[last].shape[1:], dtype=pushed[last].dtype)
    path = tmp_path / "bad.safetensors"
    save_file(pushed, str(path))
    auth = {"Authorization": f"Bearer {TOKEN}"}
    r = httpx.post(f"{live.base_url}/admin/weights", headers=auth, json={"path": str(path), "version": 1}, timeout=60)
    assert r.status_code == 400, r.text
    assert last in r.json()["error"]["message"] and "shape" in r.json()["error"]["message"]
    assert engine.policy_version == 0
    assert httpx.get(f"{live.base_url}/admin/weights", headers=auth).json()["policy_version"] == 0
    for name, tensor in serving.state_dict().items():
        assert torch.equal(tensor.view(torch.uint8), before[name].view(torch.uint8)), name
    out = httpx.post(f"{live.base_url}/v1/completions", timeout=60, json={"model": MODEL, "prompt": [1, 2, 3],
                                                                          "max_tokens": 2})
    assert out.status_code == 200 and out.headers["x-forgerl-policy-version"] == "0", out.text
