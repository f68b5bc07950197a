"""`[engine] kind = "remote"` with many servers: urls or replicas, the transport that can reach them,
and clear refusals of contradictory settings (engine/pool.py, train/config.py)."""

from __future__ import annotations

import pytest

from forgerl.errors import ConfigError
from forgerl.train.config import load_config
from forgerl.weights.base import check_transport


def engine(**keys):
    return load_config(engine={"kind": "remote", **keys}).engine


def test_one_url_keeps_working_as_before():
    cfg = engine(url="http://127.0.0.1:8000")
    assert cfg.url == "http://127.0.0.1:8000" and cfg.urls == [] and cfg.replicas == 0 and cfg.transport == "shm"


def test_many_urls_and_local_replicas_are_accepted():
    assert engine(urls=["http://127.0.0.1:8001", "http://localhost:8002"]).urls[1] == "http://localhost:8002"
    far = engine(urls=["http://gpu-node-3:8000", "http://gpu-node-4:8000"], transport="dir", weights_dir="/mnt/ckpt/w")
    assert far.transport == "dir" and far.weights_dir == "/mnt/ckpt/w"
    local = engine(replicas=4, threads_per_replica=1)
    assert local.replicas == 4 and local.threads_per_replica == 1


@pytest.mark.parametrize(("keys", "message"), [
    ({}, r"engine.url: missing \(engine kind 'remote' needs it\), or urls = \[...\]"),
    ({"url": "http://h:1", "urls": ["http://h:2"]}, "engine.urls: contradicts engine.url"),
    ({"urls": ["http://127.0.0.1:1"], "replicas": 2}, "engine.replicas: contradicts engine.urls"),
    ({"urls": ["http://127.0.0.1:1", "http://127.0.0.1:1"]}, "lists a server twice"),
    ({"urls": ["http://127.0.0.1:1"], "threads_per_replica": 2}, "applies to replicas = K launched here"),
    ({"url": "http://h:1", "transport": "dir", "weights_dir": "/mnt/w"}, r"write urls = \[\\?\"...\\?\"\]"),
    ({"urls": ["http://127.0.0.1:1", "http://gpu-node-3:8000"]},
     "transport 'shm' writes to this host's /dev/shm, which the engine\\(s\\) at http://gpu-node-3:8000 cannot read: "
     "use transport = 'dir'"),
    ({"urls": ["http://gpu-node-3:8000"], "transport": "dir"}, "weight transport 'dir' needs weights_dir"),
    ({"replicas": 2, "transport": "nccl"}, "engine.transport: Input should be 'shm' or 'dir'"),
    ({"replicas": -1}, "engine.replicas: Input should be greater than or equal to 0"),
])
def test_contradictions_and_unreachable_transports_are_refused_with_what_to_do(keys, message):
    with pytest.raises(ConfigError, match=message):
        engine(**keys)


def test_the_transport_check_knows_loopback_hosts():
    check_transport("shm", ["http://127.0.0.1:8000", "http://localhost:1", "http://[::1]:2"], None)
    check_transport("dir", ["http://gpu-node-3:8000"], "/mnt/w")
    with pytest.raises(ConfigError, match="unknown weight transport 'nccl'"):
        check_transport("nccl", [], None)
