"""`forgerl bench appdev-verifier`: its apps are well-formed (fast), and a real run measures every
app and asserts each passes its rubric (the `browser` tier: make test-browser)."""

from __future__ import annotations

import pytest

from forgerl.bench.appdev import apps, run_appdev_bench
from forgerl.envs.appdev.isolation import chromium_path


def test_three_app_kinds_with_their_rubrics():
    found = apps()
    assert list(found) == ["one-widget (tip)", "multi-view (todo)", "python server (sum)"]
    files, rubric = found["python server (sum)"]
    assert rubric.server.kind == "python" and rubric.server.script in files
    assert all(r.items for _, r in found.values())


def test_repeats_must_be_positive():
    with pytest.raises(ValueError, match="repeats"):
        run_appdev_bench(repeats=0, print_table=False)


@pytest.mark.browser
@pytest.mark.skipif(chromium_path() is None, reason="needs Debian's chromium (apt-get install -y chromium)")
def test_a_real_run_reports_seconds_and_memory_per_app():
    pytest.importorskip("playwright.async_api", reason="pip install playwright")
    rows = run_appdev_bench(repeats=1, print_table=False)
    assert [r["app"] for r in rows] == list(apps())
    assert all(r["median_s"] > 0 and r["median_peak_mb"] > 0 and r["repeats"] == 1 for r in rows)
