"""The shared perf-pin lockfile (swe.pins): what it accepts, what it refuses, how it is written."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from forgerl.envs.swe.pins import PerfPin, pins_json, read_pins

SHIPPED = Path(__file__).resolve().parents[3] / "data"


def test_round_trip_with_and_without_rounds(tmp_path: Path) -> None:
    js = {"ms:ms": PerfPin(rounds=12, kept=True), "semver:parse": PerfPin(rounds=3, kept=False)}
    go = {"xstrings:Delete:quadratic_scan": PerfPin(rounds=None, kept=True)}
    for pins, with_rounds in ((js, True), (go, False)):
        path = tmp_path / f"{with_rounds}.json"
        path.write_text(pins_json(pins), encoding="utf-8")
        assert read_pins(path, with_rounds=with_rounds) == pins
    assert json.loads(pins_json(go)) == {"xstrings:Delete:quadratic_scan": {"kept": True}}
    assert pins_json(dict(reversed(list(js.items())))) == pins_json(js)  # insertion order does not matter


@pytest.mark.parametrize("text, with_rounds", [
    ("[]", False), ('{"a": true}', False), ('{"a": {"kept": 1}}', False), ('{"a": {"kept": true, "rounds": 3}}', False),
    ('{"a": {"kept": true}}', True), ('{"a": {"kept": true, "rounds": 0}}', True),
    ('{"a": {"kept": true, "rounds": 2.0}}', True), ('{"a": {"kept": "yes", "rounds": 2}}', True),
])  # fmt: skip
def test_a_malformed_pin_file_is_refused_with_the_fix(tmp_path: Path, text: str, with_rounds: bool) -> None:
    path = tmp_path / "pins.json"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(SystemExit, match="--recalibrate"):
        read_pins(path, with_rounds=with_rounds)


def test_a_missing_or_broken_file_names_itself(tmp_path: Path) -> None:
    with pytest.raises(SystemExit, match="cannot read the perf pins .*missing.json"):
        read_pins(tmp_path / "missing.json", with_rounds=False)
    (tmp_path / "bad.json").write_text("{", encoding="utf-8")
    with pytest.raises(SystemExit, match="cannot read"):
        read_pins(tmp_path / "bad.json", with_rounds=True)


def test_the_shipped_pin_files_read_and_rewrite_byte_for_byte() -> None:
    for name, with_rounds in (("swe_js", True), ("swe_go", False)):
        path = SHIPPED / name / "perf_pins.json"
        pins = read_pins(path, with_rounds=with_rounds)
        assert pins and pins_json(pins) == path.read_text(encoding="utf-8"), name
