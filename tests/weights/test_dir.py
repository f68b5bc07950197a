"""The `dir` transport's files (weights/files.py): each version written once for all engines,
atomically, only the newest versions kept, and never another writer's files."""

from __future__ import annotations

import threading

import torch
from safetensors.torch import load_file

from forgerl.weights import DirWeightPusher, WeightDir, WeightTransport
from forgerl.weights.alarm import StaleWeightsAlarm


def state(value: float) -> dict[str, torch.Tensor]:
    return {"w": torch.full((4, 4), value), "b": torch.arange(3)}


def test_each_version_is_written_once_and_old_versions_are_deleted(tmp_path):
    files = WeightDir(tmp_path, keep=2)
    first = files.write(state(1.0), 1)
    mtime = first.stat().st_mtime_ns
    assert files.write(state(99.0), 1) == first and first.stat().st_mtime_ns == mtime  # a sibling engine's push
    assert torch.equal(load_file(str(first))["w"], torch.full((4, 4), 1.0))
    second, third = files.write(state(2.0), 2), files.write(state(3.0), 3)
    assert not first.exists() and second.exists() and third.exists()
    assert files.path_of(1) is None and files.path_of(3) == third
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([second.name, third.name])  # no temporary left
    files.close()
    assert list(tmp_path.iterdir()) == []


def test_concurrent_pushes_of_one_version_write_one_file(tmp_path):
    files = WeightDir(tmp_path, fsync=True)
    paths: list = []
    threads = [threading.Thread(target=lambda: paths.append(files.write(state(5.0), 7))) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(set(paths)) == 1 and len(list(tmp_path.iterdir())) == 1


def test_two_writers_in_one_directory_never_touch_each_others_files(tmp_path):
    a, b = WeightDir(tmp_path, keep=1), WeightDir(tmp_path, keep=1)
    kept = a.write(state(1.0), 1)
    for v in (1, 2, 3):
        b.write(state(2.0), v)
    b.close()
    assert kept.exists() and list(tmp_path.iterdir()) == [kept]


def test_the_dir_pusher_speaks_the_protocol_and_names_its_engine_in_the_alarm(tmp_path, caplog):
    alarm = StaleWeightsAlarm(patience=1, name="the inference engine at http://127.0.0.1:9")
    pusher = DirWeightPusher("http://127.0.0.1:9", admin_token="t", files=WeightDir(tmp_path), alarm=alarm)
    try:
        assert isinstance(pusher, WeightTransport)
        result = pusher.push(state(1.0), 1)  # nothing listens on port 9
        assert not result.ok and alarm.firing
        assert "the inference engine at http://127.0.0.1:9 cannot be reached" in caplog.text
        assert pusher.files.path_of(1) is not None  # kept: the engine needs it when it comes back
    finally:
        pusher.close()
