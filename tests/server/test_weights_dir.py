"""`/admin/weights` with the `dir` transport: the push names a file, the server reads it from its own
`--weights-dir` (the same storage may be mounted elsewhere on the trainer's host)."""

from __future__ import annotations

import httpx
import torch

from forgerl.engine.llm import LLMEngine
from forgerl.server.app import create_app
from forgerl.testing import build_micro_moe
from forgerl.weights import DirWeightPusher, WeightDir

TOKEN = "dir-admin"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


def test_a_push_by_name_loads_from_the_servers_weights_dir(serve_app, m2_tokenizer, m2_format, tmp_path):
    storage = tmp_path / "storage"
    storage.mkdir()
    mount = tmp_path / "mounted-elsewhere"
    mount.symlink_to(storage)  # the server's mount point differs from the trainer's path
    serving = build_micro_moe(seed=0)
    engine = LLMEngine(serving, m2_tokenizer, model_name="m", max_context=64, num_slots=2)
    live = serve_app(create_app(engine, m2_format, admin_token=TOKEN, weights_dir=mount))
    trained = build_micro_moe(seed=1).state_dict()
    files = WeightDir(storage, fsync=True)
    pusher = DirWeightPusher(live.base_url, admin_token=TOKEN, files=files)
    try:
        result = pusher.push(trained, 1)
        assert result.ok and engine.policy_version == 1, result.error
        assert all(torch.equal(t, trained[n]) for n, t in serving.state_dict().items())
        engine.policy_version = 0  # as if the server restarted: the pusher loads version 1 again by name
        assert pusher.reload(1) and engine.policy_version == 1
        assert pusher.reload(1)  # already there: nothing posted
    finally:
        pusher.close()
        files.close()


def test_bad_names_and_a_server_without_weights_dir_get_clear_errors(serve_app, m2_tokenizer, m2_format, tmp_path):
    engine = LLMEngine(build_micro_moe(), m2_tokenizer, model_name="m", max_context=64, num_slots=1)
    without = serve_app(create_app(engine, m2_format, admin_token=TOKEN))
    r = httpx.post(f"{without.base_url}/admin/weights", headers=AUTH, json={"name": "policy.safetensors", "version": 1})
    assert r.status_code == 400 and "--weights-dir" in r.json()["error"]["message"]
    live = serve_app(create_app(engine, m2_format, admin_token=TOKEN, weights_dir=tmp_path))
    (tmp_path.parent / "outside.safetensors").write_bytes(b"x")
    for name in ("../outside.safetensors", "/etc/passwd", ".."):
        r = httpx.post(f"{live.base_url}/admin/weights", headers=AUTH, json={"name": name, "version": 1})
        assert r.status_code == 400 and "bare file name" in r.json()["error"]["message"], name
    r = httpx.post(f"{live.base_url}/admin/weights", headers=AUTH, json={"name": "missing.safetensors", "version": 1})
    assert r.status_code == 400 and "same storage" in r.json()["error"]["message"]
    r = httpx.post(f"{live.base_url}/admin/weights", headers=AUTH,
                   json={"name": "a.safetensors", "path": "/x.safetensors", "version": 1})
    assert r.status_code == 400 and "exactly one of path" in r.json()["error"]["message"]
    assert engine.policy_version == 0
