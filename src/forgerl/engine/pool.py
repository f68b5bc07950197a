"""Many engines for one run: `forgerl serve` servers by URL (any host), or K replicas launched and
supervised here; either way one EngineRouter (engine/router.py) in front of them.

    router = open_engine_pool(tokenizer, urls=[...], admin_token=T, transport="dir", weights_dir=P)
    router = open_engine_pool(tokenizer, replicas=2, model="tiny-random")   # launched here

Weights: one WeightDir (weights/files.py) for all engines, so each version is written once. `shm`
posts the file's path (every engine must read this host's /dev/shm), `dir` posts its name, which
each server finds in its own `--weights-dir` (shared storage, mounted anywhere).

Local replicas: each is `forgerl serve` on a free loopback port with its share of the machine —
one GPU each where there are enough GPUs, else `threads` OpenMP threads each (default: the cores
divided evenly), because K engines with default thread counts on one CPU thrash each other.
A replica that dies is started again by the router's probe (RouterMember.restart).
"""

from __future__ import annotations

import logging
import os
import secrets
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from forgerl.cores import thread_env
from forgerl.engine.remote import health, open_remote_engine
from forgerl.engine.router import EngineRouter, RouterMember
from forgerl.errors import ConfigError
from forgerl.weights.base import check_transport, default_shared_dir
from forgerl.weights.files import WeightDir

log = logging.getLogger(__name__)

def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class LocalReplicas:
    """K `forgerl serve` processes on this host (see the module docstring); `stop()` ends them all."""

    def __init__(self, count: int, *, model: str, admin_token: str, weights_dir: Path | None = None,
                 threads: int | None = None, gpus: int = 0, log_dir: Path | None = None,
                 extra_args: Sequence[str] = (), start_timeout_s: float = 300.0) -> None:
        if count < 1:
            raise ConfigError(f"replicas must be >= 1, got {count}")
        self.count, self.model, self.admin_token, self.weights_dir = count, model, admin_token, weights_dir
        self.gpus = gpus
        self.threads = threads or max(1, (os.cpu_count() or 1) // count)
        self.log_dir = Path(log_dir or tempfile.mkdtemp(prefix="forgerl-replicas-"))
        self.log_dir.mkdir(parents=True, exist_ok=True)
        self.extra_args = list(extra_args)
        self.start_timeout_s = start_timeout_s
        self.ports = [free_port() for _ in range(count)]
        self.procs: list[subprocess.Popen[bytes] | None] = [None] * count

    @property
    def urls(self) -> list[str]:
        return [f"http://127.0.0.1:{p}" for p in self.ports]

    def start(self) -> list[str]:
        """Start every replica and wait until all answer /health (they load in parallel)."""
        for i in range(self.count):
            self.launch(i)
        deadline = time.monotonic() + self.start_timeout_s
        for i, url in enumerate(self.urls):
            while not health(url, timeout_s=1.0):
                proc = self.procs[i]
                if proc is not None and proc.poll() is not None:
                    self.stop()
                    tail = self.log_path(i).read_text(errors="replace").strip().splitlines()[-6:]
                    raise ConfigError(f"engine replica {i} (`forgerl serve` on port {self.ports[i]}) exited with code "
                                      f"{proc.returncode}; its log ({self.log_path(i)}) ends:\n" + "\n".join(tail))
                if time.monotonic() > deadline:
                    self.stop()
                    raise ConfigError(f"engine replica {i} did not answer /health within {self.start_timeout_s:.0f}s; "
                                      f"its log: {self.log_path(i)}")
                time.sleep(0.2)
        return self.urls

    def log_path(self, i: int) -> Path:
        return self.log_dir / f"replica{i}.log"

    def launch(self, i: int) -> None:
        """Start replica `i` (again) on its port; returns at once (the router's probe waits for /health)."""
        proc = self.procs[i]
        if proc is not None and proc.poll() is None:
            return
        env = {**os.environ, "FORGERL_ADMIN_TOKEN": self.admin_token}
        if self.gpus >= self.count:
            env["CUDA_VISIBLE_DEVICES"] = str(i)
        else:
            env.update(thread_env(self.threads))
        args = [sys.executable, "-m", "forgerl.cli.main", "serve", "--model", self.model, "--port", str(self.ports[i]),
                *self.extra_args]
        if self.weights_dir is not None:
            args += ["--weights-dir", str(self.weights_dir)]
        with open(self.log_path(i), "ab") as out:
            self.procs[i] = subprocess.Popen(args, stdout=out, stderr=subprocess.STDOUT, env=env)

    def kill(self, i: int) -> None:
        """SIGKILL replica `i` (tests and the benchmark's failure drill)."""
        proc = self.procs[i]
        if proc is not None and proc.poll() is None:
            proc.kill()
            proc.wait(30)

    def stop(self) -> None:
        for proc in self.procs:
            if proc is not None and proc.poll() is None:
                proc.terminate()
        for proc in self.procs:
            if proc is not None:
                try:
                    proc.wait(20)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait(20)


def open_engine_pool(
    tokenizer: Any,
    *,
    urls: Sequence[str] = (),
    replicas: int = 0,
    model: str = "tiny-random",
    admin_token: str | None = None,
    transport: str = "shm",
    weights_dir: str | os.PathLike[str] | None = None,
    stop_token_ids: tuple[int, ...] = (),
    max_context: int = 2048,
    initial_weights: Mapping[str, Any] | None = None,
    policy_version: int = 0,
    threads: int | None = None,
    timeout_s: float = 600.0,
    log_dir: Path | None = None,
    replica_args: Sequence[str] = (),
    launcher: str = "local",
) -> EngineRouter:
    """An EngineRouter over `urls` or over `replicas` launched here (exactly one of the two).
    `initial_weights`, when given, are pushed to every engine as `policy_version` first.
    `launcher = "ray"` places the replicas with Ray instead (engine/ray_replicas.py)."""
    if bool(urls) == bool(replicas):
        raise ConfigError("give the engines either as urls (servers already running) or as replicas = K "
                          "(launched here), not both and not neither")
    check_transport(transport, urls, weights_dir)
    launched: LocalReplicas | None = None
    if replicas:
        admin_token = admin_token or secrets.token_hex(16)
        served_dir = Path(weights_dir) if transport == "dir" and weights_dir is not None else None
        if served_dir is not None:
            served_dir.mkdir(parents=True, exist_ok=True)
        gpus = _gpu_count()
        launched = _replicas_class(launcher)(replicas, model=model, admin_token=admin_token, weights_dir=served_dir,
                                             threads=threads, gpus=gpus, log_dir=log_dir, extra_args=replica_args)
        urls = launched.start()
        if launcher == "ray":  # Ray may have placed replicas on other nodes, which `shm` cannot reach
            try:
                check_transport(transport, urls, weights_dir)
            except ConfigError:
                launched.stop()
                raise
    root = Path(weights_dir) if weights_dir is not None else default_shared_dir()
    files = WeightDir(root, fsync=transport == "dir")
    engines: list[Any] = []
    try:
        for url in urls:
            engines.append(open_remote_engine(
                url, tokenizer, admin_token=admin_token, stop_token_ids=stop_token_ids, max_context=max_context,
                initial_weights=initial_weights, policy_version=policy_version, timeout_s=timeout_s,
                files=files, by_name=transport == "dir", supervise=False))
    except BaseException:
        for engine in engines:
            engine.close()
        files.close()
        if launched is not None:
            launched.stop()
        raise

    def close_all() -> None:
        files.close()
        if launched is not None:
            launched.stop()

    members = [RouterMember(engine, name=url, restart=(lambda i=i: launched.launch(i)) if launched else None)
               for i, (engine, url) in enumerate(zip(engines, urls))]
    router = EngineRouter(members, policy_version=policy_version, close_engines=close_all)
    router.replicas = launched
    return router


def _replicas_class(launcher: str) -> Any:
    """LocalReplicas, or RayReplicas for `[distributed] launcher = "ray"` (the same interface)."""
    if launcher == "ray":
        from forgerl.engine.ray_replicas import RayReplicas  # heavy: needs ray, an optional extra

        return RayReplicas
    return LocalReplicas


def _gpu_count() -> int:
    try:
        import torch
    except ImportError:  # pragma: no cover - torch is a core dependency
        return 0
    return torch.cuda.device_count() if torch.cuda.is_available() else 0


__all__ = ["LocalReplicas", "open_engine_pool"]
