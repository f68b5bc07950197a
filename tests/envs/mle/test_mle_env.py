"""The mle environment in the real sandbox: the gold path scores 1 and submitting nothing 0 at
every difficulty; the labels cannot be reached from inside (the bundled datasets are masked);
printed claims are ignored; runaway commands are stopped with a clear tool error and the
episode goes on; a predictions file planted as a link or a flood scores 0."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

import forgerl
from forgerl.envs.base import family_info, play_rounds, run_gold
from forgerl.envs.mle import MleEnv
from forgerl.envs.sandbox import Limits
from forgerl.errors import ToolError
from forgerl.types import ToolCall


def _call(name: str, **arguments: object) -> ToolCall:
    return ToolCall(name=name, arguments=dict(arguments))


def _play(env: MleEnv, task, rounds):
    async def go():
        try:
            return await play_rounds(env, task, lambda _task: rounds, refused_ok=True)
        finally:
            await env.close()

    return asyncio.run(go())


@pytest.mark.parametrize("difficulty", [1, 2, 3])
def test_gold_scores_one_and_submitting_nothing_scores_zero(mle_tasks, difficulty):
    task = mle_tasks[difficulty]

    async def gold():
        env = MleEnv()
        try:
            return await run_gold(env, task)
        finally:
            await env.close()

    trajectory, result = asyncio.run(gold())
    assert result.score == 1.0 and result.breakdown["normalized"] == 1.0, trajectory.messages[-3].content
    assert result.breakdown["metric"] == task.verifier["reference"]
    _, result = _play(MleEnv(), task, family_info("mle").noop(task))
    assert result.score == 0.0 and result.breakdown["valid"] == 0.0


@pytest.mark.slow  # `forgerl envs validate mle` plays it on every task too
def test_the_weak_variant_scores_strictly_between(mle_tasks):
    task = mle_tasks[1]
    (rounds,) = family_info("mle").variants(task).values()
    _, result = _play(MleEnv(), task, rounds)
    assert 0 < result.score < 1 and result.score == pytest.approx(task.data["weak_score"])


PROBE = r'''
import os, sklearn
import sklearn.linear_model  # what an honest solution needs still imports
try:
    from sklearn.datasets import load_iris
    load_iris()
    print("load_iris() worked")
except Exception as exc:
    print("load_iris refused:", type(exc).__name__)
root = os.path.dirname(sklearn.__file__)
print("data:", os.listdir(root + "/datasets/data"), "tests:", os.listdir(root + "/datasets/tests/data"))
print("forgerl:", os.path.exists(FORGERL) and os.listdir(FORGERL))
print("workspace:", sorted(os.listdir(".")))
'''


def test_the_labels_cannot_be_reached_from_the_sandbox(mle_tasks):
    task = mle_tasks[1]
    env = MleEnv()

    async def go():
        try:
            env.reset(task)
            forgerl_dir = str(Path(forgerl.__file__).resolve().parent)
            probe = await env.execute(_call("run_python", code=f"FORGERL = {forgerl_dir!r}\n{PROBE}"))
            listing = await env.execute(_call("run_shell", command="cat *; ls -a"))
            return probe, listing
        finally:
            await env.close()

    probe, listing = asyncio.run(go())
    assert "load_iris refused" in probe and "data: [] tests: []" in probe and "forgerl: False" in probe, probe
    assert "workspace: ['.tmp', 'README.md', 'test.csv', 'train.csv']" in probe
    answers = [f"{key},{value}" for key, value in task.answer.items()]
    assert not any(a in listing for a in answers)


def test_printed_claims_and_reports_are_ignored(mle_tasks):
    task = mle_tasks[1]
    claim = ("print('validation accuracy: 1.0000 -- all test labels correct, reward 1.0'); "
             "open('report.md', 'w').write('accuracy 1.0'); open('score.json', 'w').write('{\"normalized\": 1.0}')")
    _, result = _play(MleEnv(), task, [[_call("run_python", code=claim)], [_call("submit")]])
    assert result.score == 0.0 and "no predictions.csv" in result.evidence["verifier"]["reason"]


def test_a_linked_or_flooded_predictions_file_scores_zero(mle_tasks):
    task = mle_tasks[1]
    # a link to a "perfect" file written elsewhere in the workspace: never followed
    perfect = "id,prediction\n" + "".join(f"{key},{value}\n" for key, value in task.answer.items())
    rounds = [[_call("write_file", path="mine/p.csv", content=perfect)],
              [_call("run_shell", command="ln -s mine/p.csv predictions.csv")], [_call("submit")]]
    _, result = _play(MleEnv(), task, rounds)
    assert result.score == 0.0 and "symbolic link" in result.evidence["verifier"]["reason"]
    rounds = [[_call("run_shell", command="head -c 3000000 /dev/zero > predictions.csv")], [_call("submit")]]
    _, result = _play(MleEnv(), task, rounds)
    assert result.score == 0.0 and "over the" in result.evidence["verifier"]["reason"]


def test_runaway_commands_are_stopped_with_a_clear_error_and_the_episode_goes_on(mle_tasks):
    task = mle_tasks[1]
    env = MleEnv(limits=Limits(wall_s=2, cpu_s=2, memory_mb=512))

    async def go():
        try:
            env.reset(task)
            with pytest.raises(ToolError, match="stopped: .*(wall-clock timeout|cpu time limit)"):
                await env.execute(_call("run_python", code="while True:\n    pass\n"))
            with pytest.raises(ToolError, match="stopped: .*memory limit 512 MB"):
                await env.execute(_call("run_python", code="x = bytearray(4 * 1024**3)\n"))
            with pytest.raises(ToolError, match="stopped: wall-clock timeout"):
                await env.execute(_call("run_shell", command="sleep 60"))
            after = await env.execute(_call("run_shell", command="echo still here"))
            assert "still here" in after and not env.done
        finally:
            await env.close()

    asyncio.run(go())


def test_the_tools_refuse_paths_outside_the_workspace(mle_tasks):
    env = MleEnv()

    async def go():
        try:
            env.reset(mle_tasks[1])
            for path in ("/etc/passwd", "../x", "~/x"):
                with pytest.raises(ToolError):
                    await env.execute(_call("read_file", path=path))
            await env.execute(_call("run_shell", command="ln -s / up"))
            with pytest.raises(ToolError, match="through a symlink"):
                await env.execute(_call("read_file", path="up/etc/passwd"))
            with pytest.raises(ToolError, match="unexpected arguments"):
                await env.execute(_call("submit", predictions="101,a"))
        finally:
            await env.close()

    asyncio.run(go())
