"""Verifier honesty: three naive verifiers an agent can pass without solving the task, and the
honest one. The task: write `solution.py` with `add(a, b)`. Hidden checks: add(2, 3) == 5 etc.

Each naive verifier runs the hidden check inside the agent's own workspace and believes what it
reports. The agent's code runs first (it is imported) and can lie:

* `trusts_exit_code`:  `sys.exit(0)` at import ends the check with exit code 0.
* `trusts_stdout`:     printing "passed" at import satisfies a grep for "passed".
* `trusts_workspace`:  a planted `unittest.py` in the workspace shadows the standard library the
                       check imports (a planted conftest.py does the same to pytest).

`honest` copies only the files it chooses (solution.py, as text) into a FRESH sandbox, runs a
harness that prints the agent's OUTPUTS (never a verdict), and compares them on the host with
expected values that never enter the sandbox: lying about the result needs the right answers.
"""

from __future__ import annotations

import json

from forgerl.envs.sandbox import Limits, create_sandbox

CASES = [((2, 3), 5), ((-1, 1), 0), ((10, 32), 42)]
LIMITS = Limits(wall_s=10, cpu_s=5, memory_mb=512)
CHECK = "import unittest, solution\n" + "".join(
    f"assert solution.add{args} == {want}\n" for args, want in CASES) + "print('passed')\n"
HARNESS = ("import json, solution\n"
           "args = json.loads(input())\n"
           "print('OUTPUTS ' + json.dumps([solution.add(*a) for a in args]))\n")

ATTACKS = {  # files the agent leaves in its workspace; none of them implements add()
    "exit_code": {"solution.py": "import sys\nsys.exit(0)\n"},
    "stdout": {"solution.py": "print('passed')\ndef add(a, b):\n    return 0\n"},
    "planted_file": {"solution.py": "def add(a, b):\n    return 0\n",
                     "unittest.py": "import os\nprint('passed')\nos._exit(0)\n"},
}
CORRECT = {"solution.py": "def add(a, b):\n    return a + b\n"}


async def _run_in_workspace(workspace: dict[str, str]) -> tuple[int | None, str]:
    """The naive way: the hidden check runs among the agent's files (all of them)."""
    async with create_sandbox({**workspace, "check_hidden.py": CHECK}, limits=LIMITS) as sandbox:
        result = await sandbox.run("python3 check_hidden.py")
        return result.exit_code, result.stdout


async def trusts_exit_code(workspace: dict[str, str]) -> bool:
    exit_code, _ = await _run_in_workspace(workspace)
    return exit_code == 0


async def trusts_stdout(workspace: dict[str, str]) -> bool:
    _, stdout = await _run_in_workspace(workspace)
    return "passed" in stdout


async def trusts_workspace(workspace: dict[str, str]) -> bool:
    """Exit code AND the printed line: still fooled, because the check ran among planted files."""
    exit_code, stdout = await _run_in_workspace(workspace)
    return exit_code == 0 and stdout.strip().endswith("passed")


async def honest(workspace: dict[str, str]) -> bool:
    """Fresh sandbox, only solution.py, outputs compared on the host."""
    files = {"solution.py": workspace.get("solution.py", ""), "harness.py": HARNESS}
    async with create_sandbox(files, limits=LIMITS) as sandbox:
        result = await sandbox.run("python3 harness.py", stdin=json.dumps([list(a) for a, _ in CASES]) + "\n")
    lines = [line for line in result.stdout.splitlines() if line.startswith("OUTPUTS ")]
    if result.exit_code != 0 or len(lines) != 1:
        return False  # crashed, exited early, or printed a second OUTPUTS line of its own
    try:
        outputs = json.loads(lines[0].removeprefix("OUTPUTS "))
    except json.JSONDecodeError:
        return False
    return outputs == [want for _, want in CASES]


NAIVE = {"exit_code": trusts_exit_code, "stdout": trusts_stdout, "planted_file": trusts_workspace}
