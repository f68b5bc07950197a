"""Probe 4: issue 7's naming-style table, success on tool-reasoning per naming style of the tools.

The scaffolds are those of scripts/naming_sft_probe.py (the default scaffold, then every naming
style of perturb/naming.py at probability 1 with descriptions unchanged; PascalCase is the style
training holds out), run by `perturb.evaluate.evaluate_scaffolds` on its held-out tasks with issue
7's settings (difficulty 3, 192-token turns, 2560-token context), so the numbers compare with
docs/experiments.md. These are whole agent episodes, minutes rather than seconds: opt-in.
"""

from __future__ import annotations

from typing import Any

from forgerl.perturb.evaluate import evaluate_scaffolds
from forgerl.perturb.spec import NAMING_STYLES, HeldOutScaffolds, PerturbSpec, Scaffold, ToolInfoSpec

NAMING_ENV = "tool-reasoning"
NAMING_SETTINGS: dict[str, Any] = {"difficulty": (3,), "max_turns": 8, "max_tokens": 192, "max_context": 2560}
"""Issue 7's naming probe (scripts/naming_sft_probe.py): where SFT alone solves difficulty 3."""
HELD_OUT_STYLE = "pascal"
"""The naming style every perturbed training run holds out (perturb/spec.py HeldOutScaffolds)."""


def naming_scaffolds(styles: tuple[str, ...] = NAMING_STYLES) -> list[Scaffold]:
    """The default scaffold, then one per naming style (tools and parameters renamed, nothing else)."""
    none = HeldOutScaffolds(chat_formats=[], naming_styles=[], response_styles=[])
    return [Scaffold(name="default")] + [
        Scaffold(name=f"naming={style}", held_out=style == HELD_OUT_STYLE,
                 spec=PerturbSpec(tool_info=ToolInfoSpec(probability=1.0, strength=0.0, naming_styles=[style]),
                                  held_out=none))
        for style in styles]


def naming_table(engine: Any, chat_format: str, n: int) -> dict[str, Any]:
    """{scaffold: success rate with its Wilson interval} over `n` held-out tasks each (greedy)."""
    results = evaluate_scaffolds(engine, NAMING_ENV, naming_scaffolds(), n, chat_format=chat_format,
                                 temperature=0.0, **NAMING_SETTINGS)
    return {r.scaffold: {"n": r.n, "correct": r.successes, "accuracy": r.success_rate, "ci_low": r.ci_low,
                         "ci_high": r.ci_high, "held_out": r.held_out, "failed": r.failed} for r in results}
