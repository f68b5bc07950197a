"""The probes side by side: one row per measure, one column per policy, the issue's target beside
each measure that has one (issue 20: coined-name copy >= 0.9, free-running digit copy >= 0.99 per
digit, the held-out PascalCase naming style within 0.1 of the default scaffold)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from rich.table import Table

from forgerl.probes.items import DISTANCE_BUCKETS

Cell = Callable[[dict[str, Any]], str]


def _rate(r: dict[str, Any] | None) -> str:
    return "—" if r is None else f"{r['accuracy']:.3f} [{r['ci_low']:.2f}, {r['ci_high']:.2f}]"


def _share(x: float | None) -> str:
    return "—" if x is None else f"{x:.3f}"


def _get(result: dict[str, Any], probe: str, *keys: str) -> Any:
    value: Any = result["probes"].get(probe)
    for key in keys:
        value = None if value is None else value.get(key)
    return value


def rows(results: Sequence[dict[str, Any]]) -> list[tuple[str, str, Cell]]:
    """(measure, target, cell of one policy's result) for every measure some policy has."""
    ran = {p for r in results for p in r["probes"]}
    out: list[tuple[str, str, Cell]] = []
    if ran - {"naming"}:
        out.append(("items per reading probe", "", lambda r: str(r["n"]) if set(r["probes"]) - {"naming"} else "—"))
    if "naming" in ran:
        out.append(("tasks per naming style", "", lambda r: str(r.get("naming_n", "—"))))
    if "coined" in ran:
        out += [("coined-name copy (exact spelling in the reply)", ">= 0.9", lambda r: _rate(_get(r, "coined"))),
                ("  the reply is the name only", "", lambda r: _rate(_get(r, "coined", "name_only")))]
    if "digits" in ran:
        out += [("digit copy per digit, free-running", ">= 0.99", lambda r: _share(_get(r, "digits", "free_running_per_digit"))),
                ("digit copy per digit, teacher-forced", "", lambda r: _share(_get(r, "digits", "teacher_forced_per_digit"))),
                ("digit copy, whole string", "", lambda r: _rate(_get(r, "digits", "exact_match")))]
    if "kv" in ran:
        out.append(("key/value lookup", "", lambda r: _rate(_get(r, "kv"))))
        out += [(f"  lookup at distance {label}", "", lambda r, label=label: _rate(_get(r, "kv", "by_distance", label)))
                for label, _, _ in DISTANCE_BUCKETS]
    for probe in ("coined", "digits", "kv"):
        if probe in ran:
            out.append((f"  unparsed replies: {probe}", "",
                        lambda r, p=probe: "—" if _get(r, p) is None else f"{_get(r, p, 'unparsed')}/{_get(r, p, 'n')}"))
    if "naming" in ran:
        names = list(dict.fromkeys(s for r in results for s in (_get(r, "naming", "scaffolds") or {})))
        out += [(f"naming: {name.removeprefix('naming=')}" + (" (held out)" if name == "naming=pascal" else ""),
                 ">= default - 0.1" if name == "naming=pascal" else "",
                 lambda r, name=name: _rate(_get(r, "naming", "scaffolds", name))) for name in names]
    out.append(("seconds", "", lambda r: f"{sum(p['seconds'] for p in r['probes'].values()):.0f}"))
    return out


def probe_table(results: Sequence[dict[str, Any]]) -> Table:
    table = Table(title="Reading probes (accuracy [Wilson 95%]; per-digit shares)")
    table.add_column("measure")
    table.add_column("target")
    for r in results:
        table.add_column(f"{r['model']}\n({r['chat_format']})")
    for name, target, cell in rows(results):
        table.add_row(name, target, *(cell(r) for r in results))
    return table
