"""Running the model-backed AppDev verifier: a QA model's episode through forgerl's agent loop.

`verify_with_model` serves the app (the same browser and isolation the rubric executor uses),
runs the built-in execution gate itself, then lets the verifier model test the app through the
browser tools (`envs/appdev/model_verifier.py` is the episode's environment) with the ordinary
agent loop (`agent/loop.py run_episode`), so any engine forgerl can run is a verifier: the
built-in engine, a `forgerl serve` server, vLLM's OpenAI-compatible server. Its answer is an
`AppReport` like the executor's, with `verifier = "model:<name>"`.

Failure rule (DESIGN contract 4): if the episode fails at an infrastructure boundary (the engine
is down or errs, the browser crashed) or outlasts `wall_s`, the verification raises
VerifierError: the app is not charged a zero for it. (The app cannot stall the verifier: every
browser action has its own short timeout and a stuck one is the app's failed action; what can
outlast the wall time is a slow verifier model.) A model that ends its episode without judging every item (a final answer,
the turn or context budget, unparsable outputs) has checked nothing for those items: they fail
with reason "no verdict" and say how the episode ended.

Lives in rollout/ because it runs episodes (envs/ may not import the agent loop or engines);
`open_app_verifier` turns an `AppDevVerifierConfig` into the callable the appdev family takes.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import tempfile
import time
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager
from pathlib import Path
from typing import Any

from forgerl.agent.loop import run_episode
from forgerl.chat import get_format
from forgerl.chat.base import ChatFormat
from forgerl.engine.base import Engine, SamplingParams
from forgerl.envs.appdev.executor import run_gate
from forgerl.envs.appdev.model_verifier import AppVerifierEnv, ObservationLimits, not_checked, verifier_task
from forgerl.envs.appdev.rubric import AppReport, Rubric, ServerSpec, require_presence
from forgerl.envs.appdev.session import BrowserSession
from forgerl.envs.appdev.verifier_config import (
    AppDevVerifierConfig,
    AppVerifier,
    VerifierModelConfig,
    VisionJudgeConfig,
)
from forgerl.envs.appdev.vision_judge import judge_visual_items
from forgerl.envs.base import Task
from forgerl.errors import ConfigError, VerifierError
from forgerl.types import Trajectory, TrajectoryStatus

__all__ = ["ModelAppVerifier", "SessionFactory", "open_app_verifier", "open_verifier_engine", "run_model_verifier",
           "verify_with_model"]

SessionFactory = Callable[[dict[str, str], ServerSpec, Path | None], AbstractAsyncContextManager[BrowserSession]]
"""`factory(files, server, evidence_dir)`: serve the app and open a browser session on it."""

GATE_FAILED = "not checked: the execution gate failed"


async def run_model_verifier(
    files: dict[str, str], rubric: Rubric, request: str, *, engine: Engine, chat_format: ChatFormat | str,
    max_turns: int = 40, max_tokens: int = 1024, temperature: float = 0.0, max_total_tokens: int | None = None,
    tool_timeout_s: float = 30.0, wall_s: float = 900.0, evidence_dir: Path | None = None,
    session_factory: SessionFactory | None = None, limits: ObservationLimits | None = None,
    vision_judge: VisionJudgeConfig | None = None, judge_transport: Any = None,
) -> tuple[AppReport, Trajectory | None]:
    """The report, and the verifier model's own trajectory (None when the gate failed and the
    model was not asked). `vision_judge`: also judge the visual items on screenshots
    (envs/appdev/vision_judge.py; `judge_transport` is an httpx transport for tests). See the
    module docstring for what raises."""
    start = time.perf_counter()
    fmt = get_format(chat_format) if isinstance(chat_format, str) else chat_format
    sampling = SamplingParams(max_tokens=max_tokens, temperature=temperature)
    trajectory = None
    with contextlib.ExitStack() as stack:
        if vision_judge is not None and evidence_dir is None:  # the judge reads the screenshots back
            evidence_dir = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="forgerl-judge-")))
        async with (session_factory or _browser_session)(files, rubric.server, evidence_dir) as session:
            gate = await run_gate(session, rubric)
            if not gate.passed:
                items = not_checked(rubric, GATE_FAILED)
            else:
                env = AppVerifierEnv(session, rubric, request, limits=limits)
                trajectory = await _episode(env, engine, fmt, verifier_task(rubric, request), sampling, max_turns,
                                            max_total_tokens or engine.max_context, tool_timeout_s, wall_s)
                items = env.item_verdicts(ended="" if env.done else trajectory.end_reason)
                items = await judge_visual_items(session, rubric.items, items, vision_judge, rubric.server.entry,
                                                 evidence_dir, transport=judge_transport)
            peak = getattr(getattr(session, "watch", None), "peak_mb", None)  # the real browser's memory watch
    report = AppReport(gate=gate, items=require_presence(rubric, items), verifier=f"model:{engine.model_name}",
                       seconds=round(time.perf_counter() - start, 3),
                       browser_peak_rss_mb=round(peak, 1) if isinstance(peak, float) else None)
    return report, trajectory


async def _episode(env: AppVerifierEnv, engine: Engine, fmt: ChatFormat, task: Task, sampling: SamplingParams,
                   max_turns: int, max_total_tokens: int, tool_timeout_s: float, wall_s: float) -> Trajectory:
    """The verifier model's episode; VerifierError when it fails at an infrastructure boundary or
    outlasts `wall_s` (module docstring)."""
    trajectory = Trajectory()
    episode = run_episode(engine, fmt, env, task, sampling=sampling, max_turns=max_turns,
                          max_total_tokens=max_total_tokens, tool_timeout_s=tool_timeout_s, trajectory=trajectory)
    try:
        await asyncio.wait_for(episode, wall_s)
    except TimeoutError:
        raise VerifierError(f"the model verifier did not finish within {wall_s:g} s ({len(trajectory.calls)} "
                            "LLM calls made): give it more time (verifier.wall_s) or a faster engine") from None
    if trajectory.status == TrajectoryStatus.FAILED:
        failure = trajectory.failure
        where, why = (failure.boundary.value, failure.message) if failure is not None else ("unknown", trajectory.end_reason)
        raise VerifierError(f"the model verifier's episode failed at the {where} boundary: {why}")
    return trajectory


async def verify_with_model(files: dict[str, str], rubric: Rubric, request: str, *, engine: Engine,
                            chat_format: ChatFormat | str, **options: Any) -> AppReport:
    """`run_model_verifier`'s report alone (options as there)."""
    report, _ = await run_model_verifier(files, rubric, request, engine=engine, chat_format=chat_format, **options)
    return report


@contextlib.asynccontextmanager
async def _browser_session(files: dict[str, str], server: ServerSpec,
                           evidence_dir: Path | None) -> AsyncIterator[BrowserSession]:
    """The real browser on the served app (envs/appdev/browser.py), as the rubric executor uses."""
    from forgerl.envs.appdev.browser import open_app  # heavy: playwright, only when a browser is opened

    async with open_app(files, server, evidence_dir=evidence_dir) as session:
        yield session


# --- from configuration ----------------------------------------------------------------------------

def open_verifier_engine(config: VerifierModelConfig) -> Engine:
    """The verifier model's engine: loaded here (`builtin`) or a client of a server (`remote`,
    no weight pushes: the server keeps its own model)."""
    if config.kind == "builtin":
        from forgerl.engine import load_engine  # heavy: torch and transformers, only for a builtin verifier

        return load_engine(config.model, chat_format=config.chat_format, device=config.device,
                           max_context=config.max_context)
    from forgerl.engine.remote import RemoteEngine  # heavy: httpx, only for a remote verifier

    tokenizer = _tokenizer(config.model, config.chat_format)
    stop = [tokenizer.convert_tokens_to_ids(get_format(config.chat_format).end_of_message)]
    if tokenizer.eos_token_id is not None:
        stop.append(tokenizer.eos_token_id)
    assert config.url is not None  # the config checks it
    return RemoteEngine(config.url, tokenizer, model_name=config.model, max_context=config.max_context,
                        stop_token_ids=tuple(stop), timeout_s=config.timeout_s,
                        api_key=os.environ.get(config.api_key_env) or None)


def _tokenizer(model: str, chat_format: str) -> Any:
    """The tokenizer of `model` prepared for `chat_format`, without loading the model's weights."""
    from forgerl.model.loading import BUILTIN_MODELS, TINY_RANDOM  # heavy: transformers, beside the tokenizer
    from forgerl.model.tokenizer import load_default_tokenizer, prepare_tokenizer  # heavy: transformers

    if model in BUILTIN_MODELS:  # the shipped policy keeps the plain tokenizer
        return prepare_tokenizer(load_default_tokenizer(digit_groups=TINY_RANDOM.get(model, False)), get_format(chat_format))
    path = Path(model)
    if not (path / "tokenizer_config.json").is_file() and not (path / "tokenizer.json").is_file():
        raise ConfigError(f"verifier.model.model = {model!r}: a remote verifier needs the server model's tokenizer "
                          "here (a checkpoint directory, or 'default'); forgerl never downloads one")
    from transformers import AutoTokenizer

    return prepare_tokenizer(AutoTokenizer.from_pretrained(path, local_files_only=True), get_format(chat_format))


class ModelAppVerifier:
    """An `AppVerifier` backed by a model: the engine is opened on first use and kept for every
    later verification of this process (loading a model per episode would dominate its cost)."""

    def __init__(self, config: AppDevVerifierConfig, *, engine: Engine | None = None,
                 session_factory: SessionFactory | None = None) -> None:
        if config.kind != "model" or config.model is None:
            raise ConfigError("ModelAppVerifier needs verifier kind 'model' with a model table")
        self.config, self.model = config, config.model
        self._engine, self._factory = engine, session_factory

    @property
    def engine(self) -> Engine:
        if self._engine is None:
            self._engine = open_verifier_engine(self.model)
        return self._engine

    async def __call__(self, files: dict[str, str], rubric: Rubric, request: str,
                       evidence_dir: Path | None) -> AppReport:
        return await verify_with_model(
            files, rubric, request, engine=self.engine, chat_format=self.model.chat_format,
            max_turns=self.config.max_turns, max_tokens=self.model.max_tokens, temperature=self.model.temperature,
            max_total_tokens=self.model.max_context, tool_timeout_s=self.config.tool_timeout_s, wall_s=self.config.wall_s,
            evidence_dir=evidence_dir, session_factory=self._factory, vision_judge=self.config.vision_judge)

    async def aclose(self) -> None:
        if self._engine is not None:
            await self._engine.aclose()


def open_app_verifier(config: AppDevVerifierConfig, *, session_factory: SessionFactory | None = None) -> AppVerifier:
    """The verifier `config` names: the rubric executor (`executor`) or a model (`model`)."""
    if config.kind == "model":
        return ModelAppVerifier(config, session_factory=session_factory)
    if session_factory is not None:
        raise ConfigError("the rubric executor opens its own browser; session_factory applies to kind 'model'")

    async def executor(files: dict[str, str], rubric: Rubric, request: str, evidence_dir: Path | None) -> AppReport:
        from forgerl.envs.appdev.executor import verify_app  # heavy: playwright, only when verifying

        return await verify_app(files, rubric, evidence_dir=evidence_dir)

    return executor
