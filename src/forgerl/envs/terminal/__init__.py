"""The `terminal` task family: seeded terminal work (files, text processing, processes,
permissions, archives, git, a broken build, a service config) with a setup script, one hidden
test, and hint/plain variants that share it (M2's Terminal-Gym).

Importing this package registers the family. Modules: `draft` (what a template produces),
`templates_fs` / `templates_dev` (the eight templates), `generator` (seeds, variants, the
difficulty estimate), `checks` (the hidden test's interpreter), `env` (the Environment).
"""

from forgerl.envs.base import Family, register_family
from forgerl.envs.terminal.env import TOOLS, TerminalEnv
from forgerl.envs.terminal.generator import (
    DIFFICULTIES,
    FAMILY,
    TEMPLATE_NAMES,
    estimate_difficulty,
    every_task,
    generate_task,
    sample_task,
    seed_of,
)
from forgerl.types import ToolCall

TERMINAL_FAMILY = Family(
    name=FAMILY,
    make_env=TerminalEnv,
    sample_task=sample_task,
    description="Terminal work in a sandbox: files, text, processes, permissions, archives, git, builds, "
                "service configs; one hidden test per task, hint/plain variants. Difficulty 1-3.",
    difficulties=DIFFICULTIES,
    generate=generate_task,
    noop=lambda task: [[ToolCall(name="submit", arguments={})]],
)
register_family(TERMINAL_FAMILY)

__all__ = ["DIFFICULTIES", "FAMILY", "TEMPLATE_NAMES", "TERMINAL_FAMILY", "TOOLS", "TerminalEnv",
           "estimate_difficulty", "every_task", "generate_task", "sample_task", "seed_of"]
