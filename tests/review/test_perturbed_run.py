"""Issue 18 item 3: the review app shows a real training run's perturbations.

Training wrote the perturbation record into `metadata["perturbations"]` while the app read the
typed (and always empty) `Trajectory.perturbation`, so the perturbation filter never matched a real
run and the trajectory view never showed the record. Both tests failed on ff4ed94: the first stores
trajectories through the training rollout path (SchedulerSource -> rollout_group ->
run_episode_for with the run's [perturb] spec) on a scripted engine; the second opens a run
directory whose payloads were written in schema 1 (the record inside metadata).
"""

from __future__ import annotations

import asyncio
import json
import re
from pathlib import Path
from types import SimpleNamespace

import pytest

from forgerl.chat import get_format
from forgerl.engine.scripted import ScriptedEngine
from forgerl.perturb import PerturbSpec
from forgerl.rollout.source import SchedulerSource
from forgerl.store import TrajectoryStore
from forgerl.train.config import TrainConfig
from forgerl.train.interrupt import StopControl
from forgerl.types import Trajectory

from .conftest import sign_in
from .test_browser import _sign_in, browser, server  # noqa: F401  (fixtures used by name)


def _everything() -> PerturbSpec:
    return PerturbSpec.uniform(1.0, 1.0, held_out={"chat_formats": [], "naming_styles": [], "response_styles": []})


def _train_one_perturbed_batch(run_dir: Path, tokenizer) -> tuple[str, list[Trajectory]]:
    """One sync-mode training batch of `arithmetic`, perturbed, stored in `run_dir` as training stores it."""
    cfg = TrainConfig(env="arithmetic", difficulty=[1], groups_per_step=1, group_size=2, max_turns=2, max_tokens=16,
                      max_context=4096, perturb=_everything(), rollout={"mode": "sync"})
    store = TrajectoryStore(run_dir)
    run = SimpleNamespace(config=cfg, engine=ScriptedEngine(tokenizer, ["Done."], cycle=True, max_context=4096),
                          fmt=get_format("minimax_m2"), store=store, run_id=store.add_run({}), run_dir=run_dir,
                          step=0, version=0, reward_model=None, control=StopControl())

    async def go():
        source = SchedulerSource()
        source.check(cfg)
        await source.start(run, resumed=False)
        try:
            batch = await source.next_batch()
            batch.ack(1)
            return batch.trajectories
        finally:
            await source.aclose()

    try:
        return run.run_id, asyncio.run(go())
    finally:
        store.close()


@pytest.fixture()
def run_dir(tmp_path, tokenizer, password_hashes):
    """Overrides the demo run of conftest: a run directory holding a real perturbed batch."""
    d = tmp_path / "perturbed-run"
    run_id, trajectories = _train_one_perturbed_batch(d, tokenizer)
    with TrajectoryStore(d) as store:
        for name, h in password_hashes.items():
            store.add_expert(name, h)
    assert trajectories and all(t.perturbations and t.perturbations["applied"] for t in trajectories)
    d.joinpath("batch.json").write_text(json.dumps({"run": run_id, "ids": [t.id for t in trajectories],
                                                    "applied": trajectories[0].perturbations["applied"]}))
    return d


def test_browser_filters_a_real_run_by_perturbation_and_shows_the_record(server, browser, run_dir):  # noqa: F811
    batch = json.loads(run_dir.joinpath("batch.json").read_text())
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    _sign_in(page, server, "alice", f"/trajectories?run={batch['run']}")
    page.select_option("select[name=perturbation]", "yes")
    with page.expect_navigation():
        page.click("form.box button")
    assert "perturbation=yes" in page.url
    shown = {m for m in re.findall(r"/t/(traj_[0-9a-f]+)", page.content())}
    assert shown == set(batch["ids"])

    page.goto(f"{server}/trajectories?run={batch['run']}&perturbation=no")
    assert not re.findall(r"/t/(traj_[0-9a-f]+)", page.content())

    page.goto(f"{server}/t/{batch['ids'][0]}")
    assert page.locator("h3", has_text="Perturbation").count() == 1
    record = page.locator("h3:has-text('Perturbation') + pre").inner_text()
    assert json.loads(record)["applied"] == batch["applied"]


def test_a_schema1_run_directory_shows_its_perturbations(tmp_path, password_hashes):
    """A run stored by the previous forgerl (record in metadata, schema_version 1), inserted raw."""
    from fastapi.testclient import TestClient

    from forgerl.review.app import create_app

    record = {"version": 1, "seed": 9, "applied": [{"kind": "tool_names", "seed": 3, "params": {"style": "camel"}}]}
    old = {"id": "traj_old_perturbed", "task_id": "t1", "agent_id": "main", "perturbation": None, "schema_version": 1,
           "metadata": {"family": "arithmetic", "perturbations": record, "end_reason": "final answer", "step": 0},
           "messages": [{"role": "user", "content": "1+1?"}, {"role": "assistant", "content": "2"}], "reward": 1.0}
    plain = {"id": "traj_old_plain", "task_id": "t1", "agent_id": "main", "perturbation": None, "schema_version": 1,
             "metadata": {"family": "arithmetic"}, "reward": 0.0}
    with TrajectoryStore(tmp_path) as store:
        run = store.add_run({})
        for k, payload in enumerate((old, plain)):
            store._conn().execute(
                "INSERT INTO trajectories (id, run_id, task_id, family, agent_id, status, reward, n_calls, n_tokens,"
                " created_at, payload, payload_encoding) VALUES (?, ?, 't1', 'arithmetic', 'main', 'completed', ?,"
                " 0, 0, ?, ?, 'json')", (payload["id"], run, payload["reward"], 1.0 + k, json.dumps(payload).encode()))
        for name, h in password_hashes.items():
            store.add_expert(name, h)
    client = TestClient(create_app(tmp_path))
    sign_in(client)
    listed = client.get(f"/trajectories?run={run}&perturbation=yes").text
    assert "traj_old_perturbed" in listed and "traj_old_plain" not in listed
    view = client.get("/t/traj_old_perturbed").text
    assert "<h3>Perturbation</h3>" in view and "tool_names" in view and "camel" in view
