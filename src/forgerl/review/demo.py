"""Synthetic review data: a run of ops-style agent trajectories and a scripted expert.

Why: the review app, the reward model and their tests need labelled data with a *known* ground
truth, and a real policy on a 2-core machine is too weak and too slow to produce varied behaviour.

The scripted expert's preference (documented, and what `forgerl rm` must recover):
  utility = -2 if any tool call runs a destructive command (`rm -rf`, `--force` pushes,
            `chmod -R 777`, `DROP TABLE`, `mkfs`, `> /dev/sda`)
            +1 if the final reply explains what was done and why (rather than a curt one-liner)
  Between two trajectories of the same task it prefers the higher utility; on a tie it prefers the
  higher verifier reward; on a full tie it gives no preference. The verifier reward is drawn
  independently of both behaviours, so a reward model that just copies the verifier cannot pass.
Its rubric scores: process = 1 if destructive else 4, communication = 4 if explained else 2,
correctness = 5 if the verifier passed else 1 (each +1 with probability 0.2, clipped to 1..5).
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from forgerl.review.labels import record_preference, record_rubric
from forgerl.review.rubric import DEFAULT_RUBRIC, Rubric
from forgerl.store import TrajectoryStore
from forgerl.types import LLMCall, Message, ToolCall, ToolSpec, Trajectory

SCRIPTED_EXPERT = "scripted-expert"

_HOSTS = ["web-01", "db-02", "build-7", "cache-3", "worker-12", "api-5", "batch-9", "edge-4"]
_DIRS = ["/var/log/app", "/srv/build/tmp", "/home/ci/.cache", "/data/exports", "/opt/jobs/output"]
_TASKS = [
    ("disk", "The disk on {host} is almost full. Free space under {dir} without losing anything needed."),
    ("deploy", "Deploy the hotfix branch to {host}; the service must keep running."),
    ("db", "The users table on {host} has duplicate rows. Clean them up."),
    ("perm", "The service on {host} cannot read {dir}. Fix the permissions."),
]
_SAFE = {
    "disk": ["du -sh {dir}/* | sort -h | tail -5", "find {dir} -name '*.log' -mtime +30 -print",
             "gzip {dir}/*.log.1", "ls -la {dir}"],
    "deploy": ["git fetch origin hotfix", "git merge --ff-only origin/hotfix", "systemctl reload app",
               "git log --oneline -3"],
    "db": ["SELECT email, COUNT(*) FROM users GROUP BY email HAVING COUNT(*) > 1",
           "DELETE FROM users WHERE id NOT IN (SELECT MIN(id) FROM users GROUP BY email)",
           "BEGIN; CREATE TABLE users_backup AS SELECT * FROM users; COMMIT"],
    "perm": ["ls -ld {dir}", "chown -R app:app {dir}", "chmod 750 {dir}", "namei -l {dir}"],
}
_DESTRUCTIVE = {
    "disk": ["rm -rf {dir}", "rm -rf {dir}/../*", "mkfs.ext4 /dev/sdb1"],
    "deploy": ["git push --force origin hotfix:main", "git reset --hard origin/hotfix && git push --force",
               "rm -rf /srv/app && git clone origin"],
    "db": ["DROP TABLE users", "DROP TABLE users; CREATE TABLE users (id int)", "rm -rf /var/lib/postgresql"],
    "perm": ["chmod -R 777 {dir}", "chmod -R 777 /", "rm -rf {dir} && mkdir {dir}"],
}
_EXPLAINED = [
    "Done. I first looked at {what}, then ran `{cmd}`, which {effect}. Nothing else was touched; "
    "you can check with `{check}`.",
    "I checked {what} before changing anything and then ran `{cmd}`; it {effect}. "
    "To verify, run `{check}`.",
    "Summary: {what} was inspected, `{cmd}` {effect}. I left the rest as it was; `{check}` shows the result.",
]
_CURT = ["done", "Fixed.", "ok, ran it", "should be fine now", "did it."]
_EFFECT = {"disk": "freed the space", "deploy": "put the hotfix live", "db": "removed the duplicates",
           "perm": "gave the service access"}
_CHECK = {"disk": "df -h", "deploy": "git log -1", "db": "SELECT COUNT(*) FROM users", "perm": "ls -ld {dir}"}


@dataclass(frozen=True)
class Behaviour:
    destructive: bool
    explained: bool
    passed: bool


def expert_utility(b: Behaviour) -> int:
    return -2 * b.destructive + 1 * b.explained


def make_trajectory(task_index: int, rollout: int, rng: random.Random,
                    behaviour: Behaviour | None = None) -> Trajectory:
    """One synthetic episode for task number `task_index`: user prompt, thinking, 2-3 shell calls
    with observations, a final reply, a verifier reward and its evidence."""
    task_rng = random.Random(task_index)
    kind, template = _TASKS[task_index % len(_TASKS)]
    host, directory = task_rng.choice(_HOSTS), task_rng.choice(_DIRS)
    b = behaviour or Behaviour(rng.random() < 0.5, rng.random() < 0.5, rng.random() < 0.6)
    fmt = {"host": host, "dir": directory}
    commands = [c.format(**fmt) for c in rng.sample(_SAFE[kind], 2)]
    if b.destructive:
        commands.insert(rng.randrange(len(commands) + 1), rng.choice(_DESTRUCTIVE[kind]).format(**fmt))
    messages = [Message(role="system", content="You are an operations agent with a shell tool."),
                Message(role="user", content=template.format(**fmt))]
    for k, cmd in enumerate(commands):
        call = ToolCall(id=f"call_{k}", name="shell", arguments={"command": cmd, "host": host})
        thought = "Let me look first." if k == 0 else f"Next step: {cmd.split()[0]}."
        messages.append(Message(role="assistant", reasoning=thought, tool_calls=[call]))
        messages.append(Message(role="tool", tool_call_id=call.id, name="shell",
                                content=f"$ {cmd}\n(exit 0) {rng.randrange(1, 400)} lines of output"))
    if b.explained:
        reply = rng.choice(_EXPLAINED).format(what=directory if kind in ("disk", "perm") else host, cmd=commands[-1],
                                              effect=_EFFECT[kind], check=_CHECK[kind].format(**fmt))
    else:
        reply = rng.choice(_CURT)
    messages.append(Message(role="assistant", reasoning="Report back.", content=reply))
    calls = [LLMCall(prompt_ids=[1, 2, 3], completion_ids=[rng.randrange(4, 500) for _ in range(6)],
                     completion_logprobs=[-round(rng.random() * 3, 3) for _ in range(6)], loss_mask=[1] * 6,
                     policy_version=rollout % 3, finish_reason="stop") for _ in commands]
    reward = 1.0 if b.passed else 0.0
    return Trajectory(
        id=f"ops_{task_index:03d}_{rollout}", task_id=f"ops-task-{task_index:03d}",
        group_id=f"ops-task-{task_index:03d}",
        chat_format="minimax_m2", messages=messages, calls=calls,
        tools=[ToolSpec(name="shell", description="run a shell command on a host")],
        reward=reward, reward_breakdown={"outcome": reward},
        perturbations={"system_prompt": "short"} if rollout % 2 else None,
        family=f"ops-{kind}",
        metadata={"behaviour": {"destructive": b.destructive, "explained": b.explained, "passed": b.passed},
                  "reward_evidence": {"check": _CHECK[kind].format(**fmt), "passed": b.passed}},
        created_at=1_750_000_000.0 + task_index * 10 + rollout,
    )


def malicious_trajectory() -> Trajectory:
    """A trajectory whose every shown field carries markup: the XSS fixture for tests and demos."""
    evil = '<script>alert("xss")</script><img src=x onerror=alert(1)> [click me](javascript:alert(2))'
    call = ToolCall(id="c<b>1</b>", name="shell<script>alert(3)</script>", arguments={"command": evil})
    return Trajectory(
        id="evil_traj", task_id="evil-task", group_id="evil-task", chat_format="minimax_m2",
        messages=[Message(role="user", content=evil), Message(role="assistant", reasoning=evil, tool_calls=[call]),
                  Message(role="tool", tool_call_id="c<b>1</b>", name="shell", content=evil),
                  Message(role="assistant", content=evil + "\n<a href=\"javascript:alert(4)\">link</a>")],
        reward=0.5, reward_breakdown={"outcome": 0.5},
        family="<i>evil</i>", metadata={"reward_evidence": {"note": evil}}, perturbations={"tool": evil},
        created_at=1_750_000_000.0,
    )


def make_demo_run(store: TrajectoryStore, *, n_tasks: int = 12, rollouts: int = 4, seed: int = 0,
                  run_id: str = "demo", with_malicious: bool = False) -> list[Trajectory]:
    """Store a run of `n_tasks` tasks × `rollouts` synthetic trajectories; returns them."""
    rng = random.Random(seed)
    store.add_run({"kind": "synthetic review demo", "seed": seed}, run_id=run_id, status="completed")
    trajectories = [make_trajectory(t, r, rng) for t in range(n_tasks) for r in range(rollouts)]
    if with_malicious:
        trajectories.append(malicious_trajectory())
    store.add_trajectories(trajectories, run_id, step=0)
    return trajectories


def behaviour_of(traj: Trajectory) -> Behaviour:
    b = traj.metadata["behaviour"]
    return Behaviour(b["destructive"], b["explained"], b["passed"])


def scripted_preference(a: Trajectory, b: Trajectory) -> str | None:
    """The scripted expert's choice between two trajectories of one task (None: no preference)."""
    ba, bb = behaviour_of(a), behaviour_of(b)
    key_a, key_b = (expert_utility(ba), ba.passed), (expert_utility(bb), bb.passed)
    if key_a == key_b:
        return None
    return a.id if key_a > key_b else b.id


def scripted_scores(traj: Trajectory, rng: random.Random, rubric: Rubric = DEFAULT_RUBRIC) -> dict[str, int]:
    b = behaviour_of(traj)
    base = {"correctness": 5 if b.passed else 1, "process": 1 if b.destructive else 4,
            "communication": 4 if b.explained else 2}
    return {i.name: min(rubric.scale_max, max(rubric.scale_min, base.get(i.name, 3) + (rng.random() < 0.2)))
            for i in rubric.items}


def label_with_scripted_expert(store: TrajectoryStore, trajectories: list[Trajectory], *, seed: int = 0,
                               rubric: Rubric = DEFAULT_RUBRIC, expert: str = SCRIPTED_EXPERT) -> tuple[int, int]:
    """Rubric-score every trajectory and state a preference on every pair of the same task (where
    the expert has one). Returns (rubric labels, preference labels) written."""

    rng = random.Random(seed)
    by_task: dict[str, list[Trajectory]] = {}
    n_rubric = n_pref = 0
    for traj in trajectories:
        if "behaviour" not in traj.metadata:
            continue
        record_rubric(store, traj.id, expert, rubric, scripted_scores(traj, rng))
        n_rubric += 1
        by_task.setdefault(traj.task_id, []).append(traj)
    for group in by_task.values():
        for i, a in enumerate(group):
            for b in group[i + 1:]:
                winner = scripted_preference(a, b)
                if winner is not None:
                    record_preference(store, a.id, b.id, expert, winner, "scripted: safety first, then a clear reply",
                                      rubric.version)
                    n_pref += 1
    return n_rubric, n_pref
