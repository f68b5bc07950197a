"""Which verifier judges an AppDev app, as configuration: the rubric executor or a model.

`AppDevVerifierConfig(kind="executor")` (the default) is the deterministic rubric executor
(executor.py `verify_app`), which works offline. `kind="model"` is the Agent-as-a-Verifier: a
model behind any engine forgerl can run drives the browser tools through forgerl's agent loop
(model_verifier.py is its episode, rollout/appdev_verifier.py runs it). The model's engine is
described by `VerifierModelConfig`, whose keys follow the run's `[engine]` table where they mean
the same thing, but it is its own table: the verifier is not the policy, so nothing here pushes
weights to it, and a remote verifier server keeps serving its own model.

Whoever runs episodes builds the verifier once from this config
(`forgerl.rollout.appdev_verifier.open_app_verifier`) and hands it to the family: envs/ may not
import the agent loop or engines (tests/test_rooms.py), so the appdev environment takes any
`AppVerifier` callable and `set_app_verifier` makes one the process's choice for environments
made by the family registry (as families themselves are registered per process).

Secrets never live in this config: a remote server's API key is read from the environment
variable named by `api_key_env` when the engine is opened.
"""

from __future__ import annotations

from collections.abc import Awaitable
from pathlib import Path
from typing import Literal, Protocol

from pydantic import BaseModel, ConfigDict, Field, model_validator

from forgerl.envs.appdev.rubric import AppReport, Rubric

__all__ = ["AppDevVerifierConfig", "AppVerifier", "VerifierModelConfig", "VisionJudgeConfig", "app_verifier_override",
           "evidence_root", "set_app_verifier", "set_evidence_root"]


class _Config(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class VerifierModelConfig(_Config):
    """The verifier model's engine. `builtin`: `model` (a built-in name such as `default`, an HF
    checkpoint directory or a run reference) loaded in this process. `remote`: a completions server
    at `url` speaking forgerl's token-id protocol (`forgerl serve`, or vLLM's OpenAI-compatible
    server); `model` then names the tokenizer to encode with, which must be the server's."""

    kind: Literal["builtin", "remote"] = "builtin"
    model: str = "default"
    url: str | None = None
    """remote: the server's base URL, e.g. http://127.0.0.1:8000."""
    api_key_env: str = "FORGERL_API_KEY"
    """remote: the environment variable holding the server's API key (unset: no key sent)."""
    chat_format: str = "minimax_m2"
    device: str = "auto"
    """builtin: where the model runs."""
    max_context: int = Field(16384, ge=512)
    max_tokens: int = Field(1024, ge=16)
    """Per reply of the verifier model."""
    temperature: float = Field(0.0, ge=0)
    """0 = greedy: the same app gets the same verdicts from the same model."""
    timeout_s: float = Field(300.0, gt=0)
    """remote: per request."""

    @model_validator(mode="after")
    def _url_for_remote(self) -> VerifierModelConfig:
        if self.kind == "remote" and not self.url:
            raise ValueError("verifier.model.url: missing (kind 'remote' needs the server's base URL)")
        if self.kind == "builtin" and self.url:
            raise ValueError("verifier.model.url applies to kind 'remote' only (a builtin model runs in this process)")
        return self


class VisionJudgeConfig(_Config):
    """An optional model judge on the screenshots of visual items: an OpenAI-compatible chat
    endpoint that accepts images. Not configured (the default): the visual items are decided by
    the measured checks alone, and each visual verdict records that the judge was skipped."""

    url: str
    model: str
    api_key_env: str = "OPENAI_API_KEY"


class AppDevVerifierConfig(_Config):
    """Who judges an AppDev app (`kind`), and the model verifier's budgets."""

    kind: Literal["executor", "model"] = "executor"
    model: VerifierModelConfig | None = None
    """kind "model": the verifier model's engine."""
    max_turns: int = Field(40, ge=2)
    """LLM calls of one verification (each may run several browser tools in parallel)."""
    tool_timeout_s: float = Field(30.0, gt=0)
    """Per browser tool call of the model verifier."""
    wall_s: float = Field(900.0, gt=0)
    """The whole model verification; past it the verification is a VerifierError (a slow verifier
    model is not the app's fault), never a zero."""
    vision_judge: VisionJudgeConfig | None = None
    keep_evidence: bool = False
    """Keep every verification's screenshots under the run directory (`appdev-evidence/`), so the
    review app shows them inline; off by default (about 0.2 MB per episode). The per-item verdicts
    (actions, DOM excerpts, console lines) are on the trajectory either way."""

    @model_validator(mode="after")
    def _model_for_model(self) -> AppDevVerifierConfig:
        if self.kind == "model" and self.model is None:
            raise ValueError("verifier.model: missing (kind 'model' needs the verifier model's engine, e.g. "
                             "model = {kind = 'remote', url = 'http://127.0.0.1:8000', model = 'default'})")
        if self.kind == "executor" and self.model is not None:
            raise ValueError("verifier.model applies to kind 'model' only; the rubric executor uses no model")
        return self


class AppVerifier(Protocol):
    """Judges one app: `await verifier(files, rubric, request, evidence_dir)` -> AppReport. Raises
    forgerl.errors.VerifierError when the verification itself cannot run (never a zero)."""

    def __call__(self, files: dict[str, str], rubric: Rubric, request: str,
                 evidence_dir: Path | None) -> Awaitable[AppReport]: ...


_OVERRIDE: list[AppVerifier | None] = [None]
_EVIDENCE_ROOT: list[Path | None] = [None]


def set_app_verifier(verifier: AppVerifier | None) -> None:
    """Make `verifier` judge every appdev environment this process makes from now on (None: back
    to the rubric executor). The run wires its configured verifier here once."""
    _OVERRIDE[0] = verifier


def app_verifier_override() -> AppVerifier | None:
    """The verifier `set_app_verifier` chose, or None for the default rubric executor."""
    return _OVERRIDE[0]


def set_evidence_root(root: Path | str | None) -> None:
    """Keep the screenshots of every appdev episode this process makes from now on under `root`
    (None: temporary, removed when the episode closes). The run wires `[verifier] keep_evidence`."""
    _EVIDENCE_ROOT[0] = None if root is None else Path(root)


def evidence_root() -> Path | None:
    """The directory `set_evidence_root` chose, or None."""
    return _EVIDENCE_ROOT[0]
