"""`forgerl envs calibrate`: pass rates per task against a scripted policy (in process, and behind
a fake completions server), the write-back that changes only the calibrated values, and clear
errors for bad task files. Also `forgerl envs export`, which writes a seeded family's task file."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from typer.testing import CliRunner

from forgerl.chat import get_format
from forgerl.cli.calibrate import band, calibrate, open_engine, splice_line
from forgerl.cli.main import app
from forgerl.engine.scripted import ScriptedEngine
from forgerl.envs.tasks import load_tasks, save_tasks
from forgerl.envs.terminal import generate_task, seed_of
from forgerl.errors import ConfigError
from forgerl.stats import wilson_interval
from forgerl.types import Message, ToolCall

FMT = get_format("minimax_m2")
MARKERS = {"How many requests": "always", "Move every log file": "never", "Make `bin/deploy.sh` executable": "alternate"}


def _tasks():
    return [generate_task(seed_of(t, 0, False), 1) for t in ("text", "files", "permissions")]


class Policy:
    """Episodes run one at a time: solve with the gold path ('always'), submit at once ('never'),
    or every other episode ('alternate'), recognising the task by its request."""

    def __init__(self, tasks) -> None:
        self.gold = {MARKERS[m]: t.gold[0][0] for t in tasks for m in MARKERS if m in t.prompt}
        self.episodes = {"always": 0, "never": 0, "alternate": 0}
        self.pending_submit = False

    def __call__(self, prompt: str) -> str:
        if self.pending_submit:
            self.pending_submit = False
            return self._say(ToolCall(name="submit", arguments={}))
        kind = next(k for m, k in MARKERS.items() if m in prompt)
        self.episodes[kind] += 1
        solve = kind == "always" or (kind == "alternate" and self.episodes[kind] % 2 == 1)
        if solve:
            self.pending_submit = True
            return self._say(self.gold[kind])
        return self._say(ToolCall(name="submit", arguments={}))

    @staticmethod
    def _say(call: ToolCall) -> str:
        return FMT.render_assistant_body(Message(role="assistant", reasoning="Working on it.", tool_calls=[call]))


def _write_file(path: Path, tasks) -> list[str]:
    """A task file in three spellings: compact, spaced with ASCII escapes, and compact with odd
    bytes (a float written 1.50, a raw U+2028 in a string), plus a blank line."""
    save_tasks(path, tasks)
    lines = path.read_text(encoding="utf-8").split("\n")[:3]
    lines[1] = json.dumps(json.loads(lines[1]))  # ", " and ": " separators, \\u escapes
    lines[2] = lines[2].replace('"data":{', '"data":{"weight":1.50,"note":"caf\u00e9\u2028ok",', 1)
    text = lines[0] + "\n\n" + lines[1] + "\n" + lines[2] + "\n"
    path.write_text(text, encoding="utf-8")
    return [lines[0], lines[1], lines[2]]


def _unspliced(new_line: str, calibration: dict) -> str:
    dumped = json.dumps(calibration, ensure_ascii=False, separators=(",", ":"))
    assert dumped in new_line
    text = new_line.replace(',"calibration":' + dumped, "")
    return re.sub(r'("difficulty":\s*)\d+', r"\g<1>1", text)


def _check_results(stats, path: Path, before: list[str]) -> None:
    by_id = {s.task_id: s for s in stats.values()}
    text, files, perms = (t.id for t in _tasks())
    assert (by_id[text].passed, by_id[text].n) == (4, 4)
    assert (by_id[files].passed, by_id[files].n) == (0, 4)
    assert (by_id[perms].passed, by_id[perms].n) == (2, 4)
    after = [line for line in path.read_text(encoding="utf-8").split("\n")]
    assert after[1] == "" and after[-1] == ""  # the blank line and the final newline kept
    rows = [json.loads(line) for line in after if line]
    calib = {r["id"]: r["data"]["calibration"] for r in rows}
    assert calib[perms]["pass_rate"] == 0.5 and calib[perms]["ci95"] == [round(x, 4) for x in wilson_interval(2, 4)]
    assert [calib[i]["band"] for i in (text, files, perms)] == [1, 3, 2]
    assert calib[files]["unsolved"] is True and calib[text]["unsolved"] is False
    assert {r["id"]: r["difficulty"] for r in rows} == {text: 1, files: 3, perms: 2}
    for old, new in zip(before, [line for line in after if line], strict=True):
        assert _unspliced(new, calib[json.loads(new)["id"]]) == old  # every other byte as it was
    assert '"weight":1.50' in after[3] and "\u2028" in after[3]
    assert len(load_tasks(path)) == 3


def test_pass_rates_and_write_back_with_a_scripted_engine(tokenizer, tmp_path: Path) -> None:
    tasks, path = _tasks(), tmp_path / "tasks.jsonl"
    before = _write_file(path, tasks)
    engine = ScriptedEngine(tokenizer, [Policy(tasks)], cycle=True, max_context=16384)
    stats = calibrate("terminal", path, engine, model="scripted", n=4, concurrency=1, max_tokens=2000)
    _check_results(stats, path, before)
    assert json.loads(path.read_text().split("\n")[0])["data"]["calibration"]["model"] == "scripted"


def test_pass_rates_through_a_fake_completions_server(tmp_path: Path) -> None:
    import httpx

    tasks, path = _tasks(), tmp_path / "tasks.jsonl"
    before = _write_file(path, tasks)
    policy, seen = Policy(tasks), []
    holder: dict = {}

    def handle(request: httpx.Request) -> httpx.Response:
        body = json.loads(request.content)
        seen.append(request.url.path)
        tok = holder["engine"].tokenizer
        ids = tok.encode(policy(tok.decode(body["prompt"], skip_special_tokens=False)), add_special_tokens=False)
        return httpx.Response(200, json={"choices": [{"token_ids": ids, "logprobs": {"token_logprobs": [-0.1] * len(ids)},
                                                      "finish_reason": "stop"}],
                                         "usage": {"prompt_tokens": len(body["prompt"]), "completion_tokens": len(ids)}})

    engine = open_engine("default", url="http://fake.test", chat_format="minimax_m2", max_context=16384, seed=0,
                         transport=httpx.MockTransport(handle))
    holder["engine"] = engine
    stats = calibrate("terminal", path, engine, model="http://fake.test", n=4, concurrency=1, max_tokens=2000)
    assert seen and set(seen) == {"/v1/completions"}
    _check_results(stats, path, before)


def test_bands() -> None:
    assert [band(p) for p in (1.0, 0.7, 0.69, 0.3, 0.29, 0.0)] == [1, 1, 2, 2, 3, 3]


def test_splice_adds_missing_fields_and_replaces_an_old_calibration() -> None:
    line = '{"id": "a", "family": "terminal", "prompt": "p"}\n'
    once = splice_line(line, {"n": 1}, 2)
    assert once == '{"id": "a", "family": "terminal", "prompt": "p","data":{"calibration":{"n":1}},"difficulty":2}\n'
    twice = splice_line(once, {"n": 2}, None)
    assert json.loads(twice)["data"] == {"calibration": {"n": 2}} and json.loads(twice)["difficulty"] == 2
    with pytest.raises(ConfigError, match="not an object"):
        splice_line('{"id":"a","data":[1]}', {"n": 1}, 1)


def test_bad_task_files_are_clear_errors(tokenizer, tmp_path: Path) -> None:
    engine = ScriptedEngine(tokenizer, [])
    with pytest.raises(ConfigError, match="does not exist.*forgerl envs export terminal"):
        calibrate("terminal", tmp_path / "missing.jsonl", engine, model="m")
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"id": "x", "family": "terminal", "prompt": "p"}\n{not json\n')
    with pytest.raises(ConfigError, match=r"bad.jsonl:2: not valid JSON"):
        calibrate("terminal", bad, engine, model="m")
    other = tmp_path / "other.jsonl"
    save_tasks(other, [generate_task(0, 1).model_copy(update={"family": "arithmetic"})])
    with pytest.raises(ConfigError, match="holds tasks of arithmetic, not only 'terminal'"):
        calibrate("terminal", other, engine, model="m")
    empty = tmp_path / "empty.jsonl"
    empty.write_text("\n")
    with pytest.raises(ConfigError, match="holds no tasks"):
        calibrate("terminal", empty, engine, model="m")
    save_tasks(other, [generate_task(0, 1)])
    with pytest.raises(ConfigError, match="-n must be >= 1"):
        calibrate("terminal", other, engine, model="m", n=0)


def test_export_writes_every_template_difficulty_and_variant(tmp_path: Path) -> None:
    out = tmp_path / "terminal.jsonl"
    result = CliRunner().invoke(app, ["envs", "export", "terminal", "-n", "48", "--out", str(out)])
    assert result.exit_code == 0, result.output
    tasks = load_tasks(out)
    assert len({(t.data["template"], t.difficulty, t.data["variant"]) for t in tasks}) == 48
    result = CliRunner().invoke(app, ["envs", "calibrate", "terminal", "--tasks", str(tmp_path / "nope.jsonl")])
    assert result.exit_code != 0  # the CLI's error handler prints ConfigErrors; the runner keeps the exception
    assert isinstance(result.exception, ConfigError) and "does not exist" in str(result.exception)
