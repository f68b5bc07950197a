"""A black-box tool-using agent written only against the official `openai` client.

It knows nothing of forgerl: it is configured the way agent programs usually are, by
OPENAI_BASE_URL and OPENAI_API_KEY (a forgerl gateway session hands out both), reads its task from
`GET {base_url}/task` and runs the task's tools with `POST {base_url}/tools/call`; everything else
is a plain chat-completions loop with tool calls. It sends its reasoning back with every call
(`reasoning_content`, or inline `<think>` with --inline-think) so that the gateway can extend the
same token-exact branch instead of starting a new one.

    OPENAI_BASE_URL=http://127.0.0.1:8100/sessions/<id>/v1 OPENAI_API_KEY=fgw-... python examples/openai_agent.py
"""

from __future__ import annotations

import argparse
import json
import os
from typing import Any

from openai import OpenAI


def _reasoning_of(message: Any) -> str | None:
    extra = getattr(message, "model_extra", None) or {}
    return extra.get("reasoning_content") or extra.get("reasoning")


def run_agent(base_url: str, api_key: str, *, max_turns: int = 8, max_tokens: int = 256, temperature: float = 1.0,
              inline_think: bool = False, seed: int | None = None) -> dict[str, Any]:
    """Solve the session's task; returns what happened (turns, whether the environment said done)."""
    client = OpenAI(base_url=base_url, api_key=api_key, max_retries=0, timeout=120)
    task = client.get("/task", cast_to=object)
    messages: list[dict[str, Any]] = list(task["messages"])
    tools = task["tools"]
    done = False
    turn = 0
    for turn in range(1, max_turns + 1):
        response = client.chat.completions.create(
            model=task["model"], messages=messages, tools=tools or None, max_tokens=max_tokens,
            temperature=temperature, seed=None if seed is None else seed + turn,
        )
        choice = response.choices[0]
        reply = choice.message
        reasoning = _reasoning_of(reply)
        assistant: dict[str, Any] = {"role": "assistant", "content": reply.content or ""}
        if reasoning is not None:
            if inline_think:
                assistant["content"] = f"<think>\n{reasoning}\n</think>\n\n{assistant['content']}"
            else:
                assistant["reasoning_content"] = reasoning
        calls = reply.tool_calls or []
        if calls:
            assistant["tool_calls"] = [
                {"id": c.id, "type": "function",
                 "function": {"name": c.function.name, "arguments": c.function.arguments}}
                for c in calls
            ]
        messages.append(assistant)
        if choice.finish_reason == "length" or not calls:
            break  # a final answer (or a cut-off reply): this agent stops here
        for c in calls:
            result = client.post("/tools/call", cast_to=object,
                                 body={"name": c.function.name, "arguments": c.function.arguments, "id": c.id})
            messages.append({"role": "tool", "tool_call_id": c.id, "content": result["content"]})
            done = done or bool(result.get("done"))
        if done:
            break
    return {"turns": turn, "done": done, "messages": len(messages)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--max-turns", type=int, default=8)
    parser.add_argument("--max-tokens", type=int, default=256)
    parser.add_argument("--temperature", type=float, default=1.0)
    parser.add_argument("--inline-think", action="store_true", help="send reasoning back as <think> in content")
    args = parser.parse_args()
    outcome = run_agent(os.environ["OPENAI_BASE_URL"], os.environ["OPENAI_API_KEY"], max_turns=args.max_turns,
                        max_tokens=args.max_tokens, temperature=args.temperature, inline_think=args.inline_think)
    print(json.dumps(outcome))


if __name__ == "__main__":
    main()
