"""`PerturbedEnvironment`: any environment as the agent sees it under one episode's perturbations.

It shows the perturbed tools and prompts, maps every call back to the original tool before the
wrapped environment runs it (so the family's verifier and gold path need no change), renders the
results and errors in the episode's response style, and enforces a rate limit on parallel calls.
Transient failures and latency come from `NoisyEnvironment` (envs/noise.py), wrapped inside.

Everything is a pure function of the episode's draws (perturb/apply.py) and of the calls made, so a
recorded episode replays exactly. What was done lands in `record` (the same dict the trajectory
keeps as `trajectory.perturbations`), and the environment events name calls as the agent made
them, so a scripted policy can retry exactly the calls that failed.
"""

from __future__ import annotations

import asyncio
import json
import random
from typing import Any

from forgerl.envs.base import Environment, EnvironmentWrapper, RewardResult, Task
from forgerl.envs.noise import call_key
from forgerl.envs.rewards import Verdict
from forgerl.errors import ToolError
from forgerl.perturb.responses import render_error, render_response
from forgerl.perturb.text import mention_tools, perturb_system, perturb_user
from forgerl.perturb.tools import ToolPlan, plan_tool_info, plan_tool_set
from forgerl.types import Message, ToolCall, ToolSpec, Trajectory


def rate_limit_message(limit: int) -> str:
    return (f"rate limit exceeded: at most {limit} call{'s' if limit > 1 else ''} may run at the same time. "
            "Make this call again.")


class PerturbedEnvironment(EnvironmentWrapper):
    """The wrapped environment `inner`, perturbed by `draws` (a dict made by perturb/apply.py)."""

    def __init__(self, inner: Environment, draws: dict[str, Any], record: dict[str, Any],
                 original_gold: list[list[ToolCall]] | None = None) -> None:
        super().__init__(inner)
        self.draws = draws
        self.record = record
        self._original_gold = original_gold
        self._plan: ToolPlan | None = None
        self._plan_key: tuple[str, ...] | None = None
        self._events: list[dict[str, Any]] = []
        self._occurrences: dict[str, int] = {}
        self._in_flight = 0

    def verify(self, trajectory: Trajectory) -> Verdict:
        return self.inner.verify(trajectory)

    def gold_calls(self) -> int | None:
        return self.inner.gold_calls()

    async def close(self) -> None:
        await self.inner.close()

    # --- the tools ---
    def plan(self) -> ToolPlan:
        """The episode's tool plan, built from the wrapped environment's current tools."""
        specs = self.inner.tools()
        key = tuple(json.dumps(s.model_dump(), sort_keys=True) for s in specs)
        if self._plan is None or key != self._plan_key:
            plan = ToolPlan.identity(specs)
            if (d := self.draws.get("tool_set")) is not None:
                plan = plan_tool_set(plan, d["strength"], random.Random(d["seed"]), d["protected"])
            if (d := self.draws.get("tool_info")) is not None:
                plan = plan_tool_info(plan, d["style"], d["strength"], random.Random(d["seed"]))
            self._plan, self._plan_key = plan, key
            for entry in self.record["applied"]:
                if entry["kind"] in ("tool_set", "tool_info"):
                    entry["params"]["changes"] = [c for c in plan.changes if _belongs(c, entry["kind"])]
        return self._plan

    def tools(self) -> list[ToolSpec]:
        return self.plan().specs()

    def gold_solution(self, task: Task) -> list[list[ToolCall]]:
        rounds = self._original_gold if self._original_gold is not None else self.inner.gold_solution(task)
        plan = self.plan()
        return [[plan.to_shown(call) for call in round_] for round_ in rounds]

    # --- the prompts ---
    def reset(self, task: Task) -> list[Message]:
        self._events, self._occurrences, self._in_flight = [], {}, 0
        messages = self.inner.reset(task)
        self._plan = None  # the task may change the tool set: rebuild (the same draws give the same plan)
        plan = self.plan()
        mentions = plan.mentions()
        originals = tuple(mentions)
        out = []
        last_user = max((i for i, m in enumerate(messages) if m.role == "user"), default=None)
        for i, message in enumerate(messages):
            content = message.content
            if message.role == "system" and (d := self.draws.get("system_prompt")) is not None:
                content, params = perturb_system(content, d["strength"], random.Random(d["seed"]), keep=originals)
                self._note("system_prompt", params)
            if i == last_user and (d := self.draws.get("user_prompt")) is not None:
                content, params = perturb_user(content, d["strength"], random.Random(d["seed"]))
                self._note("user_prompt", params)
            if message.role in ("system", "user"):
                content = mention_tools(content, mentions)
            out.append(message.model_copy(update={"content": content}))
        return out

    def _note(self, kind: str, params: dict[str, Any]) -> None:
        for entry in self.record["applied"]:
            if entry["kind"] == kind:
                entry["params"].update(params)

    # --- the calls ---
    async def execute(self, call: ToolCall) -> str:
        return (await self.execute_traced(call))[1]

    async def execute_traced(self, call: ToolCall) -> tuple[str, str]:
        """`execute`, returning (the wrapped environment's own output, the output as shown). A scripted
        solver reads the first and writes the second into its conversation (perturb/gold.py), so it
        never has to parse a perturbed rendering."""
        responses = self.draws.get("tool_responses")
        error_style = responses["error_style"] if responses else "plain"
        key = call_key(call.name, call.arguments)
        occurrence = self._occurrences.get(key, 0)
        self._occurrences[key] = occurrence + 1
        limit = (self.draws.get("environment") or {}).get("max_parallel")
        slot = self._in_flight
        self._in_flight += 1
        try:
            await asyncio.sleep(0)  # calls of one round overlap here, as they would over a network
            if limit is not None and slot >= limit:
                self._event("failure", call, occurrence, cause="rate_limit", message=rate_limit_message(limit))
                raise ToolError(render_error(rate_limit_message(limit), error_style))
            try:
                output = await self._run(call, occurrence)
            except ToolError as exc:
                raise ToolError(render_error(str(exc), error_style)) from None
        finally:
            self._in_flight -= 1
        if responses is None:
            return output, output
        rng = random.Random(f"{responses['seed']}|{key}|{occurrence}")
        noise = responses["noise_fields"] if rng.random() < responses["noise_rate"] else 0
        text, done = render_response(output, responses["style"], noise=noise, reorder=responses["reorder"],
                                     truncate_at=responses["truncate_at"], rng=rng)
        if "truncated_at" in done:
            self._event("truncate", call, occurrence, kept_chars=done["truncated_at"])
        return output, text

    async def _run(self, call: ToolCall, occurrence: int) -> str:
        plan = self.plan()
        original = plan.to_original(call)
        if original is None:  # a distractor: a canned answer, the environment never sees it
            tool = plan.find(call.name)
            assert tool is not None and tool.canned is not None
            return tool.canned
        seen = len(self.inner.events())
        try:
            return await self.inner.execute(original)
        except ToolError:
            if self._injected(original, seen):  # by the noise layer: a retry will succeed
                self._event("failure", call, occurrence, cause="transient")
            raise

    def _injected(self, original: ToolCall, seen: int) -> bool:
        """Whether the wrapped environment recorded an injected failure of this very call since
        it had `seen` events (concurrent calls may have added theirs meanwhile)."""
        key = call_key(original.name, original.arguments)
        return any(e.get("kind") == "failure" and call_key(e.get("tool", ""), e.get("arguments", {})) == key
                   for e in self.inner.events()[seen:])

    def _event(self, kind: str, call: ToolCall, occurrence: int, **detail: Any) -> None:
        self._events.append({"kind": kind, "tool": call.name, "arguments": json.loads(json.dumps(call.arguments, default=str)),
                             "occurrence": occurrence, **detail})

    def events(self) -> list[dict[str, Any]]:
        """This layer's events (calls named as the agent made them), then the wrapped environment's,
        whose kinds get an `inner_` prefix (their calls carry the original names)."""
        inner = [{**e, "kind": f"inner_{e.get('kind')}"} for e in self.inner.events()]
        return [*self._events, *inner]

    def reward(self, trajectory: Trajectory, *, excused_tool_errors: int = 0) -> RewardResult:
        """The wrapped reward; rate-limit rejections are excused like injected failures (the noise
        layer excuses its own), and the perturbation record is put on the trajectory."""
        trajectory.perturbations = self.record
        limited = sum(1 for e in self._events if e.get("cause") == "rate_limit")
        result = self.inner.reward(trajectory, excused_tool_errors=excused_tool_errors + limited)
        result.evidence["perturbations"] = self.record
        return result


def _belongs(change: dict[str, Any], kind: str) -> bool:
    set_changes = {"split", "merge", "json_swap", "distractors", "order"}
    return (change["change"] in set_changes) == (kind == "tool_set")
