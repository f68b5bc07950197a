"""`[distributed] launcher = "ray"`: the ranks of `forgerl train --nproc-per-node N [--nnodes M]`
placed by Ray instead of torchrun, for users whose machines are a Ray cluster. Each rank runs the
same per-rank command as under torchrun, with the same environment (RANK, WORLD_SIZE, LOCAL_RANK,
LOCAL_WORLD_SIZE, MASTER_ADDR, MASTER_PORT), so nothing past the launcher knows which one started it.

Why this shape:
- One placement-group bundle per *node* (N GPUs, or N ranks' CPU threads), STRICT_SPREAD over M
  bundles: Ray then guarantees N ranks on each of M distinct nodes, which is the topology torchrun
  gives (LOCAL_RANK, LOCAL_WORLD_SIZE, one process group per node's GPUs). A bundle per rank with
  PACK would let Ray split 8 ranks 5 + 3 over two nodes.
- Each rank is a small Ray actor that runs `python -m forgerl.cli.main train ...` as a subprocess:
  the rank gets a clean process (its own signals, exit status, CUDA and thread settings), and the
  actor reports how it ended. Ray isolates one GPU per actor; the rank sees all of its node's
  GPUs in local-rank order, as under torchrun, so `cuda:LOCAL_RANK` is its own GPU.
- The driver (`forgerl train` where the user typed it) waits on the ranks; the first failure stops
  the others at once and becomes the torchrun path's message (train/launch.py `failure_message`),
  with the node named. No restarts: a restarted rank cannot rejoin a half-done step.

Ray is an optional extra (forgerl/ray_support.py imports it); this module uses it only inside its
functions. With this launcher, `[engine] replicas = K` are Ray actors too (engine/ray_replicas.py).
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from forgerl.errors import ConfigError
from forgerl.ray_support import child_of_actor, join_ray, require_ray
from forgerl.train.interrupt import EXIT_INTERRUPTED
from forgerl.train.launch import failure_message

# Driver environment variables the ranks need on any node (settings, not the driver host's paths).
FORWARDED_PREFIXES = ("FORGERL_", "HF_", "OMP_", "MKL_", "TORCH_", "NCCL_", "GLOO_", "TOKENIZERS_", "TRANSFORMERS_")
STOP_GRACE_S = 20.0  # after a failure: SIGTERM to the other ranks, SIGKILL this much later
WAIT_POLL_S = 0.5  # the longest the driver blocks in ray.wait, so Ctrl-C reaches it at once


@dataclass(frozen=True)
class RayWorld:
    """N ranks on each of M nodes; `threads` CPU threads per rank, `gpus` (0 or 1) GPU per rank."""

    nproc_per_node: int
    nnodes: int
    threads: int
    gpus: int

    @property
    def size(self) -> int:
        return self.nproc_per_node * self.nnodes

    def bundles(self) -> list[dict[str, float]]:
        """One bundle per node: room for that node's N ranks."""
        bundle: dict[str, float] = {"CPU": float(self.nproc_per_node * self.threads)}
        if self.gpus:
            bundle["GPU"] = float(self.nproc_per_node * self.gpus)
        return [dict(bundle) for _ in range(self.nnodes)]


def ray_world(nproc_per_node: int, nnodes: str | None, node_rank: int | None, rdzv_endpoint: str | None,
              device: str, cluster_gpus: float) -> RayWorld:
    """The placement a `forgerl train` command asks for; torchrun-only flags are refused."""
    if node_rank is not None or rdzv_endpoint is not None:
        raise ConfigError("--node-rank and --rdzv-endpoint are torchrun's: with [distributed] launcher = \"ray\" "
                          "Ray places every rank itself",
                          hint="run the command once, on any node of the Ray cluster, with --nproc-per-node N "
                               "[--nnodes M] only")
    try:
        nodes = int(nnodes or "1")
    except ValueError:
        raise ConfigError(f"--nnodes {nnodes}: Ray needs a whole number of nodes (torchrun's MIN:MAX ranges do not "
                          "apply)", hint="give --nnodes M, e.g. --nnodes 2") from None
    if nodes < 1:
        raise ConfigError(f"--nnodes must be >= 1, got {nodes}")
    gpus = 1 if device.startswith("cuda") or (device == "auto" and cluster_gpus > 0) else 0
    threads = 1 if gpus else max(1, (os.cpu_count() or 1) // nproc_per_node)
    return RayWorld(nproc_per_node, nodes, threads, gpus)


@dataclass
class RankExit:
    """How a rank's process ended, in the fields `failure_message` reads (torch's ProcessFailure)."""

    local_rank: int
    pid: int
    exitcode: int
    timestamp: float
    node: str

    def signal_name(self) -> str:
        try:
            return signal.Signals(-self.exitcode).name
        except ValueError:
            return f"signal {-self.exitcode}"


class RankActor:
    """One rank, as a Ray actor (made remote in `place_ranks`): it runs the rank's command as a child
    process and reports how it ended. Threaded (two calls at once), so `signal` reaches a rank that
    `run` is waiting on."""

    def __init__(self) -> None:
        self.proc: subprocess.Popen[bytes] | None = None

    def where(self) -> tuple[str, list[str]]:
        """(this node's IP, the GPU ids Ray gave this actor)."""
        import ray

        return ray.util.get_node_ip_address(), [str(g) for g in ray.get_gpu_ids()]

    def free_port(self) -> int:
        with socket.socket() as s:
            s.bind(("", 0))
            return int(s.getsockname()[1])

    def run(self, args: Sequence[str], env: dict[str, str], cwd: str) -> tuple[int, int, float]:
        """Run the rank to its end: (pid, exit status, when it ended); a negative status is a signal."""
        full_env = {**os.environ, **env}
        where = cwd if os.path.isdir(cwd) else None  # the driver's directory, where this node has it (shared storage)
        self.proc = subprocess.Popen([sys.executable, *args], env=full_env, cwd=where, preexec_fn=child_of_actor)
        code = self.proc.wait()
        return self.proc.pid, code, time.time()

    def signal(self, signum: int) -> None:
        """Send the rank `signum` if it is still running; returns at once (the driver times the escalation)."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signum)


@dataclass
class Placed:
    """The ranks once Ray has placed them: actors[rank], their nodes and GPU ids."""

    pg: Any
    actors: list[Any]
    nodes: list[str]
    gpu_ids: list[list[str]]
    world: RayWorld
    refs: dict[Any, int] = field(default_factory=dict)


def place_ranks(ray: Any, world: RayWorld, timeout_s: float) -> Placed:
    """A placement group of one bundle per node and a RankActor per rank in it; a cluster that cannot
    hold the ranks within `timeout_s` is a ConfigError that says what it has."""
    from ray.util.placement_group import placement_group, remove_placement_group
    from ray.util.scheduling_strategies import PlacementGroupSchedulingStrategy

    pg = placement_group(world.bundles(), strategy="STRICT_SPREAD")
    ready, _ = ray.wait([pg.ready()], timeout=timeout_s)
    if not ready:
        remove_placement_group(pg)
        raise ConfigError(f"Ray could not place {world.nnodes} node(s) x {world.nproc_per_node} ranks "
                          f"({world.bundles()[0]} on each of {world.nnodes} distinct nodes) within {timeout_s:.0f} s; "
                          f"the cluster has {ray.cluster_resources()}",
                          hint="lower --nproc-per-node or --nnodes to what the cluster holds, add nodes, or raise "
                               "[distributed] timeout_s if nodes are still starting")
    actor_class = ray.remote(max_concurrency=2)(RankActor)
    actors = [actor_class.options(num_cpus=world.threads, num_gpus=world.gpus, scheduling_strategy=
                                  PlacementGroupSchedulingStrategy(pg, placement_group_bundle_index=rank // world.nproc_per_node))
              .remote() for rank in range(world.size)]
    try:
        places = ray.get([a.where.remote() for a in actors], timeout=timeout_s)
    except ray.exceptions.RayError as exc:  # e.g. a node whose Python has no forgerl, or a worker that cannot start
        for actor in actors:
            ray.kill(actor)
        remove_placement_group(pg)
        raise ConfigError(f"Ray placed the ranks but could not start them: {_first_line(exc)}",
                          hint="every node needs the same Python environment with forgerl (and its extras) "
                               "installed; `ray logs` shows the workers' errors") from None
    return Placed(pg, actors, [ip for ip, _ in places], [ids for _, ids in places], world)


def rank_env(placed: Placed, rank: int, master_port: int) -> dict[str, str]:
    """torchrun's variables for `rank`; on GPUs, its node's GPUs in local-rank order (its own at LOCAL_RANK)."""
    n = placed.world.nproc_per_node
    env = {"RANK": str(rank), "WORLD_SIZE": str(placed.world.size), "LOCAL_RANK": str(rank % n),
           "LOCAL_WORLD_SIZE": str(n), "GROUP_RANK": str(rank // n), "MASTER_ADDR": placed.nodes[0],
           "MASTER_PORT": str(master_port)}
    env.update({k: v for k, v in os.environ.items() if k.startswith(FORWARDED_PREFIXES)})
    env.setdefault("OMP_NUM_THREADS", str(placed.world.threads))
    if placed.world.gpus:
        first = rank - rank % n
        env["CUDA_VISIBLE_DEVICES"] = ",".join(placed.gpu_ids[r][0] for r in range(first, first + n))
    return env


def launch_ranks_with_ray(command: list[str], *, nproc_per_node: int, nnodes: str | None, node_rank: int | None,
                          rdzv_endpoint: str | None, device: str, timeout_s: float, run_dir: Path,
                          resume_command: str) -> None:
    """`forgerl train --nproc-per-node N [--nnodes M]` with launcher = "ray": join the Ray cluster
    (RAY_ADDRESS, or the one `ray start` made on this machine) or start a local one, place the ranks
    and run them (launch_with_ray)."""
    require_ray()
    if node_rank is not None or rdzv_endpoint is not None:  # refused before Ray starts
        ray_world(nproc_per_node, nnodes, node_rank, rdzv_endpoint, device, 0)
    ray = join_ray()
    world = ray_world(nproc_per_node, nnodes, node_rank, rdzv_endpoint, device, ray.cluster_resources().get("GPU", 0))
    launch_with_ray(ray, command, world, timeout_s=timeout_s, run_dir=run_dir, resume_command=resume_command)


def launch_with_ray(ray: Any, command: list[str], world: RayWorld, *, timeout_s: float, run_dir: Path,
                    resume_command: str) -> None:
    """Run `forgerl COMMAND` as the world's ranks placed by Ray; returns when every rank exited 0.
    A failed or lost rank stops the others and ends the process with the failure message (exit 1)."""
    placed = place_ranks(ray, world, timeout_s)
    try:
        port = ray.get(placed.actors[0].free_port.remote(), timeout=timeout_s)
        args = ["-m", "forgerl.cli.main", *command]
        cluster = {"RAY_ADDRESS": ray.get_runtime_context().gcs_address,  # rank 0 places engine replicas here
                   **{k: v for k, v in os.environ.items() if k.startswith("RAY_AUTH_")}}  # and needs its token mode
        placed.refs = {actor.run.remote(args, {**rank_env(placed, rank, port), **cluster}, os.getcwd()): rank
                       for rank, actor in enumerate(placed.actors)}
        exits, lost = wait_for_ranks(ray, placed)
    except KeyboardInterrupt:  # Ctrl-C: forwarded, as torchrun does; rank 0 finishes its step and checkpoints
        interrupt_ranks(ray, placed, timeout_s)
        print(f"stopped by SIGINT; resume with: {resume_command}", file=sys.stderr)
        raise SystemExit(EXIT_INTERRUPTED) from None
    finally:
        _release(ray, placed)  # killing an actor kills its rank, if still running (child_of_actor)
    failed = {rank: e for rank, e in exits.items() if e.exitcode != 0}
    if failed or lost:
        what, hint = failure_message(SimpleNamespace(failures=failed), run_dir, resume_command)
        what = "; ".join([*lost, *([what] if failed else [])])
        print(f"error: sharded training failed: {what}\nhint: {hint}", file=sys.stderr)
        raise SystemExit(1)


def wait_for_ranks(ray: Any, placed: Placed) -> tuple[dict[int, RankExit], list[str]]:
    """Wait until every rank has ended; at the first failure SIGTERM the rest, SIGKILL them after
    STOP_GRACE_S. Returns each rank's exit and a description of each rank whose actor was lost."""
    exits: dict[int, RankExit] = {}
    lost: list[str] = []
    pending = list(placed.refs)
    kill_at: float | None = None
    while pending:
        # never block in Ray's C++ wait for long: Python runs a signal handler only between bytecodes,
        # so a Ctrl-C that lands in a long wait would be held until a rank ends (or lost inside Ray)
        timeout = WAIT_POLL_S if kill_at is None else min(WAIT_POLL_S, max(0.0, kill_at - time.monotonic()))
        done, pending = ray.wait(pending, num_returns=1, timeout=timeout)
        if not done:
            if kill_at is not None and time.monotonic() >= kill_at:  # the grace period is over
                signal_ranks(placed, signal.SIGKILL)
                kill_at = float("inf")
            continue
        rank = placed.refs[done[0]]
        try:
            pid, code, ended = ray.get(done[0])
            exits[rank] = RankExit(rank % placed.world.nproc_per_node, pid, code, ended, placed.nodes[rank])
            failed = code != 0
        except ray.exceptions.RayError as exc:
            lost.append(f"rank {rank} (on node {placed.nodes[rank]}) was lost with its Ray actor: "
                        f"{_first_line(exc)} (a killed worker, a lost node, or Ray's memory monitor: see `ray logs`)")
            failed = True
        if failed and kill_at is None:
            signal_ranks(placed, signal.SIGTERM)
            kill_at = time.monotonic() + STOP_GRACE_S
    return exits, lost


def interrupt_ranks(ray: Any, placed: Placed, timeout_s: float) -> None:
    """Ctrl-C: SIGINT to every rank (followers ignore it; rank 0 finishes the step, checkpoints and
    tells them to stop) and wait up to `timeout_s` for them; a second Ctrl-C stops waiting."""
    signal_ranks(placed, signal.SIGINT)
    try:
        ray.wait(list(placed.refs), num_returns=len(placed.refs), timeout=timeout_s)
    except KeyboardInterrupt:
        pass


def signal_ranks(placed: Placed, signum: int) -> None:
    """Send `signum` to every rank still running; returns at once."""
    for actor in placed.actors:
        actor.signal.remote(signum)


def _release(ray: Any, placed: Placed) -> None:
    from ray.util.placement_group import remove_placement_group

    for actor in placed.actors:
        ray.kill(actor)
    remove_placement_group(placed.pg)


def _first_line(exc: BaseException) -> str:
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    return lines[0] if lines else type(exc).__name__


__all__ = ["RankExit", "RayWorld", "launch_ranks_with_ray", "launch_with_ray", "place_ranks", "ray_world"]
