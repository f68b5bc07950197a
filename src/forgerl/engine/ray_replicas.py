"""`[engine] replicas = K` placed by Ray (with `[distributed] launcher = "ray"`): K `forgerl serve`
processes, each run by a small Ray actor on whichever node Ray picks (one GPU each on a cluster
with GPUs, else `threads` CPUs each), reachable by URL from the trainer, behind the same router.

The same interface as engine/pool.py's LocalReplicas (`urls`, `start`, `launch(i)`, `kill(i)`,
`stop`), so the router's probe restarts a dead replica the same way: the actor starts its
`forgerl serve` again on the same port. A replica on the trainer's node listens on loopback (the
`shm` transport reaches it); one on another node listens on that node's address (use the `dir`
transport; engine/pool.py refuses `shm` for it with what to do). An actor that is itself lost (its
node gone) stays out of the router, which routes around it.

Ray is an optional extra: this module imports it only inside its functions.
"""

from __future__ import annotations

import logging
import os
import socket
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from forgerl.cores import thread_env
from forgerl.engine.remote import health
from forgerl.errors import ConfigError
from forgerl.ray_support import child_of_actor, join_ray

log = logging.getLogger(__name__)


class ReplicaActor:
    """One engine replica, as a Ray actor (made remote in RayReplicas.start): owns a port on its node
    and the `forgerl serve` process listening on it."""

    def __init__(self, trainer_node: str, args: Sequence[str], env: dict[str, str], log_path: str, cwd: str) -> None:
        import ray

        self.node = ray.util.get_node_ip_address()
        self.host = "127.0.0.1" if self.node == trainer_node else self.node
        with socket.socket() as s:
            s.bind((self.host, 0))
            self.port = int(s.getsockname()[1])
        self.args, self.env, self.log_path = list(args), env, Path(log_path)
        self.cwd = cwd if os.path.isdir(cwd) else None  # the trainer's, where this node has it (relative --model)
        self.proc: subprocess.Popen[bytes] | None = None

    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def launch(self) -> None:
        """Start `forgerl serve` (again, if it is not running); returns at once."""
        if self.proc is not None and self.proc.poll() is None:
            return
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        args = [sys.executable, "-m", "forgerl.cli.main", "serve", *self.args, "--host", self.host,
                "--port", str(self.port)]
        with open(self.log_path, "ab") as out:
            self.proc = subprocess.Popen(args, stdout=out, stderr=subprocess.STDOUT, env={**os.environ, **self.env},
                                         cwd=self.cwd, preexec_fn=child_of_actor)

    def exit_code(self) -> int | None:
        return None if self.proc is None else self.proc.poll()

    def log_tail(self, lines: int = 6) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").strip().splitlines()[-lines:])
        except OSError:
            return ""

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(30)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()


class RayReplicas:
    """K `forgerl serve` replicas as Ray actors (see the module docstring); `stop()` ends them all."""

    def __init__(self, count: int, *, model: str, admin_token: str, weights_dir: Path | None = None,
                 threads: int | None = None, gpus: int = 0, log_dir: Path | None = None,
                 extra_args: Sequence[str] = (), start_timeout_s: float = 300.0) -> None:
        if count < 1:
            raise ConfigError(f"replicas must be >= 1, got {count}")
        self.count, self.model, self.admin_token = count, model, admin_token
        self.weights_dir = Path(weights_dir).resolve() if weights_dir is not None else None
        self.threads = threads or max(1, (os.cpu_count() or 1) // count)
        # absolute: the actors run elsewhere (another cwd, maybe another node)
        self.log_dir = Path(log_dir).resolve() if log_dir is not None else Path("/tmp/forgerl-replicas")
        self.extra_args = list(extra_args)
        self.start_timeout_s = start_timeout_s
        self.actors: list[Any] = []
        self.urls: list[str] = []

    def log_path(self, i: int) -> Path:
        """Replica i's log, on the node it runs on."""
        return self.log_dir / f"replica{i}.log"

    def start(self) -> list[str]:
        """Place every replica, start them, and wait until all answer /health; returns their URLs."""
        ray = join_ray()
        gpus = 1 if ray.cluster_resources().get("GPU", 0) > 0 else 0
        env = {"FORGERL_ADMIN_TOKEN": self.admin_token}
        if not gpus:
            env.update(thread_env(self.threads))
        args = ["--model", self.model, *self.extra_args]
        if self.weights_dir is not None:
            args += ["--weights-dir", str(self.weights_dir)]
        actor = ray.remote(ReplicaActor).options(num_cpus=0 if gpus else self.threads, num_gpus=gpus)
        need, free = (gpus, "GPU") if gpus else (self.threads, "CPU")
        if ray.available_resources().get(free, 0) < need * self.count:  # pending, not refused: nodes may be joining
            log.warning("waiting up to %.0f s for Ray to place %d engine replicas (%s %s each); the cluster has %s "
                        "free", self.start_timeout_s, self.count, need, free, ray.available_resources())
        here = ray.util.get_node_ip_address()
        self.actors = [actor.remote(here, args, env, str(self.log_path(i)), os.getcwd()) for i in range(self.count)]
        ready, _ = ray.wait([a.url.remote() for a in self.actors], num_returns=self.count, timeout=self.start_timeout_s)
        if len(ready) < self.count:
            self.stop()
            raise ConfigError(f"Ray could not place {self.count} engine replicas ({gpus or self.threads} "
                              f"{'GPU' if gpus else 'CPUs'} each) within {self.start_timeout_s:.0f} s; the cluster has "
                              f"{ray.cluster_resources()} (the trainer's ranks hold their share)",
                              hint="lower [engine] replicas or threads_per_replica, or add nodes")
        self.urls = ray.get([a.url.remote() for a in self.actors])
        ray.get([a.launch.remote() for a in self.actors])
        self._wait_healthy(ray)
        return self.urls

    def _wait_healthy(self, ray: Any) -> None:
        deadline = time.monotonic() + self.start_timeout_s
        for i, url in enumerate(self.urls):
            while not health(url, timeout_s=1.0):
                code = ray.get(self.actors[i].exit_code.remote())
                if code is not None:
                    tail = ray.get(self.actors[i].log_tail.remote())
                    self.stop()
                    raise ConfigError(f"engine replica {i} (`forgerl serve` at {url}, a Ray actor) exited with code "
                                      f"{code}; its log ({self.log_path(i)} on its node) ends:\n{tail}")
                if time.monotonic() > deadline:
                    self.stop()
                    raise ConfigError(f"engine replica {i} at {url} did not answer /health within "
                                      f"{self.start_timeout_s:.0f}s; its log: {self.log_path(i)} on its node")
                time.sleep(0.2)

    def launch(self, i: int) -> None:
        """Start replica `i`'s server again (the router's probe waits for /health); a lost actor is left out."""
        import ray

        try:
            ray.get(self.actors[i].launch.remote(), timeout=60)
        except ray.exceptions.RayError:
            pass  # its actor or node is gone: the router keeps routing around it

    def kill(self, i: int) -> None:
        """SIGKILL replica `i`'s server (tests and failure drills)."""
        import ray

        ray.get(self.actors[i].kill.remote())

    def stop(self) -> None:
        import ray

        try:
            ray.get([a.stop.remote() for a in self.actors], timeout=60)
        except ray.exceptions.RayError:
            pass
        for a in self.actors:
            ray.kill(a)


__all__ = ["RayReplicas", "ReplicaActor"]
