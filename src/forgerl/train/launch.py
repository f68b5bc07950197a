"""`forgerl train --nproc-per-node N`: run the same command as N ranks under torch's own elastic
launcher (torch.distributed.run, what `torchrun` is), and turn a failed rank into one message that
names it and says how to resume.

Why torch's launcher and not our own: it already starts the ranks with the rendezvous variables
(RANK, WORLD_SIZE, MASTER_ADDR/PORT), joins nodes through a c10d rendezvous, stops every other rank
when one dies and reports which one died and how. forgerl adds only the defaults (no restarts:
a restarted rank cannot rejoin a half-done step; the run resumes from its checkpoint instead) and
the message.
"""

from __future__ import annotations

import os
import signal
from pathlib import Path
from typing import Any

from forgerl.model.checkpoints import step_dirs


def torchrun_args(nproc_per_node: int, nnodes: str | None, node_rank: int | None, rdzv_endpoint: str | None,
                  command: list[str]) -> list[str]:
    """torch.distributed.run's command line for `forgerl COMMAND` on N ranks per node: standalone
    (a local rendezvous on a free port) on one node, a c10d rendezvous at the endpoint across nodes."""
    args = ["--nproc-per-node", str(nproc_per_node), "--max-restarts", "0"]
    if rdzv_endpoint is None and nnodes in (None, "1"):
        args.append("--standalone")
    else:
        args += ["--nnodes", nnodes or "1", "--rdzv-backend", "c10d", "--rdzv-endpoint", rdzv_endpoint or "localhost:29400"]
        if node_rank is not None:
            args += ["--node-rank", str(node_rank)]
    return [*args, "-m", "forgerl.cli.main", *command]


def launch(args: list[str], nproc_per_node: int) -> None:
    """Run torch.distributed.run with `args` in this process; raises ChildFailedError when a rank fails.
    Each rank gets an equal share of this host's cores unless OMP_NUM_THREADS is set."""
    from torch.distributed.run import get_args_parser, run

    if "OMP_NUM_THREADS" not in os.environ:  # torchrun would set 1; forgerl shares the cores out
        os.environ["OMP_NUM_THREADS"] = str(max(1, (os.cpu_count() or 1) // nproc_per_node))
    run(get_args_parser().parse_args(args))


def failure_message(error: Any, run_dir: Path, resume_command: str) -> tuple[str, str]:
    """(what, hint) for a ChildFailedError: the rank that died first by a signal other than the
    SIGTERM the launcher sends the survivors (else the first to fail) leads, the others follow; the
    hint names the last complete checkpoint and the command that resumes from it."""
    failures = sorted(error.failures.items(), key=lambda item: (_stopped_by_launcher(item[1]), item[1].exitcode >= 0,
                                                              item[1].timestamp, item[0]))
    parts = [_describe(rank, failure) for rank, failure in failures]
    what = "; ".join(parts)
    steps = step_dirs(run_dir)
    if steps:
        hint = f"the run is checkpointed at step {steps[-1][0]}: resume with `{resume_command}`"
    else:
        hint = f"the run has no checkpoint yet: start it again (or resume with `{resume_command}` once it has one)"
    return what, hint


def _describe(rank: int, failure: Any) -> str:
    node = getattr(failure, "node", None)  # the Ray launcher's exits name their node (train/ray_launch.py)
    where = f"rank {rank} (pid {failure.pid}, local rank {failure.local_rank}{f', node {node}' if node else ''})"
    if failure.exitcode < 0:
        name = failure.signal_name()
        why = {"SIGKILL": " (kill -9, or the kernel's out-of-memory killer: see `dmesg`)",
               "SIGTERM": " (stopped by the launcher after another rank failed)" if _stopped_by_launcher(failure) else "",
               "SIGSEGV": " (a crash in native code)"}.get(name, "")
        return f"{where} died with signal {name}{why}"
    return f"{where} exited with status {failure.exitcode}"


def _stopped_by_launcher(failure: Any) -> bool:
    return failure.exitcode == -int(signal.SIGTERM)


__all__ = ["failure_message", "launch", "torchrun_args"]
