"""Tool-response perturbations: the same result rendered as text, JSON, a table, key-value or XML,
with extra noise fields, reordered fields, long outputs truncated, and errors worded in other styles.

The value itself always survives (a renderer wraps, it never rewrites), so a result read from a
table is the same number as one read from plain text; truncation only cuts outputs longer than a
threshold far above any single value the built-in families return.
"""

from __future__ import annotations

import json
import random
from typing import Any

TRUNCATION_MARKER = " ...[truncated]"
NOISE_FIELDS = ("request_id", "latency_ms", "cached", "server", "api_version")


def _noise_value(name: str, rng: random.Random) -> Any:
    if name == "request_id":
        return f"req-{rng.randrange(16**6):06x}"
    if name == "latency_ms":
        return rng.randint(3, 250)
    if name == "cached":
        return rng.random() < 0.5
    if name == "server":
        return rng.choice(["eu-1", "us-2", "ap-3"])
    return rng.choice(["v1", "v2", "2024-06"])


def render_response(output: str, style: str, *, noise: int = 0, reorder: bool = False, truncate_at: int | None = None,
                    rng: random.Random) -> tuple[str, dict[str, Any]]:
    """`output` in `style`, with `noise` extra fields, fields shuffled when `reorder`, and cut at
    `truncate_at` characters (with a visible marker) when it is longer. Returns the text and what was done."""
    done: dict[str, Any] = {"style": style}
    if truncate_at is not None and len(output) > truncate_at:
        output = output[:truncate_at] + TRUNCATION_MARKER
        done["truncated_at"] = truncate_at
    fields: dict[str, Any] = {"result": output}
    for name in rng.sample(NOISE_FIELDS, min(noise, len(NOISE_FIELDS))):
        fields[name] = _noise_value(name, rng)
    if reorder and len(fields) > 1:
        keys = list(fields)
        rng.shuffle(keys)
        fields = {k: fields[k] for k in keys}
    if len(fields) > 1:
        done["fields"] = list(fields)
    if style == "json":
        return json.dumps(fields, ensure_ascii=False), done
    if style == "table":
        header = "| " + " | ".join(fields) + " |"
        rule = "|" + "---|" * len(fields)
        row = "| " + " | ".join(str(v).replace("|", "\\|") for v in fields.values()) + " |"
        return f"{header}\n{rule}\n{row}", done
    if style == "kv":
        return "\n".join(f"{k}: {v}" for k, v in fields.items()), done
    if style == "xml":
        return "".join(f"<{k}>{v}</{k}>" for k, v in fields.items()), done
    extras = {k: v for k, v in fields.items() if k != "result"}  # text: the output, then the extras in brackets
    tail = " (" + ", ".join(f"{k}={v}" for k, v in extras.items()) + ")" if extras else ""
    return f"{output}{tail}", done


def render_error(message: str, style: str) -> str:
    """A tool error's message in another style; the message (what went wrong, what to do) is kept."""
    if style == "code":
        return f"ERROR 400: {message}"
    if style == "json":
        return json.dumps({"error": {"message": message, "type": "tool_error"}}, ensure_ascii=False)
    if style == "sentence":
        return f"The tool could not complete the request. Reason: {message}"
    return message
