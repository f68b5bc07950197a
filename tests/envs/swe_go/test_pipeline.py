"""Acceptance rules, the loader's errors, and (slow) determinism of the generation."""

from __future__ import annotations

import asyncio
import json
from dataclasses import replace
from pathlib import Path

import pytest

from forgerl.envs.swe_go import packages
from forgerl.envs.swe_go.gorun import GoTestRun
from forgerl.envs.swe_go.pipeline import GenerationConfig, build_report, classify, generate, report_markdown
from forgerl.errors import ConfigError
from tests.envs.swe_go.conftest import needs_go


def test_acceptance_rules() -> None:
    own = {"TestComma", "TestCommaBig"}
    assert classify(GoTestRun({"TestComma": False, "TestOther": True}), own) is None
    assert classify(GoTestRun({"TestComma": True, "TestOther": True}), own) == "no test fails"
    assert classify(GoTestRun({"TestComma": False, "TestOther": False}), own) == "breaks pass-to-pass"
    assert classify(GoTestRun({"TestComma": False}, problem="the package or its tests do not build"), own) == "does not build"
    assert classify(GoTestRun({"TestComma": False}, problem="the tests took longer than the time limit"), own) == "timeout"
    assert classify(GoTestRun({"TestComma": False}, tampering=("x",)), own) == "timeout"


def test_missing_toolchain_or_sources_name_the_install_command(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr(packages.shutil, "which", lambda name: None)
    monkeypatch.setattr(packages, "GO_FALLBACK", tmp_path / "no-go")
    packages.package_sources.cache_clear()
    with pytest.raises(ConfigError, match="install_system_deps.sh.*golang-go"):
        packages.package_sources("github.com/iancoleman/strcase")
    monkeypatch.undo()
    monkeypatch.setattr(packages, "GOCODE", tmp_path)
    monkeypatch.setattr(packages.shutil, "which", lambda name: "/usr/bin/go")
    packages.package_sources.cache_clear()
    with pytest.raises(ConfigError, match="golang-github-iancoleman-strcase-dev"):
        packages.package_sources("github.com/iancoleman/strcase")
    packages.package_sources.cache_clear()
    with pytest.raises(ConfigError, match="unknown swe-go package"):
        packages.package_by_path("github.com/nobody/nothing")


@needs_go
@pytest.mark.slow
def test_generation_is_deterministic_and_follows_the_rules() -> None:
    strcase = (packages.package_by_path("github.com/iancoleman/strcase"),)
    config = GenerationConfig(packages=strcase, only_functions=frozenset({"ToSnake", "ToCamel", "ToKebab"}))
    first = asyncio.run(generate(config))
    runs = [first, asyncio.run(generate(replace(config, perf_pins=first.pins)))]  # a rebuild reads the pins
    dumps = [[json.dumps(t.model_dump(mode="json"), sort_keys=True) for t in sorted(r.tasks, key=lambda t: t.id)] for r in runs]
    assert dumps[0] == dumps[1] and dumps[0]
    assert report_markdown(build_report(runs[0], config)) == report_markdown(build_report(runs[1], config))
    for task in runs[0].tasks:
        data = task.data
        assert data["language"] == "go" and data["kind"] in ("bugfix", "write_test", "feature", "perf", "merged")
        assert set(data["f2p"]).isdisjoint(data["p2p"])
        if data["kind"] != "perf":
            assert data["f2p"], task.id
        kept = [a for a in runs[0].attempts if a.status == "kept" and a.kind in ("bugfix", "feature")]
        assert all(a.failing_tests for a in kept)
