"""Paging the trajectory list: every trajectory reachable exactly once, filters kept across pages,
a bad page number answered 400 with a message (never a 500)."""

from __future__ import annotations

import html
import random
import re

import pytest

from forgerl.review.demo import make_trajectory
from forgerl.store import TrajectoryStore

from .conftest import sign_in

N_BIG = 463  # three pages of 200, the last one partial


@pytest.fixture(scope="module")
def big_run_dir(tmp_path_factory, password_hashes):
    """A run of N_BIG trajectories (stored in one transaction: fast) plus a second, small run."""
    d = tmp_path_factory.mktemp("big") / "run"
    rng = random.Random(0)
    with TrajectoryStore(d) as store:
        store.add_run({"kind": "paging test"}, run_id="big", status="completed")
        store.add_run({"kind": "paging test"}, run_id="other", status="completed")
        # 116 tasks x 4 rollouts = 464; drop one so no page boundary falls on a round number
        trajs = [make_trajectory(t, r, rng) for t in range(116) for r in range(4)][:N_BIG]
        store.add_trajectories(trajs, "big", step=0)
        store.add_trajectories([make_trajectory(500, r, rng) for r in range(3)], "other", step=0)
        store.add_expert("alice", password_hashes["alice"])
    return d


@pytest.fixture(scope="module")
def big(big_run_dir):
    from fastapi.testclient import TestClient

    from forgerl.review.app import create_app

    with TestClient(create_app(big_run_dir)) as c:
        assert sign_in(c, "alice").status_code == 303
        yield c


def _ids(page: str) -> list[str]:
    return re.findall(r'<a href="/t/([^"]+)">', page)


def _next_link(page: str) -> str | None:
    match = re.search(r'<a href="([^"]+)"[^>]*\bid="page-next"', page)
    return html.unescape(match.group(1)) if match else None


def _walk(client, start: str) -> tuple[list[str], list[str]]:
    """Follow the "next" links from `start`; returns (ids in order, each page's count line)."""
    ids: list[str] = []
    counts: list[str] = []
    url: str | None = start
    while url is not None:
        response = client.get(url)
        assert response.status_code == 200, response.text
        ids += _ids(response.text)
        counts.append(html.unescape(re.search(r'id="row-count">([^<]*)<', response.text).group(1)))
        url = _next_link(response.text)
        assert len(counts) < 20, "the next links never end"
    return ids, counts


def test_every_trajectory_is_reachable_exactly_once(big, big_run_dir):
    ids, counts = _walk(big, "/trajectories?run=big")
    with TrajectoryStore(big_run_dir) as store:
        stored = [r["id"] for r in store.query_rows(run_id="big")]
    assert len(stored) == N_BIG
    assert len(ids) == len(set(ids)) == N_BIG  # none twice
    assert ids == stored  # in the store's stable order, none missing
    assert counts == ["rows 1–200 of 463", "rows 201–400 of 463", "rows 401–463 of 463"]


def test_paging_without_filters_covers_both_runs(big):
    ids, counts = _walk(big, "/trajectories")
    assert len(ids) == len(set(ids)) == N_BIG + 3
    assert counts[-1] == f"rows 401–{N_BIG + 3} of {N_BIG + 3}"


def test_filters_and_search_are_kept_across_pages(big, big_run_dir):
    with TrajectoryStore(big_run_dir) as store:
        disk = [r["id"] for r in store.query_rows(run_id="big", family="ops-disk")]
    assert len(disk) > 100
    ids, _ = _walk(big, "/trajectories?run=big&family=ops-disk")
    assert ids == disk
    # a search (payload scan) with a filter: the query string travels in the next links
    searched, counts = _walk(big, "/trajectories?run=big&q=OPS-TASK&perturbation=yes")
    expected = [i for i in _all_big(big_run_dir) if int(i[-1]) % 2]  # odd rollouts are perturbed
    assert searched == expected and len(expected) > 200
    assert counts == ["rows 1–200 of 231", "rows 201–231 of 231"]
    second = big.get("/trajectories?run=big&q=OPS-TASK&perturbation=yes&page=2").text
    assert 'value="OPS-TASK"' in second and "<option selected>yes</option>" in second  # the form keeps them too


def _all_big(run_dir) -> list[str]:
    with TrajectoryStore(run_dir) as store:
        return [r["id"] for r in store.query_rows(run_id="big")]


def test_previous_and_first_links(big):
    page3 = big.get("/trajectories?run=big&page=3").text
    prev = re.search(r'<a href="([^"]+)"[^>]*\bid="page-prev"', page3)
    assert prev and html.unescape(prev.group(1)) == "/trajectories?run=big&page=2"
    assert 'id="page-next"' not in page3  # the last page has no next link
    page1 = big.get("/trajectories?run=big").text
    assert 'id="page-prev"' not in page1


@pytest.mark.parametrize("bad", ["0", "-1", "x", "1.5", "4", "99999999999999999999", "9" * 5000])
def test_a_bad_page_is_400_with_a_message(big, bad):
    response = big.get(f"/trajectories?run=big&page={bad}")
    assert response.status_code == 400
    text = html.unescape(response.text)
    assert "page must be a whole number from 1 to 3" in text


def test_an_empty_result_has_page_one(big):
    response = big.get("/trajectories?run=nope")
    assert response.status_code == 200 and 'id="row-count">no matching trajectories<' in response.text
    assert big.get("/trajectories?run=nope&page=2").status_code == 400
