"""Exports: JSONL and Parquet carry every matching trajectory exactly, and filters apply."""

from __future__ import annotations

import json
import sys

import pytest

from forgerl.store import SUMMARY_COLUMNS, StoreError
from forgerl.types import Trajectory


@pytest.fixture()
def filled(store, run_id, make_traj):
    trajs = [make_traj(i, tokens_per_call=300 if i % 3 == 0 else 5, family="math" if i < 5 else "code",
                       reward=i / 10, difficulty=float(i)) for i in range(8)]
    store.add_trajectories(trajs, run_id)
    return store, trajs


def test_jsonl_round_trips_and_filters(filled, tmp_path):
    store, trajs = filled
    out = tmp_path / "out" / "all.jsonl"
    assert store.export_jsonl(out) == 8
    back = [Trajectory.model_validate_json(line) for line in out.read_text().splitlines()]
    assert back == trajs
    assert store.export_jsonl(out, family="code", min_reward=0.6) == 2
    assert [json.loads(line)["id"] for line in out.read_text().splitlines()] == ["traj_000006", "traj_000007"]
    assert not list(out.parent.glob(".*tmp*"))  # no temporary left behind


def test_parquet_has_typed_summary_columns_and_the_full_trajectory(filled, tmp_path):
    import pyarrow.parquet as pq  # an optional extra for users; part of the dev install
    store, trajs = filled
    out = tmp_path / "all.parquet"
    assert store.export_parquet(out) == 8
    table = pq.read_table(out)
    assert table.column_names == [*SUMMARY_COLUMNS, "trajectory"]
    assert str(table.schema.field("n_tokens").type) == "int64"
    assert table.column("difficulty").to_pylist() == [float(i) for i in range(8)]
    assert table.column("step").to_pylist() == [None] * 8
    assert [Trajectory.model_validate_json(s) for s in table.column("trajectory").to_pylist()] == trajs
    assert table.to_pylist()[3]["reward"] == pytest.approx(0.3)
    assert store.export_parquet(out, family="nope") == 0
    assert pq.read_table(out).num_rows == 0


def test_parquet_export_in_several_row_groups(store, run_id, make_traj, tmp_path, monkeypatch):
    import pyarrow.parquet as pq

    import forgerl.store.export as export

    monkeypatch.setattr(export, "PARQUET_BATCH_ROWS", 3)
    store.add_trajectories([make_traj(i, n_calls=1) for i in range(7)], run_id)
    assert store.export_parquet(tmp_path / "x.parquet") == 7
    meta = pq.ParquetFile(tmp_path / "x.parquet").metadata
    assert (meta.num_rows, meta.num_row_groups) == (7, 3)


def test_missing_pyarrow_says_how_to_install(filled, tmp_path, monkeypatch):
    store, _ = filled
    monkeypatch.setitem(sys.modules, "pyarrow", None)  # makes `import pyarrow` raise ImportError
    with pytest.raises(StoreError, match="pip install pyarrow"):
        store.export_parquet(tmp_path / "x.parquet")
    assert not (tmp_path / "x.parquet").exists()


def test_export_to_a_directory_is_refused(filled, tmp_path):
    store, _ = filled
    with pytest.raises(StoreError, match="directory"):
        store.export_jsonl(tmp_path)
