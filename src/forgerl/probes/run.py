"""One policy through the probes: resolve the model and its chat format, load it once behind the
built-in engine, run the reading probes and (when asked) the naming table, close it."""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from forgerl.chat import get_format
from forgerl.engine import load_engine
from forgerl.errors import ConfigError
from forgerl.model.loading import BUILTIN_MODELS, DEFAULT_POLICY_DIR, resolve_model_dir
from forgerl.perturb.spec import CHAT_FORMATS
from forgerl.probes.naming import NAMING_SETTINGS, naming_table
from forgerl.probes.reader import EngineReader
from forgerl.probes.reading import READING_PROBES, run_reading_probes

ALL_PROBES = (*READING_PROBES, "naming")
DEFAULT_PROBES = READING_PROBES
"""Naming is opt-in: 8 scaffolds of whole agent episodes take minutes per policy (the default policy at
32 tasks per style: 14 min on 2 busy cores, 5 min of CPU), and at the few tasks per style that would
fit in a minute its Wilson intervals are too wide to read; the reading probes take seconds."""
READING_PROMPT_TOKENS = 1024
"""Room for the longest reading prompt (16 key/value pairs: under 300 tokens with the project's
tokenizer); the engine's context is this plus --max-tokens."""


def parse_probes(text: str) -> list[str]:
    """`coined,digits` -> ['coined', 'digits']; `all` -> every probe; unknown names are an error."""
    names = [p.strip() for p in text.split(",") if p.strip()]
    if names == ["all"]:
        return list(ALL_PROBES)
    unknown = [p for p in names if p not in ALL_PROBES]
    if unknown or not names:
        raise ConfigError(f"unknown probe(s) {unknown or [text]}", hint=f"choose from {', '.join(ALL_PROBES)} or all")
    return list(dict.fromkeys(names))


def model_path(model: str) -> str:
    """`smollm2` -> SmolLM2-135M-Instruct converted once into the forgerl cache (as `forgerl bench`
    does); anything else as `--model` takes it everywhere."""
    if model != "smollm2":
        return model
    from forgerl.engine.vllm.checkpoints import smollm2_checkpoint  # heavy: transformers' GGUF reader, only for smollm2

    cache = Path(os.environ.get("FORGERL_CACHE", Path.home() / ".cache" / "forgerl"))
    return str(smollm2_checkpoint(cache / "smollm2-135m-instruct"))


def model_chat_format(model: str) -> str:
    """The format a policy speaks: the one it was trained in (its forgerl.json `chat_format`); for
    another checkpoint, the first built-in format whose end-of-message marker its tokenizer already
    has as a token (SmolLM2's `<|im_end|>`: hermes), since added markers start untrained; else minimax_m2."""
    if model in BUILTIN_MODELS:
        directory = DEFAULT_POLICY_DIR if model == "default" else None
    else:
        directory = Path(resolve_model_dir(model))
    if directory is None:
        return "minimax_m2"
    record = directory / "forgerl.json"
    if record.is_file():
        return str(json.loads(record.read_text()).get("chat_format", "minimax_m2"))
    from transformers import AutoTokenizer

    vocab = AutoTokenizer.from_pretrained(directory).get_vocab()
    return next((name for name in CHAT_FORMATS if get_format(name).end_of_message in vocab), "minimax_m2")


def probe_model(model: str, *, n: int, probes: Sequence[str] = DEFAULT_PROBES, chat_format: str | None = None,
                max_tokens: int = 96, naming_n: int = 32, log: Callable[[str], None] | None = None) -> dict[str, Any]:
    """{model, chat_format, n, probes: {name: result}} for one policy."""
    path = model_path(model)
    fmt = chat_format or model_chat_format(path)
    naming = "naming" in probes
    context = max(NAMING_SETTINGS["max_context"] if naming else 0, READING_PROMPT_TOKENS + max_tokens)
    engine = load_engine(path, chat_format=fmt, max_context=context, speculative=0,
                         num_slots=min(64, max(n, naming_n if naming else 1)))
    try:
        reading = [p for p in probes if p in READING_PROBES]
        results = run_reading_probes(EngineReader(engine), get_format(fmt), n, reading, max_tokens, log)
        if naming:
            t0 = time.perf_counter()
            results["naming"] = {"scaffolds": naming_table(engine, fmt, naming_n), "seconds": time.perf_counter() - t0}
            if log is not None:
                log(f"  naming: done in {results['naming']['seconds']:.0f} s")
    finally:
        engine.close()
    return {"model": model, "chat_format": fmt, "n": n, "naming_n": naming_n if naming else None,
            "max_tokens": max_tokens, "probes": results}
