"""The BFCL environment: a stateful tool environment over the suite's simulated APIs (multi-turn
categories) or a one-call tool-use task (single-turn categories), scored by the suite's checkers.

Multi-turn. One task is one user turn of one BFCL conversation. The earlier turns are replayed with
the suite's ground truth (teacher forcing): their gold calls run on the simulated APIs, loaded from
the item's initial state, and appear in the opening messages with their real outputs. The agent
then acts on the current turn through the APIs' methods (their JSON schemas are the ToolSpecs).
The verdict is the suite's own: `state_checker` compares every simulated system with a copy that
ran the ground truth of all turns up to this one, and `response_checker` asks that every gold
call's output also appears among the episode's outputs. Turn-level tasks keep the existing agent
loop (one user turn per episode); see the package docstring for the whole-conversation variant.

Model output is untrusted: a call is dispatched by name to a public method of an involved class
that the item offers, with the parsed JSON arguments as keywords. Nothing is `eval`-ed (the suite's
own executor evaluates call strings; forgerl does not use it).

Single-turn. The agent's tool calls are recorded (the functions do not exist; the observation says
the call was recorded), the episode ends after its first round of calls, and the suite's
`ast_checker` decides, as BFCL does, whether the calls match a possible answer.
"""

from __future__ import annotations

import copy
import importlib
import inspect
import json
from typing import Any

from forgerl.envs.base import Environment, Task
from forgerl.envs.bfcl import data
from forgerl.envs.rewards import Verdict
from forgerl.errors import ConfigError, ToolError, VerifierError
from forgerl.types import Message, ToolCall, ToolSpec, Trajectory

FAMILY = "bfcl"
MULTI_TURN_SYSTEM = (
    "You help the user by calling the tools of the systems you are connected to. Make the calls the "
    "request needs, one step at a time, reading each result. When the request is done, or you need "
    "information the user did not give, reply in plain text without calling a tool."
)
SINGLE_TURN_SYSTEM = (
    "You answer the user's request by calling the right function(s) with the right arguments. Make "
    "all the calls the request needs in one reply."
)
TURN_DONE = "Done."
MODEL_NAME = "forgerl"  # the name the suite's checkers are given


def _suite_module(path: str) -> Any:
    data._package_dir()  # a clear message when bfcl-eval is missing
    return importlib.import_module(path)


def ast_checker_module() -> Any:
    """The suite's AST checker. Its module imports `constants.model_config`, which imports every
    provider SDK only to look up one flag (dots in function names); a minimal stand-in answers that
    lookup for forgerl, where function names are kept as they are."""
    import sys
    import types

    name = "bfcl_eval.constants.model_config"
    if name not in sys.modules:
        stand_in = types.ModuleType(name)
        stand_in.MODEL_CONFIG_MAPPING = {}  # type: ignore[attr-defined]
        sys.modules[name] = stand_in
    sys.modules[name].MODEL_CONFIG_MAPPING.setdefault(MODEL_NAME, types.SimpleNamespace(underscore_to_dot=False))
    return _suite_module("bfcl_eval.eval_checker.ast_eval.ast_checker")


def _result_text(value: Any) -> str:
    """A method's return value as the suite's executor writes it (what response_checker compares)."""
    if isinstance(value, str):
        return value
    if isinstance(value, dict):
        try:
            return json.dumps(value)
        except (TypeError, ValueError):
            return str(value)
    return str(value)


class SimulatedSystems:
    """Fresh instances of an item's API classes, loaded with its initial state, and a safe dispatch."""

    def __init__(self, item: dict[str, Any]) -> None:
        from bfcl_eval.constants.executable_backend_config import CLASS_FILE_PATH_MAPPING, STATELESS_CLASSES

        long_context = "long_context" in item["category"]
        self.instances: dict[str, Any] = {}
        self.methods: dict[str, Any] = {}
        for class_name in item["involved_classes"]:
            instance = getattr(_suite_module(CLASS_FILE_PATH_MAPPING[class_name]), class_name)()
            if class_name not in STATELESS_CLASSES:
                config = copy.deepcopy(item["initial_config"].get(class_name, {}))
                instance._load_scenario(config, long_context=long_context)
            self.instances[class_name] = instance
            for method_name, method in inspect.getmembers(instance, predicate=inspect.ismethod):
                if not method_name.startswith("_"):
                    self.methods[method_name] = method  # a later class wins a name clash, as in the suite
        self.results: list[str] = []

    def parameters(self, name: str) -> list[str]:
        return list(inspect.signature(self.methods[name]).parameters)

    def call(self, call: ToolCall) -> str:
        """Run one call; the output text is recorded (errors too, as the suite records them)."""
        method = self.methods.get(call.name)
        if method is None:
            raise ToolError(f"unknown function {call.name!r}")
        try:
            inspect.signature(method).bind(**call.arguments)
        except TypeError as exc:
            self.results.append(f"Error during execution: {exc}")
            raise ToolError(f"bad arguments for {call.name}: {exc}; parameters: {', '.join(self.parameters(call.name))}") from None
        try:
            text = _result_text(method(**call.arguments))
        except Exception as exc:  # the simulated API raised: the model sees it, the checker records it
            self.results.append(f"Error during execution: {exc}")
            raise ToolError(f"{call.name} failed: {type(exc).__name__}: {exc}") from None
        self.results.append(text)
        return text


class BfclEnv(Environment):
    family = FAMILY

    def __init__(self, seed: int = 0) -> None:
        self.seed = seed
        self.task: Task | None = None
        self._item: dict[str, Any] = {}
        self._tools: list[ToolSpec] = []
        self._systems: SimulatedSystems | None = None
        self._prefix_results = 0
        self._calls: list[ToolCall] = []
        self._done = False

    # --- protocol ------------------------------------------------------------------------------

    @property
    def multi_turn(self) -> bool:
        return self._item.get("category", "") in data.MULTI_TURN

    @property
    def done(self) -> bool:
        return self._done

    def tools(self) -> list[ToolSpec]:
        return list(self._tools)

    def reset(self, task: Task) -> list[Message]:
        if "category" not in task.data or "item_id" not in task.data:
            raise ConfigError(f"task {task.id!r} is not a bfcl task (data needs category and item_id); "
                              "make it with forgerl.envs.bfcl.make_task")
        self.task, self._calls, self._done = task, [], False
        self._item = data.item_by_id(task.data["category"], task.data["item_id"])
        if self.multi_turn:
            return self._reset_multi_turn(int(task.data["turn"]))
        self._tools = [data.tool_spec(doc) for doc in self._item["function"]]
        return [Message(role="system", content=SINGLE_TURN_SYSTEM), *self._user_messages(0)]

    async def execute(self, call: ToolCall) -> str:
        if self.task is None:
            raise ToolError("no task: the environment was not reset")
        offered = {spec.name for spec in self._tools}
        if call.name not in offered:
            raise ToolError(f"unknown tool {call.name!r}; available: {', '.join(sorted(offered))}")
        self._calls.append(call)
        if not self.multi_turn:
            self._done = True  # one round of calls is the whole answer
            return f"Call to {call.name} recorded."
        assert self._systems is not None
        return self._systems.call(call)

    def verify(self, trajectory: Trajectory) -> Verdict:
        if self.task is None:
            raise VerifierError("reward() called before reset(): no task to verify against")
        return self._verify_multi_turn() if self.multi_turn else self._verify_single_turn()

    def gold_solution(self, task: Task) -> list[list[ToolCall]]:
        item = data.item_by_id(task.data["category"], task.data["item_id"])
        if task.data["category"] not in data.MULTI_TURN:
            return [data.gold_single_calls(item["ground_truth"], item["function"])]
        systems = SimulatedSystems(item)  # only for the parameter names of positional arguments
        turn = item["ground_truth"][int(task.data["turn"])]
        return [[self._gold_call(systems, text)] for text in turn]  # sequential: later calls need earlier state

    # --- multi-turn ----------------------------------------------------------------------------

    def _user_messages(self, turn: int) -> list[Message]:
        return [Message(role=m["role"], content=m["content"]) for m in self._item["question"][turn]]

    @staticmethod
    def _gold_call(systems: SimulatedSystems, text: str) -> ToolCall:
        name = text.split("(", 1)[0].strip()
        if name not in systems.methods:
            raise VerifierError(f"BFCL ground truth calls {name!r}, which no involved class has")
        return data.parse_call(text, systems.parameters(name))

    def _offered_docs(self) -> list[dict[str, Any]]:
        excluded = set(self._item.get("excluded_function", []))
        return [doc for cls in self._item["involved_classes"] for doc in data.class_docs(cls) if doc["name"] not in excluded]

    def _reset_multi_turn(self, turn: int) -> list[Message]:
        if turn not in data.answerable_turns(self._item):
            raise ConfigError(f"turn {turn} of {self._item['id']} has no ground truth to check against")
        self._systems = systems = SimulatedSystems(self._item)
        self._tools = [data.tool_spec(doc) for doc in self._offered_docs() if doc["name"] in systems.methods]
        messages = [Message(role="system", content=MULTI_TURN_SYSTEM)]
        for earlier in range(turn):  # teacher-forced history: gold calls with their real outputs
            messages.extend(self._user_messages(earlier))
            for text in self._item["ground_truth"][earlier]:
                call = self._gold_call(systems, text)
                try:
                    output = systems.call(call)
                except ToolError as exc:
                    output = f"Error: {exc}"
                messages.append(Message(role="assistant", tool_calls=[call]))
                messages.append(Message(role="tool", content=output, tool_call_id=call.id, name=call.name))
            messages.append(Message(role="assistant", content=TURN_DONE))
        self._prefix_results = len(systems.results)
        return [*messages, *self._user_messages(turn)]

    def _verify_multi_turn(self) -> Verdict:
        checker = _suite_module("bfcl_eval.eval_checker.multi_turn_eval.multi_turn_checker")
        assert self._systems is not None and self.task is not None
        turn = int(self.task.data["turn"])
        reference = SimulatedSystems(self._item)
        for earlier in range(turn + 1):
            for text in self._item["ground_truth"][earlier]:
                try:
                    reference.call(self._gold_call(reference, text))
                except ToolError:
                    pass  # recorded as the suite records it
        gold_outputs = reference.results[len(reference.results) - len(self._item["ground_truth"][turn]):]
        evidence: dict[str, Any] = {
            "checked": "BFCL state_checker (simulated systems equal the ground truth's) and response_checker "
                       f"(every gold output produced), turn {turn} of {self._item['id']}",
            "calls": [{"name": c.name, "arguments": c.arguments} for c in self._calls],
        }
        if not self._calls:
            return Verdict(outcome=0.0, parts={"calls": 0.0, "state_ok": 0.0, "response_ok": 0.0},
                           evidence={**evidence, "found": "no call made"})
        state = checker.state_checker(self._systems.instances, reference.instances)
        response = checker.response_checker(self._systems.results, gold_outputs, turn)
        ok = bool(state["valid"] and response["valid"])
        for result in (state, response):
            if not result["valid"]:  # the differences, not the whole state (a long-context file system is large)
                details = {k: v for k, v in (result.get("details") or {}).items() if not k.endswith("_instance_state")}
                evidence.setdefault("errors", []).append(
                    {"type": result.get("error_type"), "message": result.get("error_message"),
                     "details": _jsonable(details)})
        return Verdict(outcome=1.0 if ok else 0.0,
                       parts={"calls": float(len(self._calls)), "state_ok": float(state["valid"]),
                              "response_ok": float(response["valid"])},
                       evidence={**evidence, "found": "match" if ok else "mismatch"})

    # --- single-turn ---------------------------------------------------------------------------

    def _verify_single_turn(self) -> Verdict:
        from bfcl_eval.constants.enums import Language

        module = ast_checker_module()
        output = [{call.name: dict(call.arguments)} for call in self._calls]
        evidence: dict[str, Any] = {"checked": f"BFCL ast_checker ({self._item['category']}) on the calls",
                                    "calls": output}
        if not output:
            return Verdict(outcome=0.0, parts={"calls": 0.0}, evidence={**evidence, "found": "no call made"})
        result = module.ast_checker(self._item["function"], output, self._item["ground_truth"], Language.PYTHON,
                                    self._item["category"], MODEL_NAME)
        ok = bool(result["valid"])
        if not ok:
            evidence["errors"] = _jsonable(result.get("error"))
        return Verdict(outcome=1.0 if ok else 0.0, parts={"calls": float(len(output))},
                       evidence={**evidence, "found": "match" if ok else "mismatch"})


MAX_EVIDENCE_CHARS = 4000


def _jsonable(value: Any) -> Any:
    """Checker details hold simulated-API objects; keep them JSON-safe and of bounded size (they are
    stored with every trajectory)."""
    try:
        text = json.dumps(value, default=str)
    except (TypeError, ValueError):
        text = json.dumps(str(value))
    if len(text) > MAX_EVIDENCE_CHARS:
        return text[:MAX_EVIDENCE_CHARS] + f"... ({len(text) - MAX_EVIDENCE_CHARS} more characters)"
    return json.loads(text)
