"""The pieces: naming styles, tool-plan mappings both ways with clear errors, response and error
rendering, rate limits."""

from __future__ import annotations

import asyncio
import json
import random

import pytest

from forgerl.envs.base import make_env, sample_task
from forgerl.envs.tool_reasoning import TOOL_SPECS
from forgerl.errors import ToolError
from forgerl.perturb.env import PerturbedEnvironment
from forgerl.perturb.naming import Namer, words
from forgerl.perturb.responses import TRUNCATION_MARKER, render_error, render_response
from forgerl.perturb.text import mention_tools
from forgerl.perturb.tools import ToolPlan, json_swap, merge, renest, split
from forgerl.types import ToolCall

SPECS = list(TOOL_SPECS.values())


@pytest.mark.parametrize(("style", "expected"), [
    ("camel", "getBasket"), ("pascal", "GetBasket"), ("kebab", "get-basket"), ("upper", "GET_BASKET"),
])
def test_casing_styles(style, expected):
    assert Namer(style, random.Random(0)).rename("get_basket") == expected
    assert words(expected) == ["get", "basket"]


def test_coined_names_are_invented_consistent_and_distinct():
    namer = Namer("coined", random.Random(3))
    a, b = namer.rename("get_basket"), namer.rename("submit_answer")
    assert a == Namer("coined", random.Random(3)).rename("get_basket")  # deterministic for a seed
    assert namer.rename("answer") == b.split("_")[1]  # one invented word per original word, all episode long
    assert len(words(a)) == 2 and not {"get", "basket"} & set(words(a))
    coined = {namer.rename(f"w{i}") for i in range(300)}
    assert len(coined) == 300 and all(w.isalpha() and w.islower() for w in coined)  # never two words the same
    assert a != Namer("coined", random.Random(4)).rename("get_basket")


def test_names_stay_unique_in_a_namespace():
    namer = Namer("synonym", random.Random(1))
    taken: set[str] = set()
    names = [namer.rename(n, taken) for n in ("lookup", "search", "lookup_2")]
    assert len(set(names)) == 3


def test_every_plan_change_maps_calls_back_exactly():
    plan = ToolPlan.identity(SPECS)
    lookup, calc, convert = plan.find("lookup"), plan.find("calculator"), plan.find("convert")
    price, weight = split(lookup, "table", ["price", "weight"])
    merged = merge(calc, convert)
    swapped = json_swap(price)
    nested = renest(weight, "input")
    calls = [ToolCall(name="lookup", arguments={"table": "price", "item": "fig"}),
             ToolCall(name="lookup", arguments={"table": "weight", "item": "fig"}),
             ToolCall(name="calculator", arguments={"expression": "1+2"}),
             ToolCall(name="convert", arguments={"value": 3, "from_unit": "kg", "to_unit": "g"})]
    new = ToolPlan([swapped, nested, merged])
    for call in calls:
        shown = new.to_shown(call)
        assert new.to_original(shown).model_dump(exclude={"id"}) == call.model_dump(exclude={"id"})
    assert new.to_shown(calls[0]).arguments == {"payload": json.dumps({"item": "fig"})}
    assert new.to_shown(calls[1]).arguments == {"input": {"item": "fig"}}
    assert new.to_shown(calls[3]).arguments["operation"] == "convert"


@pytest.mark.parametrize(("tool", "arguments", "message"), [
    ("lookup_price_json", {"payload": "{not json"}, "payload must be a JSON object string"),
    ("lookup_price_json", {"payload": "[1]"}, "payload must be a JSON object string"),
    ("lookup_weight", {"input": "fig"}, "must be an object under 'input'"),
    ("calculator_and_convert", {"operation": "sqrt"}, "'operation' must be one of"),
    ("nope", {}, "unknown tool 'nope'"),
])
def test_unmappable_calls_are_tool_errors_that_say_what_to_do(tool, arguments, message):
    plan = ToolPlan.identity(SPECS)
    price, weight = split(plan.find("lookup"), "table", ["price", "weight"])
    new = ToolPlan([json_swap(price), renest(weight, "input"), merge(plan.find("calculator"), plan.find("convert"))])
    with pytest.raises(ToolError, match=message):
        new.to_original(ToolCall(name=tool, arguments=arguments))


def test_mentions_replace_whole_names_only():
    text = "call submit_answer, not submit_answers or my_submit_answer; then submit_answer."
    assert mention_tools(text, {"submit_answer": "Report"}) == "call Report, not submit_answers or my_submit_answer; then Report."


@pytest.mark.parametrize("style", ["text", "json", "table", "kv", "xml"])
def test_responses_keep_the_value_in_every_style(style):
    rng = random.Random(0)
    text, done = render_response("apple, fig", style, noise=2, reorder=True, rng=rng)
    assert "apple, fig" in text and done["style"] == style and len(done["fields"]) == 3
    if style == "json":
        assert json.loads(text)["result"] == "apple, fig"


def test_truncation_only_cuts_long_outputs():
    short, _ = render_response("42", "text", truncate_at=10, rng=random.Random(0))
    long, done = render_response("x" * 30, "text", truncate_at=10, rng=random.Random(0))
    assert short == "42" and long == "x" * 10 + TRUNCATION_MARKER and done["truncated_at"] == 10


@pytest.mark.parametrize("style", ["plain", "code", "json", "sentence"])
def test_error_styles_keep_the_message(style):
    assert "no item 'x'; items: fig" in render_error("no item 'x'; items: fig", style)


def test_rate_limit_rejects_calls_beyond_the_limit_and_is_recorded():
    task = sample_task("tool-reasoning", 0, difficulty=5)
    record = {"applied": []}
    env = PerturbedEnvironment(make_env("tool-reasoning", 0), {"environment": {"max_parallel": 2}}, record)
    env.reset(task)
    calls = [ToolCall(name="lookup", arguments={"table": "price", "item": i}) for i in task.data["db"]["price"]][:4]

    async def one(call):
        try:
            return await env.execute(call)
        except ToolError as exc:
            return f"ERR {exc}"

    async def round_():
        return await asyncio.gather(*(one(c) for c in calls))

    results = asyncio.run(round_())
    assert [r.startswith("ERR rate limit exceeded") for r in results] == [False, False, True, True]
    limited = [e for e in env.events() if e.get("cause") == "rate_limit"]
    assert [e["arguments"]["item"] for e in limited] == [c.arguments["item"] for c in calls[2:]]
    again = asyncio.run(one(calls[2]))  # alone, the retry goes through
    assert not again.startswith("ERR")
