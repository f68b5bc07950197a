"""Task sets and the protocol around them: JSONL round trips, clear errors on bad files, seeded
generators with difficulty cycling, backward-compatible tasks, and closable environments."""

from __future__ import annotations

import asyncio
import json

import pytest

from forgerl.envs.arithmetic import ArithmeticEnv
from forgerl.envs.base import make_env, run_gold, sample_task
from forgerl.envs.noise import NoiseConfig
from forgerl.envs.tasks import generate_tasks, load_tasks, save_tasks
from forgerl.errors import ConfigError
from forgerl.types import ToolCall


def test_jsonl_round_trip_keeps_every_field(tmp_path):
    tasks = generate_tasks("tool-reasoning", 10, seed=4) + generate_tasks("arithmetic", 3, seed=4)
    custom = tasks[0].model_copy(update={
        "id": "custom", "files": {"src/a.py": "x = 1\n"}, "verifier": {"type": "exact_number", "tolerance": 0.5},
        "gold": [[ToolCall(id="c1", name="submit_answer", arguments={"answer": tasks[0].answer})]],
    })
    path = tmp_path / "sets" / "mixed.jsonl"
    assert save_tasks(path, [*tasks, custom]) == 14
    assert len(path.read_text().splitlines()) == 14
    assert load_tasks(path) == [*tasks, custom]


def test_a_task_written_before_the_new_fields_still_loads(tmp_path):
    old = {"id": "arithmetic-1", "family": "arithmetic", "prompt": "p", "data": {"steps": ["1+1"], "expression": "2*2"},
           "answer": 4}
    path = tmp_path / "old.jsonl"
    path.write_text(json.dumps(old) + "\n\n")
    (task,) = load_tasks(path)
    assert task.files == {} and task.tools == [] and task.verifier == {} and task.difficulty == 1 and task.gold is None
    _, result = asyncio.run(run_gold(make_env("arithmetic"), task))
    assert result.score == 1.0  # the default verifier spec is exact_number


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("{not json", r"bad.jsonl:2: not valid JSON"),
        ('{"id": "x", "family": "arithmetic"}', r"bad.jsonl:2: not a valid task \(prompt: Field required\)"),
        ('{"id": "x", "family": "arithmetic", "prompt": "p", "difficulty": 0}', r"difficulty: Input should be greater"),
        ('{"id": "x", "family": "arithmetic", "prompt": "p", "colour": 1}', r"colour: Extra inputs"),
        ('{"id": "a", "family": "arithmetic", "prompt": "p"}', r"bad.jsonl:2: task id 'a' already used on line 1"),
    ],
)
def test_bad_lines_are_reported_with_file_and_line(tmp_path, line, message):
    path = tmp_path / "bad.jsonl"
    path.write_text('{"id": "a", "family": "arithmetic", "prompt": "p"}\n' + line + "\n")
    with pytest.raises(ConfigError, match=message):
        load_tasks(path)


_GOOD = '{"id": "a", "family": "arithmetic", "prompt": "p"}\n'


def _task_file(tmp_path, second_line: bytes):
    path = tmp_path / "hostile.jsonl"
    path.write_bytes(_GOOD.encode() + second_line + b"\n")
    return path


def test_a_non_utf8_byte_names_file_line_column_and_byte(tmp_path):
    path = _task_file(tmp_path, b'{"id": "b", "family": "arithmetic", "prompt": "\xc3\xa9 caf\xe9"}')
    with pytest.raises(ConfigError, match=r"hostile.jsonl:2: column 53 \(byte 54 of the line\) is not UTF-8 "
                                          r"\(byte 0xe9\); save the task file as UTF-8"):
        load_tasks(path)


def test_deep_nesting_is_a_config_error_not_a_recursion_error(tmp_path):
    path = _task_file(tmp_path, b"[" * 100_000 + b"]" * 100_000)
    with pytest.raises(ConfigError, match=r"hostile.jsonl:2: .*nested deeper than 64 levels"):
        load_tasks(path)


def test_nesting_that_json_parses_but_is_too_deep_is_refused(tmp_path):
    deep = '{"id": "b", "family": "arithmetic", "prompt": "p", "data": {"x": ' + "[" * 80 + "]" * 80 + "}}"
    with pytest.raises(ConfigError, match=r"hostile.jsonl:2: .*nested deeper than 64 levels"):
        load_tasks(_task_file(tmp_path, deep.encode()))


def test_an_unknown_family_is_refused_at_load_time_listing_the_known_ones(tmp_path):
    path = _task_file(tmp_path, b'{"id": "b", "family": "no-such-family", "prompt": "p"}')
    with pytest.raises(ConfigError, match=r"hostile.jsonl:2: unknown task family 'no-such-family'; "
                                          r"known families: .*arithmetic.*tool-reasoning"):
        load_tasks(path)


def test_a_giant_line_is_refused_without_reading_it_whole(tmp_path):
    path = _task_file(tmp_path, b'{"id": "b", "family": "arithmetic", "prompt": "' + b"x" * 5000 + b'"}')
    with pytest.raises(ConfigError, match=r"hostile.jsonl:2: line longer than 4096 bytes"):
        load_tasks(path, max_line_bytes=4096)
    assert len(load_tasks(path)) == 2  # the default limit is far above any real task


def test_a_giant_file_is_refused_before_reading(tmp_path):
    path = _task_file(tmp_path, b"")
    with pytest.raises(ConfigError, match=r"hostile.jsonl is 52 bytes; task files are limited to 10 bytes"):
        load_tasks(path, max_file_bytes=10)


def test_an_unpaired_surrogate_escape_is_refused(tmp_path):
    path = _task_file(tmp_path, b'{"id": "b", "family": "arithmetic", "prompt": "\\ud800"}')
    with pytest.raises(ConfigError, match=r"hostile.jsonl:2: .*unpaired surrogate"):
        load_tasks(path)


def test_a_byte_order_mark_at_the_start_is_accepted(tmp_path):
    path = tmp_path / "bom.jsonl"
    path.write_bytes(b"\xef\xbb\xbf" + _GOOD.encode())
    assert [t.id for t in load_tasks(path)] == ["a"]


def test_missing_file_says_how_to_make_one(tmp_path):
    with pytest.raises(ConfigError, match="does not exist; write one with save_tasks"):
        load_tasks(tmp_path / "none.jsonl")


def test_generated_sets_are_seeded_and_cycle_difficulties():
    first = generate_tasks("tool-reasoning", 12, seed=7)
    assert first == generate_tasks("tool-reasoning", 12, seed=7)
    assert [t.difficulty for t in first] == [1, 2, 3, 4, 5] * 2 + [1, 2]
    assert len({t.id for t in first}) == 12
    assert {t.id for t in first}.isdisjoint(t.id for t in generate_tasks("tool-reasoning", 12, seed=8))
    assert {t.difficulty for t in generate_tasks("tool-reasoning", 5, seed=0, difficulty=4)} == {4}
    assert [t.family for t in generate_tasks("arithmetic", 3)] == ["arithmetic"] * 3
    with pytest.raises(ConfigError, match=r"difficulties \[1\], got 3"):
        generate_tasks("arithmetic", 2, difficulty=3)
    with pytest.raises(KeyError, match="registered families"):
        generate_tasks("nope", 1)


def test_sample_task_keeps_its_old_signature_and_takes_a_difficulty():
    assert sample_task("arithmetic", 3) == sample_task("arithmetic", seed=3)
    assert sample_task("tool-reasoning", 3, difficulty=2).difficulty == 2
    with pytest.raises(ValueError, match="has difficulties"):
        sample_task("tool-reasoning", 3, difficulty=9)


class _Resource(ArithmeticEnv):
    """An environment holding something to release (what a sandbox-backed family looks like)."""

    def __init__(self) -> None:
        super().__init__()
        self.closed = 0

    async def close(self) -> None:
        self.closed += 1


def test_environments_are_async_closable():
    async def use() -> _Resource:
        async with _Resource() as env:
            assert env.closed == 0
        return env

    assert asyncio.run(use()).closed == 1
    assert asyncio.run(make_env("tool-reasoning").close()) is None  # the default close is a no-op
    noisy = make_env("arithmetic", noise=NoiseConfig(failure_rate=0.5))
    noisy.inner = _Resource()
    asyncio.run(noisy.close())
    assert noisy.inner.closed == 1  # a wrapper passes close() through to what it wraps
