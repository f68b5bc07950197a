"""Running the reference solution at generation time, under the same conditions as the gold path.

The reward is normalised so that the reference solution scores exactly 1.0, which holds only if
the predictions the generator measured are byte for byte those the gold path writes in the
sandbox. So both run the same script (`solution_script.py`) with the same interpreter and the
same single-threaded BLAS/OpenMP settings, in a process of their own (never in the caller's,
whose thread pools and loaded libraries, torch's among them, are not the sandbox's).

Importing scikit-learn costs seconds and fitting these models milliseconds, so one worker process
per host process imports it once and runs every generation's script (`_WORKER`: one JSON request
a line on stdin, one answer a line on stdout). A worker that dies is restarted for the next task.
"""

from __future__ import annotations

import atexit
import json
import os
import subprocess
import sys
import tempfile
import threading
from functools import cache
from pathlib import Path

from forgerl.errors import ConfigError

SCRIPT_NAME = "solution.py"
RUN_TIMEOUT_S = 300.0
THREAD_ENV = {"OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "JOBLIB_MULTIPROCESSING": "0"}
"""What every mle process runs with, here and in the sandbox: one thread (deterministic sums), and
joblib told not to probe /dev/shm semaphores (the sandbox has none; it would warn on every import)."""

_WORKER = """
import contextlib, importlib.util, io, json, os, sys, traceback
spec = importlib.util.spec_from_file_location("solution", sys.argv[1])
solution = importlib.util.module_from_spec(spec)
spec.loader.exec_module(solution)
for line in sys.stdin:
    request = json.loads(line)
    try:
        os.chdir(request["dir"])
        with contextlib.redirect_stdout(io.StringIO()):
            for model in request["models"]:
                solution.main([*request["args"], "--model", model, "--out", f"pred_{model}.csv"])
        answer = {"ok": True}
    except BaseException:
        answer = {"ok": False, "error": traceback.format_exc()[-1500:]}
    print(json.dumps(answer), flush=True)
"""


@cache
def script_text() -> str:
    """The reference solution as shipped into the sandbox."""
    return (Path(__file__).with_name("solution_script.py")).read_text(encoding="utf-8")


class _Worker:
    """The long-lived process that runs the reference script (see the module docstring)."""

    def __init__(self) -> None:
        self._proc: subprocess.Popen[str] | None = None
        self._lock = threading.Lock()
        atexit.register(self.stop)

    def _start(self) -> subprocess.Popen[str]:
        script = Path(__file__).with_name("solution_script.py")
        env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": tempfile.gettempdir(), "LANG": "C.UTF-8",
               **THREAD_ENV}
        return subprocess.Popen([sys.executable, "-E", "-s", "-c", _WORKER, str(script)], stdin=subprocess.PIPE,
                                stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, env=env, text=True, bufsize=1)

    def run(self, directory: str, script_args: list[str], models: list[str]) -> None:
        request = json.dumps({"dir": directory, "args": script_args, "models": models})
        with self._lock:
            if self._proc is None or self._proc.poll() is not None:
                self._proc = self._start()
            proc = self._proc
            assert proc.stdin is not None and proc.stdout is not None
            timer = threading.Timer(RUN_TIMEOUT_S, proc.kill)
            timer.start()
            try:
                proc.stdin.write(request + "\n")
                proc.stdin.flush()
                line = proc.stdout.readline()
            except (BrokenPipeError, OSError):
                line = ""
            finally:
                timer.cancel()
        if not line:
            self.stop()
            raise ConfigError("the mle reference solution's worker died while generating a task (killed after "
                              f"{RUN_TIMEOUT_S:.0f} s, or scikit-learn is missing: pip install 'forgerl[mle]')")
        answer = json.loads(line)
        if not answer["ok"]:
            raise ConfigError(f"the mle reference solution failed while generating a task: {answer['error']}")

    def stop(self) -> None:
        proc, self._proc = self._proc, None
        if proc is not None and proc.poll() is None:
            proc.kill()
            proc.wait()


_worker = _Worker()


def run_models(files: dict[str, str], script_args: list[str], models: list[str]) -> dict[str, bytes]:
    """Write the workspace files to a temporary directory, run the script there once per model,
    and return each model's predictions file (bytes, as written)."""
    with tempfile.TemporaryDirectory(prefix="forgerl-mle-ref-") as tmp:
        for name, text in files.items():
            Path(tmp, name).write_text(text, encoding="utf-8")
        _worker.run(tmp, script_args, models)
        return {model: Path(tmp, f"pred_{model}.csv").read_bytes() for model in models}
