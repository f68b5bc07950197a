"""`forgerl envs calibrate FAMILY --model M --tasks FILE`: measure each task's pass rate with a model
and write a calibrated difficulty back into the task file.

Each task of the file is run `n` times through the same agent loop as eval and training
(eval/run.py `run_tasks`). A pass is a scored episode with verifier outcome 1; episodes that failed
on infrastructure (engine, sandbox, verifier) are counted apart and left out of the rate. Each task
gets `data["calibration"] = {model, n, passed, failed_infra, pass_rate, ci95, band, at}` and its
`difficulty` from the pass-rate bands:

    pass rate >= 0.7  -> 1 (the model mostly solves it)
    pass rate >= 0.3  -> 2
    otherwise         -> 3 (rarely or never; `unsolved: true` when no episode passed)

A task whose episodes all failed on infrastructure keeps its difficulty; its calibration says so.

Write-back is a splice, not a re-serialisation: only the value of `difficulty` and of
`data.calibration` change on each line, every other byte of the file (other fields' formatting,
key order, blank lines, other families' float spellings) stays as it was. The new file is written
next to the old one and renamed over it (atomic); if the file changed while the model ran, nothing
is written and the run says so.

The model: `default`, a checkpoint directory or a run (the built-in loader, like `forgerl eval`),
or with `--url` a completions server speaking forgerl's token-id protocol (`forgerl serve`, vLLM's
OpenAI-compatible server); `--model` then names the tokenizer, which must be the server's.

Seeded families: export a task file first (`forgerl envs export terminal -n 48 --out FILE`;
48 consecutive terminal seeds cover every template x difficulty x hint variant).
"""

from __future__ import annotations

import asyncio
import datetime
import json
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from forgerl.envs.base import Task, family_info
from forgerl.envs.tasks import load_tasks
from forgerl.errors import ConfigError
from forgerl.stats import wilson_interval
from forgerl.types import TrajectoryStatus

if TYPE_CHECKING:
    from forgerl.engine.base import Engine
    from forgerl.types import Trajectory

BANDS = ((0.7, 1), (0.3, 2), (0.0, 3))
"""(lowest pass rate, difficulty), first match wins."""


def band(pass_rate: float) -> int:
    return next(level for low, level in BANDS if pass_rate >= low)


@dataclass
class TaskCalibration:
    task_id: str
    n: int = 0
    passed: int = 0
    failed_infra: int = 0

    @property
    def pass_rate(self) -> float | None:
        return self.passed / self.n if self.n else None

    def record(self, model: str, at: str) -> dict[str, Any]:
        rate = self.pass_rate
        low, high = wilson_interval(self.passed, self.n) if self.n else (0.0, 1.0)
        return {"model": model, "n": self.n, "passed": self.passed, "failed_infra": self.failed_infra,
                "pass_rate": None if rate is None else round(rate, 4), "ci95": [round(low, 4), round(high, 4)],
                "band": None if rate is None else band(rate), "unsolved": self.n > 0 and self.passed == 0, "at": at}


def tally(trajectories: list[Trajectory], task_ids: list[str]) -> dict[str, TaskCalibration]:
    """Per task id: scored episodes, passes (outcome 1) and infrastructure failures."""

    stats = {task_id: TaskCalibration(task_id) for task_id in task_ids}
    for traj in trajectories:
        entry = stats[traj.task_id]
        if traj.status == TrajectoryStatus.FAILED:
            entry.failed_infra += 1
        else:
            entry.n += 1
            entry.passed += traj.passed
    return stats


# --- the task file ------------------------------------------------------------------------------


def read_task_file(path: Path, family: str) -> tuple[list[Task], bytes]:
    """The tasks (validated by `load_tasks`: clear errors for a bad line) and the file's bytes."""
    if not path.is_file():
        raise ConfigError(f"task file {path} does not exist; for a seeded family write one first, e.g. "
                          f"`forgerl envs export {family} -n 48 --out {path}`")
    tasks = load_tasks(path)
    if not tasks:
        raise ConfigError(f"task file {path} holds no tasks; nothing to calibrate")
    others = sorted({t.family for t in tasks} - {family})
    if others:
        raise ConfigError(f"task file {path} holds tasks of {', '.join(others)}, not only {family!r}: "
                          f"calibrate one family per file (`forgerl envs calibrate FAMILY` names it)")
    return tasks, path.read_bytes()


def _members(text: str, start: int) -> tuple[dict[str, tuple[int, int]], int]:
    """The members of the JSON object opening at `text[start]`: {key: (value start, value end)},
    and the index of its closing brace. Values are skipped with the real decoder, so the spans are exact."""
    decoder = json.JSONDecoder()
    spans: dict[str, tuple[int, int]] = {}
    i = start + 1

    def skip(i: int) -> int:
        while text[i] in " \t\r\n":
            i += 1
        return i

    i = skip(i)
    if text[i] == "}":
        return spans, i
    while True:
        key, i = decoder.raw_decode(text, skip(i))
        i = skip(i)
        if text[i] != ":":
            raise ValueError(f"expected ':' at {i}")
        value_start = skip(i + 1)
        _, value_end = decoder.raw_decode(text, value_start)
        spans[key] = (value_start, value_end)
        i = skip(value_end)
        if text[i] == "}":
            return spans, i
        if text[i] != ",":
            raise ValueError(f"expected ',' or '}}' at {i}")
        i += 1


def _dump(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


def splice_line(line: str, calibration: dict[str, Any], difficulty: int | None) -> str:
    """`line` (one task object) with `data.calibration` set and, unless None, `difficulty`; every
    other byte unchanged."""
    body = line.rstrip("\r\n")
    ending = line[len(body):]
    start = len(body) - len(body.lstrip())
    top, close = _members(body, start)
    edits: list[tuple[int, int, str]] = []  # (start, end, replacement), applied right to left
    if difficulty is not None:
        if "difficulty" in top:
            edits.append((*top["difficulty"], str(difficulty)))
        else:
            edits.append((close, close, f',"difficulty":{difficulty}'))
    if "data" in top and body[top["data"][0]] == "{":
        data, data_close = _members(body, top["data"][0])
        if "calibration" in data:
            edits.append((*data["calibration"], _dump(calibration)))
        else:
            comma = "," if data else ""
            edits.append((data_close, data_close, f'{comma}"calibration":{_dump(calibration)}'))
    else:
        if "data" in top:
            raise ConfigError("the task's data field is not an object; fix the task file")
        edits.append((close, close, f',"data":{{"calibration":{_dump(calibration)}}}'))
    for begin, end, text in sorted(edits, reverse=True):
        body = body[:begin] + text + body[end:]
    expected = json.loads(line)
    expected.setdefault("data", {})["calibration"] = calibration
    if difficulty is not None:
        expected["difficulty"] = difficulty
    if json.loads(body) != expected:  # the splice must mean exactly the intended change
        raise ConfigError("internal error: the calibrated line does not parse back to the intended task")
    return body + ending


def write_back(path: Path, original: bytes, records: dict[str, tuple[dict[str, Any], int | None]]) -> int:
    """Splice `records` ({task id: (calibration, difficulty)}) into the file, atomically; returns
    how many lines changed. Refuses when the file is no longer what was read."""
    if path.read_bytes() != original:
        raise ConfigError(f"{path} changed while the model ran (someone else wrote it); nothing was written. "
                          "Run calibrate again")
    parts = original.decode("utf-8-sig").split("\n")  # not splitlines: a JSON string may hold U+2028
    lines = [part + "\n" for part in parts[:-1]] + ([parts[-1]] if parts[-1] else [])
    bom = "\ufeff" if original.startswith(b"\xef\xbb\xbf") else ""
    changed = 0
    for number, line in enumerate(lines):
        if not line.strip():
            continue
        task_id = json.loads(line).get("id")
        if task_id in records:
            lines[number] = splice_line(line, *records[task_id])
            changed += 1
    fd, temp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="") as out:
            out.write(bom + "".join(lines))
            out.flush()
            os.fsync(out.fileno())
        os.chmod(temp, path.stat().st_mode & 0o7777)
        os.replace(temp, path)
    except BaseException:
        Path(temp).unlink(missing_ok=True)
        raise
    return changed


# --- running the model --------------------------------------------------------------------------


def open_engine(model: str, *, url: str | None, chat_format: str, max_context: int, seed: int,
                api_key_env: str = "FORGERL_API_KEY", transport: Any = None) -> Engine:
    """The built-in loader for `default`/a directory/a run; with `url`, a client of that server
    (`model` names the tokenizer, never downloaded). `transport`: an httpx transport (tests)."""
    if url is None:
        from forgerl.engine import load_engine  # heavy: torch and transformers

        return load_engine(model, chat_format=chat_format, seed=seed, max_context=max_context)
    from forgerl.chat import get_format  # heavy: the chat formats, only when calibrating
    from forgerl.engine.remote import RemoteEngine  # heavy: httpx
    from forgerl.model.loading import BUILTIN_MODELS, TINY_RANDOM  # heavy: transformers, beside the tokenizer
    from forgerl.model.tokenizer import load_default_tokenizer, prepare_tokenizer  # heavy: transformers

    fmt = get_format(chat_format)
    if model in BUILTIN_MODELS:  # the shipped policy keeps the plain tokenizer
        tokenizer = prepare_tokenizer(load_default_tokenizer(digit_groups=TINY_RANDOM.get(model, False)), fmt)
    else:
        path = Path(model)
        if not (path / "tokenizer_config.json").is_file() and not (path / "tokenizer.json").is_file():
            raise ConfigError(f"--model {model!r}: with --url, --model names the server model's tokenizer "
                              "(a checkpoint directory, or 'default'); forgerl never downloads one")
        from transformers import AutoTokenizer

        tokenizer = prepare_tokenizer(AutoTokenizer.from_pretrained(path, local_files_only=True), fmt)
    stop = [tokenizer.convert_tokens_to_ids(fmt.end_of_message)]
    if tokenizer.eos_token_id is not None:
        stop.append(tokenizer.eos_token_id)
    return RemoteEngine(url, tokenizer, model_name=model, max_context=max_context, stop_token_ids=tuple(stop),
                        api_key=os.environ.get(api_key_env) or None, transport=transport)


def calibrate(family: str, tasks_path: str | Path, engine: Engine, *, model: str, n: int = 4,
              chat_format: str = "minimax_m2", max_turns: int = 12, max_tokens: int = 1024, temperature: float = 1.0,
              seed: int = 0, concurrency: int = 8, write: bool = True) -> dict[str, TaskCalibration]:
    """Run `engine` `n` times on every task of the file, tally pass rates, and (with `write`)
    splice the calibration into the file. Closes the engine."""
    from forgerl.chat import get_format  # heavy: the chat formats, only when calibrating
    from forgerl.engine.base import SamplingParams  # heavy: the engine stack
    from forgerl.eval.run import run_tasks  # heavy: the agent loop

    if n < 1:
        raise ConfigError(f"-n must be >= 1 (episodes per task), got {n}")
    family_info(family)
    path = Path(tasks_path)
    tasks, original = read_task_file(path, family)
    fmt = get_format(chat_format)
    episodes = [task for task in tasks for _ in range(n)]
    sampling = SamplingParams(max_tokens=max_tokens, temperature=temperature, seed=seed * 1000)

    async def main() -> list[Trajectory]:
        try:
            return await run_tasks(engine, fmt, family, episodes, sampling=sampling, max_turns=max_turns,
                                   max_total_tokens=engine.max_context, concurrency=concurrency,
                                   metadata={"calibration_model": model})
        finally:
            await engine.aclose()

    stats = tally(asyncio.run(main()), [t.id for t in tasks])
    if write:
        at = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        records = {}
        for task_id, entry in stats.items():
            record = entry.record(model, at)
            records[task_id] = (record, record["band"])
        write_back(path, original, records)
    return stats

