"""Tokenizers: fitting any Hugging Face tokenizer to the chat formats, and the project's own.

Two jobs:

* `prepare_tokenizer` makes any HF tokenizer usable with a chat format: every marker of the
  format must be ONE token, or a marker could be split differently depending on its neighbours
  and the engine could not stop on the end-of-message marker. Missing markers are added as
  special tokens (the caller then resizes the model's embeddings), and a pad token is set.
* The embedded default model (DESIGN.md "The embedded default") needs a small tokenizer that
  knows the formats' markers. It is a byte-level BPE trained with `tokenizers` on text this module
  generates deterministically: synthetic tool-use episodes rendered in every registered format,
  arithmetic, and short English and code snippets. The result ships in forgerl/assets/tokenizer
  and `train_default_tokenizer` rebuilds it bit for bit:

      python -m forgerl.model.tokenizer --out src/forgerl/assets/tokenizer
      python -m forgerl.model.tokenizer --digit-groups --out src/forgerl/assets/tokenizer-digits

The second is the variant that pre-training starts from (DIGIT_GROUP says why). Because the corpus
contains rendered episodes, changing a format's text changes the trained vocabulary: rerun the
commands above after such a change (a test compares them).
"""

from __future__ import annotations

import argparse
import functools
import json
import random
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from forgerl.chat.base import ChatFormat, get_format, list_formats, segments_text
from forgerl.errors import ConfigError
from forgerl.types import Message, ToolCall, ToolSpec

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase

PAD_TOKEN = "<|pad|>"
DEFAULT_VOCAB_SIZE = 4096
DEFAULT_SEED = 20251123
DEFAULT_EOS = "[e~["  # the end-of-message marker of the default model's format (minimax_m2)
DIGIT_GROUP = r"\d{1,3}"
"""The digit-group variant cuts digits into groups of at most three, left to right, before BPE sees
them (as Llama 3 does).

Why: with byte-level BPE alone the corpus's many numbers turned 2,934 of the default's 4,096 tokens
into digit strings (` 186636`, `564820`), most of them rare in any training text. A model only
learns to write a token it has often been trained to predict, so copying a number failed exactly on
its rare tokens (docs/reading.md, "The tokenizer held back digit copying"). Groups of at most three
digits give at most 1,110 digit tokens, every one frequent, and a number splits the same way
wherever it stands. The same corpus then fills 2,247 tokens, not 4,096. It is what pre-training
for issue 20 starts from (`tiny-random-digits`); the shipped default policy and `tiny-random` keep
the plain tokenizer until a new default is built on it."""
ASSET_DIR = Path(__file__).resolve().parent.parent / "assets" / "tokenizer"
DIGITS_ASSET_DIR = ASSET_DIR.with_name("tokenizer-digits")

FormatLike = ChatFormat | str | type[ChatFormat]


def _as_format(fmt: FormatLike) -> ChatFormat:
    if isinstance(fmt, ChatFormat):
        return fmt
    if isinstance(fmt, str):
        return get_format(fmt)
    return fmt()


def format_markers(fmt_or_formats: FormatLike | Sequence[FormatLike]) -> list[str]:
    """The markers of one or several formats, in order, without duplicates."""
    if isinstance(fmt_or_formats, (ChatFormat, str, type)):
        formats = [_as_format(fmt_or_formats)]
    else:
        formats = [_as_format(f) for f in fmt_or_formats]
    out: list[str] = []
    for f in formats:
        out.extend(t for t in f.special_tokens if t not in out)
    return out


def prepare_tokenizer(
    tokenizer: PreTrainedTokenizerBase, fmt_or_formats: FormatLike | Sequence[FormatLike]
) -> PreTrainedTokenizerBase:
    """Make `tokenizer` fit the format(s): markers become single special tokens, a pad is set.

    Mutates and returns `tokenizer`. A marker counts as present only when it is an added token
    (added tokens are matched before BPE, so they stay one id whatever surrounds them). When this
    adds tokens, resize the model's embeddings to `len(tokenizer)`.
    """
    markers = format_markers(fmt_or_formats)
    added = set(tokenizer.get_added_vocab())
    missing = [m for m in markers if m not in added]
    if missing:
        from tokenizers import AddedToken

        tokenizer.add_tokens(
            [AddedToken(m, special=True, normalized=False, lstrip=False, rstrip=False, single_word=False) for m in missing],
            special_tokens=True,
        )
    if tokenizer.pad_token is None:
        tokenizer.add_special_tokens({"pad_token": PAD_TOKEN})
    for m in markers:
        ids = tokenizer.encode(m, add_special_tokens=False)
        if len(ids) != 1:
            raise ConfigError(f"marker {m!r} encodes to {len(ids)} tokens after preparation; expected exactly 1")
    return tokenizer


# --- the training corpus -------------------------------------------------------------------------

_CITIES = ["Paris", "Rome", "Tokyo", "Lima", "Oslo", "Cairo", "Berlin", "Madrid", "Seoul", "Quito", "Zürich", "Kraków"]
_WORDS = (
    "the a an to of and in is it for on with as at by from this that we you they can will should "
    "file value result number list test error answer check read write run call tool search find "
    "need first then next now done total sum count line word text data task step output input "
    "return string integer function python code path directory query weather temperature "
    "compute add multiply subtract divide score item name key true false null"
).split()
_TOOLS = [
    ToolSpec(
        name="get_weather",
        description="Get the current weather in a city.",
        parameters={
            "type": "object",
            "properties": {
                "location": {"type": "string", "description": "City name"},
                "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]},
            },
            "required": ["location"],
        },
    ),
    ToolSpec(
        name="calculator",
        description="Evaluate an arithmetic expression.",
        parameters={"type": "object", "properties": {"expression": {"type": "string"}}, "required": ["expression"]},
    ),
    ToolSpec(
        name="read_file",
        description="Read a text file from the workspace.",
        parameters={
            "type": "object",
            "properties": {"path": {"type": "string"}, "max_lines": {"type": "integer"}},
            "required": ["path"],
        },
    ),
    ToolSpec(
        name="write_file",
        description="Write text to a file in the workspace.",
        parameters={
            "type": "object",
            "properties": {"path": {"type": "string"}, "content": {"type": "string"}, "append": {"type": "boolean"}},
            "required": ["path", "content"],
        },
    ),
    ToolSpec(
        name="search",
        description="Search documents and return the top results.",
        parameters={
            "type": "object",
            "properties": {
                "query": {"type": "string"},
                "top_k": {"type": "integer"},
                "filters": {"type": "object"},
                "tags": {"type": "array", "items": {"type": "string"}},
            },
            "required": ["query"],
        },
    ),
    ToolSpec(
        name="run_python",
        description="Run a Python snippet and return its stdout.",
        parameters={"type": "object", "properties": {"code": {"type": "string"}, "timeout": {"type": "number"}}},
    ),
]


def _sentence(rng: random.Random, lo: int = 4, hi: int = 14) -> str:
    words = [rng.choice(_WORDS) for _ in range(rng.randint(lo, hi))]
    return words[0].capitalize() + " " + " ".join(words[1:]) + rng.choice([".", ".", "?", "!"])


def _code(rng: random.Random) -> str:
    name = rng.choice(["total", "count_words", "mean", "parse_line", "solve", "add", "scale"])
    arg = rng.choice(["xs", "text", "n", "values", "line"])
    body = rng.choice(
        [
            f"    return sum({arg})",
            f"    result = 0\n    for x in {arg}:\n        result += x * {rng.randint(2, 9)}\n    return result",
            f"    return len({arg}.split())",
            f"    if not {arg}:\n        return None\n    return {arg}[0]",
            f'    return {{"{arg}": {arg}, "ok": True}}',
        ]
    )
    return f"def {name}({arg}):\n{body}\n\nprint({name}({rng.choice(['[1, 2, 3]', repr('a b c'), '10'])}))\n"


def _arithmetic(rng: random.Random) -> tuple[str, int]:
    a, b = rng.randint(0, 999), rng.randint(0, 999)
    op = rng.choice(["+", "-", "*"])
    return f"{a} {op} {b}", eval(f"{a} {op} {b}")  # noqa: S307 (our own digits and operator)


def _call(rng: random.Random, tool: ToolSpec) -> tuple[ToolCall, str]:
    n = tool.name
    if n == "get_weather":
        city = rng.choice(_CITIES)
        args: dict[str, Any] = {"location": city}
        if rng.random() < 0.6:
            args["unit"] = rng.choice(["celsius", "fahrenheit"])
        result = json.dumps({"location": city, "temp": rng.randint(-10, 35), "sky": rng.choice(["sunny", "rain"])})
    elif n == "calculator":
        expr, value = _arithmetic(rng)
        args, result = {"expression": expr}, str(value)
    elif n == "read_file":
        args = {"path": f"src/{rng.choice(_WORDS)}.py"}
        if rng.random() < 0.5:
            args["max_lines"] = rng.randint(1, 200)
        result = _code(rng)
    elif n == "write_file":
        args = {"path": f"out/{rng.choice(_WORDS)}.txt", "content": _sentence(rng)}
        if rng.random() < 0.5:
            args["append"] = rng.random() < 0.5
        result = json.dumps({"ok": True, "bytes": len(args["content"])})
    elif n == "search":
        args = {"query": " ".join(rng.choice(_WORDS) for _ in range(3)), "top_k": rng.randint(1, 10)}
        if rng.random() < 0.4:
            args["tags"] = [rng.choice(_WORDS) for _ in range(rng.randint(1, 3))]
        if rng.random() < 0.3:
            args["filters"] = {"year": rng.randint(1990, 2025), "lang": "en"}
        result = json.dumps([{"title": _sentence(rng, 2, 5), "score": round(rng.random(), 3)} for _ in range(2)])
    else:
        expr, value = _arithmetic(rng)
        args = {"code": f"print({expr})"}
        if rng.random() < 0.5:
            args["timeout"] = rng.choice([1.5, 10, 30.0])
        result = f"{value}\n"
    return ToolCall(id=f"call_{rng.randrange(16**8):08x}", name=n, arguments=args), result


def synthetic_episode(rng: random.Random) -> tuple[list[Message], list[ToolSpec]]:
    """A plausible multi-turn tool-use conversation (used for the corpus and for examples)."""
    tools = rng.sample(_TOOLS, rng.randint(1, len(_TOOLS)))
    msgs: list[Message] = []
    if rng.random() < 0.5:
        msgs.append(Message(role="system", content=_sentence(rng)))
    for _turn in range(rng.randint(1, 2)):
        if rng.random() < 0.3:
            expr, value = _arithmetic(rng)
            msgs.append(Message(role="user", content=f"What is {expr}?"))
            msgs.append(Message(role="assistant", reasoning=f"{expr} = {value}.", content=f"{expr} = {value}"))
            continue
        msgs.append(Message(role="user", content=_sentence(rng, 5, 20)))
        for _round in range(rng.randint(1, 3)):
            pairs = [_call(rng, rng.choice(tools)) for _ in range(rng.randint(1, 3))]
            content = _sentence(rng) if rng.random() < 0.3 else ""
            msgs.append(
                Message(role="assistant", reasoning=_sentence(rng, 6, 25), content=content, tool_calls=[c for c, _ in pairs])
            )
            msgs += [Message(role="tool", content=r, tool_call_id=c.id, name=c.name) for c, r in pairs]
        msgs.append(Message(role="assistant", reasoning=_sentence(rng), content=_sentence(rng, 3, 12)))
    return msgs, tools


def corpus(seed: int = DEFAULT_SEED, episodes: int = 800) -> Iterator[str]:
    """The deterministic training text: episodes rendered in every format, math, prose, code."""

    rng = random.Random(seed)
    formats = [get_format(n) for n in list_formats()]
    for _ in range(episodes):
        msgs, tools = synthetic_episode(rng)
        for fmt in formats:
            yield segments_text(fmt.render(msgs, tools, add_generation_prompt=False))
        expr, value = _arithmetic(rng)
        yield f"{expr} = {value}\n"
        yield " ".join(_sentence(rng) for _ in range(rng.randint(1, 4)))
        yield _code(rng)


def all_markers() -> list[str]:
    """`<|pad|>` first, then every registered format's markers (registry order, no duplicates)."""
    return [PAD_TOKEN, *format_markers(list_formats())]


def train_default_tokenizer(
    out_dir: str | Path | None = None, *, vocab_size: int = DEFAULT_VOCAB_SIZE, seed: int = DEFAULT_SEED,
    digit_groups: bool = False,
) -> PreTrainedTokenizerBase:
    """Train the default byte-level BPE (with `digit_groups`, its DIGIT_GROUP variant); save it to
    `out_dir` (save_pretrained) when given."""
    from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    bpe = Tokenizer(models.BPE())
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    if digit_groups:
        bpe.pre_tokenizer = pre_tokenizers.Sequence([
            pre_tokenizers.Split(Regex(DIGIT_GROUP), behavior="isolated"), bpe.pre_tokenizer])
    bpe.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        min_frequency=2,
        special_tokens=all_markers(),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    bpe.train_from_iterator(corpus(seed), trainer)
    tok = PreTrainedTokenizerFast(
        tokenizer_object=bpe,
        pad_token=PAD_TOKEN,
        eos_token=DEFAULT_EOS,
        clean_up_tokenization_spaces=False,
        model_max_length=32768,
    )
    if out_dir is not None:
        Path(out_dir).mkdir(parents=True, exist_ok=True)
        tok.save_pretrained(str(out_dir))
    return tok


@functools.lru_cache(maxsize=2)
def load_default_tokenizer(digit_groups: bool = False) -> PreTrainedTokenizerBase:
    """The shipped default tokenizer (or its digit-group variant), loaded once per process; the same
    object every call.

    Shared: do not mutate it (copy.deepcopy it first, e.g. before `prepare_tokenizer`).
    """
    from transformers import PreTrainedTokenizerFast

    where = DIGITS_ASSET_DIR if digit_groups else ASSET_DIR
    if not (where / "tokenizer.json").exists():
        flag = " --digit-groups" if digit_groups else ""
        raise ConfigError(
            f"the default tokenizer is missing from {where}; rebuild it with "
            f"`python -m forgerl.model.tokenizer{flag} --out {where}`"
        )
    return PreTrainedTokenizerFast.from_pretrained(str(where))


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Train forgerl's default tokenizer (deterministic).")
    parser.add_argument("--out", default=None, help="output directory (default: the shipped asset)")
    parser.add_argument("--digit-groups", action="store_true",
                        help="the variant that cuts digits into groups of at most three (assets/tokenizer-digits)")
    parser.add_argument("--vocab-size", type=int, default=DEFAULT_VOCAB_SIZE)
    parser.add_argument("--seed", type=int, default=DEFAULT_SEED)
    args = parser.parse_args(argv)
    out = args.out or str(DIGITS_ASSET_DIR if args.digit_groups else ASSET_DIR)
    tok = train_default_tokenizer(out, vocab_size=args.vocab_size, seed=args.seed, digit_groups=args.digit_groups)
    print(f"saved a {len(tok)}-token tokenizer to {out}")


if __name__ == "__main__":
    main()
