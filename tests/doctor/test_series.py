"""RunSeries keeps each metric's points as steps arrive (the live doctor reads them every step)."""

from __future__ import annotations

import math

from forgerl.doctor.series import RunSeries


def test_values_follow_added_replaced_and_out_of_order_steps():
    s = RunSeries()
    s.add_step(1, {"a": 1.0})
    s.add_step(2, {"a": math.nan, "b": 5.0})
    assert s.values("a") == [(1, 1.0)]  # NaN left out
    s.add_step(3, {"a": 3.0})
    assert s.values("a") == [(1, 1.0), (3, 3.0)]
    s.add_step(3, {"a": 4.0})  # a value replaced
    assert s.values("a") == [(1, 1.0), (3, 4.0)]
    s.add_step(0, {"a": 0.5})  # a step before the others (a resume's history)
    assert s.values("a") == [(0, 0.5), (1, 1.0), (3, 4.0)]
    assert s.values("b") == [(2, 5.0)] and s.values("missing") == []
    points = s.values("a")
    points.append((9, 9.0))  # a caller's copy: the series is unchanged
    assert s.values("a")[-1] == (3, 4.0)


def test_settings_by_dotted_key():
    s = RunSeries(config={"rollout": {"max_staleness": 2}, "steps": 15})
    assert s.setting("rollout.max_staleness") == 2 and s.setting("steps") == 15
    assert s.setting("rollout.capacity", 7) == 7 and s.setting("steps.x", "d") == "d"
