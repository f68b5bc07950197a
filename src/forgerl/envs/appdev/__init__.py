"""The `appdev` task family: build the web app a user asks for; judged in a real browser.

Importing this package registers the family. Modules: `rubric` (the hidden rubric and the
verdicts), `templates` (the apps users ask for: params, request, rubric, reference app and its
broken variants), `generator` (seeded tasks with a difficulty dial), `env` (the workspace, its
tools and `submit`), `session`/`browser`/`executor` (the browser and the deterministic rubric
executor), `model_verifier`/`verifier_config` (a model as the verifier). Playwright is imported
only when an app is verified.
"""

from forgerl.envs.appdev.env import TOOLS, AppDevEnv
from forgerl.envs.appdev.generator import (
    DIFFICULTIES,
    FAMILY,
    broken_variants,
    generate_task,
    gold_files,
    sample_task,
    task_rubric,
)
from forgerl.envs.appdev.templates import TEMPLATES, VARIANTS
from forgerl.envs.base import Family, Task, register_family, submit_nothing
from forgerl.types import ToolCall

__all__ = [
    "APPDEV_FAMILY", "DIFFICULTIES", "FAMILY", "TEMPLATES", "TOOLS", "VARIANTS", "AppDevEnv", "broken_variants",
    "generate_task", "gold_files", "sample_task", "task_rubric", "variant_scripts",
]


def _write_then_submit(files: dict[str, str]) -> list[list[ToolCall]]:
    writes = [ToolCall(name="write_file", arguments={"path": path, "content": text}) for path, text in files.items()]
    return [writes, [ToolCall(name="submit", arguments={})]]


def variant_scripts(task: Task) -> dict[str, list[list[ToolCall]]]:
    """Each broken variant of the task's reference app, written and submitted like the gold path."""
    return {name: _write_then_submit(files) for name, files in broken_variants(task).items()}


APPDEV_FAMILY = Family(
    name=FAMILY,
    make_env=AppDevEnv,
    sample_task=sample_task,
    description="Build a web app (HTML/CSS/JS, or a Python stdlib server) judged in a real browser. Difficulty 1-3.",
    difficulties=DIFFICULTIES,
    generate=generate_task,
    noop=submit_nothing("submit"),  # submit the empty workspace
    variants=variant_scripts,
    validation_cost="every episode is verified in a headless browser (seconds each)",
)
register_family(APPDEV_FAMILY)
