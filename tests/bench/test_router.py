"""`forgerl bench router` on a tiny workload: every column runs, sticky + group routing serves at
least as much of the prompt from cache as round-robin, and the workload's contexts extend turn by
turn with a prompt shared per group (no timing assertions: speed is judged by the printed ratios)."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from forgerl.bench.router import make_workload, run_router_bench
from forgerl.cli.main import app


def test_the_workload_shares_a_system_prompt_and_a_prompt_per_group():
    w = make_workload(3, 2, 4, 5, seed=1)
    assert w.rollouts == 6 and len(w.tasks) == 3 and len(w.tool_results) == 6
    assert len({tuple(t) for t in w.tasks}) == 3 and len(w.system) == 160
    assert make_workload(3, 2, 4, 5, seed=1) == w and make_workload(3, 2, 4, 5, seed=2) != w


def test_a_tiny_bench_prints_every_column_side_by_side(capsys):
    figures = run_router_bench(replicas=2, groups=2, group_size=2, turns=2, new_tokens=3)
    out = capsys.readouterr().out
    for column in ("round-robin", "sticky + group", "1 replica x 2 threads", "prompt tokens from cache"):
        assert column in out
    # the optimum here: 2nd rollout of a group reuses the group prompt, turn 2 reuses turn 1 (~70%)
    assert figures["sticky_hit_rate"] >= figures["round_robin_hit_rate"] and figures["sticky_hit_rate"] > 0.6
    assert figures["throughput_ratio"] > 0


@pytest.mark.parametrize(("args", "message"), [(["--replicas", "1"], "--replicas must be >= 2"),
                                               (["--turns", "0"], "must all be >= 1")])
def test_bad_options_are_refused_before_anything_starts(args, message):
    result = CliRunner().invoke(app, ["bench", "router", *args])
    assert result.exit_code != 0 and message in result.output + str(result.exception)
