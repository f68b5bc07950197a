"""Level 1: one-widget pages (a tip calculator, a unit converter, a counter)."""

from __future__ import annotations

import random
from fractions import Fraction
from typing import Any

from forgerl.envs.appdev.rubric import Rubric, Step
from forgerl.envs.appdev.templates.common import (
    BASE_CSS,
    INTROS,
    OVERFLOW_CSS,
    UNDEFINED_CALLS,
    apply_variant,
    clear_of_ties,
    click,
    closing,
    decimal_text,
    fill,
    flow,
    js,
    money,
    page,
    pick_ids,
    step,
    subst,
    text_is,
    visual_items,
)

# --- d1: tip calculator -------------------------------------------------------------------------

TIP_IDS = {
    "bill": ("bill", "bill-amount", "amount"), "percent": ("tip-percent", "tip-rate", "percent"),
    "people": ("people", "party-size", "guests"), "calc": ("calculate", "calc", "compute"),
    "tip": ("tip-amount", "tip-value"), "total": ("total", "total-amount"), "each": ("per-person", "each"),
}


def _tip_case_ok(cents: int, pct: int, n: int) -> bool:
    tip = Fraction(cents * pct, 100 * 100)
    total = Fraction(cents, 100) + tip
    return clear_of_ties(tip) and clear_of_ties(total) and clear_of_ties(total / n)


def _tip_case(rng: random.Random, people: tuple[int, int]) -> tuple[int, int, int]:
    while True:
        cents, pct, n = rng.randint(1500, 25000), rng.choice((10, 12, 15, 18, 20, 22, 25)), rng.randint(*people)
        if _tip_case_ok(cents, pct, n):
            return cents, pct, n


def _tip_results(cents: int, pct: int, n: int) -> tuple[str, str, str]:
    tip = Fraction(cents * pct, 100 * 100)
    total = Fraction(cents, 100) + tip
    return money(tip), money(total), money(total / n)


def tip_draw(rng: random.Random) -> dict[str, Any]:
    recalc = _tip_case(rng, (2, 5))
    while True:
        bill2 = rng.randint(1500, 25000)
        if _tip_case_ok(bill2, recalc[1], recalc[2]) and bill2 != recalc[0]:
            break
    return {"bill2": bill2, "ids": pick_ids(rng, TIP_IDS), "intro": rng.randrange(len(INTROS)), "bug": rng.choice(UNDEFINED_CALLS),
            "one": _tip_case(rng, (1, 1)), "split": _tip_case(rng, (2, 6)), "recalc": recalc,
            "title": rng.choice(("Tip calculator", "Split the bill", "Tip helper"))}


def tip_request(p: dict[str, Any]) -> str:
    i = p["ids"]
    return (f"{INTROS[p['intro']].format(what='a tip calculator web page')} It has a number input for the bill "
            f"amount (id `{i['bill']}`), one for the tip percentage (id `{i['percent']}`) and one for the number of "
            f"people sharing the bill (id `{i['people']}`). When the button with id `{i['calc']}` is clicked, show "
            f"the tip in the element `#{i['tip']}`, the bill plus the tip in `#{i['total']}`, and that total divided "
            f"by the number of people in `#{i['each']}`. Show each result as a plain number with exactly two "
            f"decimals (no currency sign), rounded to the nearest cent. {closing(p)}")


def _tip_recalc(p: dict[str, Any]) -> tuple[int, int, int, int]:
    cents, pct, n = p["recalc"]
    bill2 = p["bill2"]
    return cents, pct, n, bill2


def tip_rubric(p: dict[str, Any]) -> Rubric:
    i = {k: "#" + v for k, v in p["ids"].items()}

    def enter(cents: int, pct: int, n: int) -> list[Step]:
        return [fill(i["bill"], decimal_text(cents, 2)), fill(i["percent"], str(pct)), fill(i["people"], str(n)),
                click(i["calc"])]

    c1, t1, n1 = p["one"]
    tip1, total1, _ = _tip_results(c1, t1, n1)
    c2, t2, n2 = p["split"]
    _, total2, each2 = _tip_results(c2, t2, n2)
    c3, t3, n3, bill2 = _tip_recalc(p)
    _, total4, each4 = _tip_results(bill2, t3, n3)
    return Rubric(items=[
        flow("tip_and_total", f"Bill {decimal_text(c1, 2)}, tip {t1} %, 1 person, Calculate: tip {tip1}, total {total1}.",
             enter(c1, t1, n1) + [text_is(i["tip"], tip1), text_is(i["total"], total1)]),
        flow("split_per_person", f"Bill {decimal_text(c2, 2)}, tip {t2} %, {n2} people: per person {each2}.",
             enter(c2, t2, n2) + [text_is(i["each"], each2)]),
        flow("recalculate", f"After one calculation, change the bill to {decimal_text(bill2, 2)} and calculate again: "
                            f"total {total4}, per person {each4}.",
             enter(c3, t3, n3) + [fill(i["bill"], decimal_text(bill2, 2)), click(i["calc"]),
                                  text_is(i["total"], total4), text_is(i["each"], each4)]),
        *visual_items([i["bill"], i["percent"], i["people"], i["calc"]]),
    ])


TIP_JS = """(function () {
  function number(id) { return parseFloat(document.getElementById(id).value); }
  document.getElementById({{calc}}).addEventListener('click', function () {
    /*HANDLER*/
    var bill = number({{bill}});
    var percent = number({{percent}});
    var people = parseInt(document.getElementById({{people}}).value, 10);
    if (!(bill >= 0)) { bill = 0; }
    if (!(percent >= 0)) { percent = 0; }
    if (!(people >= 1)) { people = 1; }
    var tip = bill * percent / 100;
    var total = bill + tip;
    var each = total;
    /*FEATURE*/each = total / people;/*END*/
    document.getElementById({{tip}}).textContent = tip.toFixed(2);
    document.getElementById({{total}}).textContent = total.toFixed(2);
    document.getElementById({{each}}).textContent = each.toFixed(2);
  });
})();
"""


def tip_files(p: dict[str, Any], variant: str) -> dict[str, str]:
    i = p["ids"]
    body = (f"<h1>{p['title']}</h1>\n"
            f'<label for="{i["bill"]}">Bill amount</label>\n<input id="{i["bill"]}" type="number" min="0" step="0.01" inputmode="decimal">\n'
            f'<label for="{i["percent"]}">Tip (%)</label>\n<input id="{i["percent"]}" type="number" min="0" step="1" value="15">\n'
            f'<label for="{i["people"]}">People</label>\n<input id="{i["people"]}" type="number" min="1" step="1" value="1">\n'
            f'<button id="{i["calc"]}" type="button">Calculate</button>\n'
            f'<p class="out">Tip: <span id="{i["tip"]}">0.00</span></p>\n'
            f'<p class="out">Total: <span id="{i["total"]}">0.00</span></p>\n'
            f'<p class="out">Per person: <span id="{i["each"]}">0.00</span></p>')
    script = apply_variant(subst(TIP_JS, {k: js(v) for k, v in i.items()}), variant, p["bug"])
    css = BASE_CSS + (OVERFLOW_CSS if variant == "overflow" else "")
    return {"index.html": page(p["title"], body, script=script, css=css)}


def tip_hidden(p: dict[str, Any]) -> list[str]:
    values = []
    for key in ("one", "split", "recalc"):
        cents, pct, n = p[key]
        values += [decimal_text(cents, 2), *_tip_results(cents, pct, n)]
    c3, t3, n3, bill2 = _tip_recalc(p)
    return values + [decimal_text(bill2, 2), *_tip_results(bill2, t3, n3)[1:]]


# --- d1: unit converter -------------------------------------------------------------------------

CONVERTERS = {
    # name: (unit a, unit b, words, a->b JS, b->a JS, a->b exact, b->a exact, a range (tenths), b range)
    "length": ("km", "mi", "kilometres and miles", "v / 1.609344", "v * 1.609344",
               "One mile is exactly 1.609344 kilometres.", (10, 5000), (10, 3000)),
    "weight": ("kg", "lb", "kilograms and pounds", "v / 0.45359237", "v * 0.45359237",
               "One pound is exactly 0.45359237 kilograms.", (10, 2000), (10, 4000)),
    "temperature": ("°C", "°F", "degrees Celsius and Fahrenheit", "v * 9 / 5 + 32", "(v - 32) * 5 / 9",
                    "Fahrenheit = Celsius × 9 / 5 + 32.", (0, 400), (500, 1100)),
}
CONVERT_IDS = {"value": ("value", "amount-in", "input-value"), "direction": ("direction", "mode", "conversion"),
               "convert": ("convert", "go", "do-convert"), "result": ("result", "output", "converted")}
NUMBER_MESSAGES = ("Please enter a number", "Enter a number first", "That is not a number")


def _convert_exact(kind: str, forward: bool, tenths: int) -> Fraction:
    v = Fraction(tenths, 10)
    if kind == "length":
        factor = Fraction(1609344, 1000000)
    elif kind == "weight":
        factor = Fraction(45359237, 100000000)
    else:
        return v * Fraction(9, 5) + 32 if forward else (v - 32) * Fraction(5, 9)
    return v / factor if forward else v * factor


def _convert_case(rng: random.Random, kind: str, forward: bool) -> int:
    lo, hi = CONVERTERS[kind][6] if forward else CONVERTERS[kind][7]
    while True:
        tenths = rng.randint(lo, hi)
        if tenths % 10 and clear_of_ties(_convert_exact(kind, forward, tenths)):
            return tenths


def convert_draw(rng: random.Random) -> dict[str, Any]:
    kind = rng.choice(sorted(CONVERTERS))
    return {"kind": kind, "ids": pick_ids(rng, CONVERT_IDS), "intro": rng.randrange(len(INTROS)),
            "bug": rng.choice(UNDEFINED_CALLS), "message": rng.choice(NUMBER_MESSAGES),
            "forward": _convert_case(rng, kind, True), "backward": _convert_case(rng, kind, False),
            "forward2": _convert_case(rng, kind, True)}


def _options(p: dict[str, Any]) -> tuple[str, str]:
    a, b = CONVERTERS[p["kind"]][:2]
    slug = {"°C": "c", "°F": "f"}
    return f"{slug.get(a, a)}-to-{slug.get(b, b)}", f"{slug.get(b, b)}-to-{slug.get(a, a)}"


def convert_request(p: dict[str, Any]) -> str:
    i, (a, b, words, *_rest) = p["ids"], CONVERTERS[p["kind"]]
    rule = CONVERTERS[p["kind"]][5]
    fwd, bwd = _options(p)
    return (f"{INTROS[p['intro']].format(what=f'a converter between {words}')} The value to convert goes in the "
            f"input with id `{i['value']}`. A select with id `{i['direction']}` has two options: value `{fwd}` "
            f"({a} to {b}) and value `{bwd}` ({b} to {a}). When the button `{i['convert']}` is clicked, show the "
            f"converted value in `#{i['result']}` as the number with exactly two decimals (rounded), a space, and "
            f"the target unit's symbol ({b} or {a}). {rule} If the input is empty or not a number, show exactly "
            f"`{p['message']}` in `#{i['result']}` instead. {closing(p)}")


def _converted(p: dict[str, Any], forward: bool, tenths: int) -> str:
    a, b = CONVERTERS[p["kind"]][:2]
    return f"{money(_convert_exact(p['kind'], forward, tenths))} {b if forward else a}"


def convert_rubric(p: dict[str, Any]) -> Rubric:
    i = {k: "#" + v for k, v in p["ids"].items()}
    fwd, bwd = _options(p)

    def run(option: str, tenths: int) -> list[Step]:
        return [fill(i["value"], decimal_text(tenths, 1)), step("select", i["direction"], option), click(i["convert"])]

    f1, b1, f2 = p["forward"], p["backward"], p["forward2"]
    return Rubric(items=[
        flow("convert_forward", f"Convert {decimal_text(f1, 1)} with {fwd}: {_converted(p, True, f1)}.",
             run(fwd, f1) + [text_is(i["result"], _converted(p, True, f1))]),
        flow("convert_backward", f"Convert {decimal_text(b1, 1)} with {bwd}: {_converted(p, False, b1)}.",
             run(bwd, b1) + [text_is(i["result"], _converted(p, False, b1))]),
        flow("empty_input", f"Convert {decimal_text(f2, 1)}, then clear the input and convert again: the message "
                            f"{p['message']!r}.",
             run(fwd, f2) + [fill(i["value"], ""), click(i["convert"]), text_is(i["result"], p["message"])]),
        *visual_items([i["value"], i["direction"], i["convert"]]),
    ])


CONVERT_JS = """(function () {
  function forward(v) { return {{fwd_js}}; }
  function backward(v) { return {{bwd_js}}; }
  document.getElementById({{convert}}).addEventListener('click', function () {
    /*HANDLER*/
    var raw = document.getElementById({{value}}).value.trim();
    var out = document.getElementById({{result}});
    var v = Number(raw);
    if (raw === '' || !isFinite(v)) { out.textContent = {{message}}; return; }
    var result = forward(v), unit = {{unit_b}};
    if (document.getElementById({{direction}}).value === {{bwd_option}}) {
      /*FEATURE*/result = backward(v); unit = {{unit_a}};/*END*/
    }
    out.textContent = result.toFixed(2) + ' ' + unit;
  });
})();
"""


def convert_files(p: dict[str, Any], variant: str) -> dict[str, str]:
    i = p["ids"]
    a, b, words, fwd_js, bwd_js = CONVERTERS[p["kind"]][:5]
    fwd, bwd = _options(p)
    values = {k: js(v) for k, v in i.items()} | {
        "fwd_js": fwd_js, "bwd_js": bwd_js, "message": js(p["message"]), "unit_a": js(a), "unit_b": js(b),
        "bwd_option": js(bwd)}
    title = f"Convert {words}"
    body = (f"<h1>{title}</h1>\n"
            f'<label for="{i["value"]}">Value</label>\n<input id="{i["value"]}" type="text" inputmode="decimal">\n'
            f'<label for="{i["direction"]}">Direction</label>\n<select id="{i["direction"]}">\n'
            f'<option value="{fwd}">{a} to {b}</option>\n<option value="{bwd}">{b} to {a}</option>\n</select>\n'
            f'<button id="{i["convert"]}" type="button">Convert</button>\n'
            f'<p class="out">Result: <span id="{i["result"]}">-</span></p>')
    script = apply_variant(subst(CONVERT_JS, values), variant, p["bug"])
    css = BASE_CSS + (OVERFLOW_CSS if variant == "overflow" else "")
    return {"index.html": page(title, body, script=script, css=css)}


def convert_hidden(p: dict[str, Any]) -> list[str]:
    cases = [(True, p["forward"]), (False, p["backward"]), (True, p["forward2"])]
    return [v for fwd, t in cases for v in (decimal_text(t, 1), _converted(p, fwd, t).split(" ")[0])]


# --- d1: counter --------------------------------------------------------------------------------

COUNTER_IDS = {"count": ("count", "counter-value", "tally"), "inc": ("increment", "plus", "up"),
               "dec": ("decrement", "minus", "down"), "reset": ("reset", "clear", "zero"),
               "step": ("step", "step-size", "by")}


def counter_draw(rng: random.Random) -> dict[str, Any]:
    k1 = rng.randint(3, 5)
    return {"ids": pick_ids(rng, COUNTER_IDS), "intro": rng.randrange(len(INTROS)), "bug": rng.choice(UNDEFINED_CALLS),
            "step1": rng.randint(2, 9), "clicks1": rng.randint(2, 5), "step2": rng.randint(2, 9), "up": k1,
            "down": rng.randint(1, k1 - 1), "step3": rng.randint(2, 9), "clicks3": rng.randint(2, 4),
            "what": rng.choice(("a counter", "a tally counter", "a click counter"))}


def counter_request(p: dict[str, Any]) -> str:
    i = p["ids"]
    return (f"{INTROS[p['intro']].format(what=p['what'] + ' page')} The element `#{i['count']}` shows the current "
            f"value as digits only, starting at 0. A number input `{i['step']}` holds the step size (it starts at "
            f"1). The button `{i['inc']}` adds the step to the value and the button `{i['dec']}` subtracts it, but "
            f"the value never goes below zero: it stops at 0. The button `{i['reset']}` sets the value back to 0. "
            f"{closing(p)}")


def counter_rubric(p: dict[str, Any]) -> Rubric:
    i = {k: "#" + v for k, v in p["ids"].items()}
    s1, k1, s2, up, down, s3, k3 = (p[k] for k in ("step1", "clicks1", "step2", "up", "down", "step3", "clicks3"))
    return Rubric(items=[
        flow("increment_by_step", f"Step {s1}, click + {k1} times: {s1 * k1}.",
             [fill(i["step"], str(s1))] + [click(i["inc"])] * k1 + [text_is(i["count"], str(s1 * k1))]),
        flow("never_below_zero", f"Step {s2}: + {up} times, - {down} times gives {s2 * (up - down)}; "
                                 f"{up - down + 2} more - gives 0.",
             [fill(i["step"], str(s2))] + [click(i["inc"])] * up + [click(i["dec"])] * down
             + [text_is(i["count"], str(s2 * (up - down)))] + [click(i["dec"])] * (up - down + 2)
             + [text_is(i["count"], "0")]),
        flow("reset", f"Step {s3}, + {k3} times, reset gives 0, one more + gives {s3}.",
             [fill(i["step"], str(s3))] + [click(i["inc"])] * k3 + [click(i["reset"]), text_is(i["count"], "0"),
                                                                      click(i["inc"]), text_is(i["count"], str(s3))]),
        *visual_items([i["step"], i["inc"], i["dec"], i["reset"]]),
    ])


COUNTER_JS = """(function () {
  var value = 0;
  var out = document.getElementById({{count}});
  function step() {
    var s = parseInt(document.getElementById({{step}}).value, 10);
    return s > 0 ? s : 1;
  }
  function show() { out.textContent = String(value); }
  document.getElementById({{inc}}).addEventListener('click', function () {
    /*HANDLER*/
    value += step();
    show();
  });
  document.getElementById({{dec}}).addEventListener('click', function () {
    value -= step();
    /*FEATURE*/if (value < 0) { value = 0; }/*END*/
    show();
  });
  document.getElementById({{reset}}).addEventListener('click', function () { value = 0; show(); });
  show();
})();
"""


def counter_files(p: dict[str, Any], variant: str) -> dict[str, str]:
    i = p["ids"]
    title = p["what"][2:].capitalize()
    body = (f"<h1>{title}</h1>\n"
            f'<p class="out">Value: <span id="{i["count"]}">0</span></p>\n'
            f'<label for="{i["step"]}">Step</label>\n<input id="{i["step"]}" type="number" min="1" step="1" value="1">\n'
            f'<button id="{i["inc"]}" type="button">+ Add</button>'
            f'<button id="{i["dec"]}" type="button">− Subtract</button>'
            f'<button id="{i["reset"]}" type="button">Reset</button>')
    script = apply_variant(subst(COUNTER_JS, {k: js(v) for k, v in i.items()}), variant, p["bug"])
    css = BASE_CSS + (OVERFLOW_CSS if variant == "overflow" else "")
    return {"index.html": page(title, body, script=script, css=css)}


def counter_hidden(p: dict[str, Any]) -> list[str]:
    values = (p["step1"], p["step2"], p["step3"], p["step1"] * p["clicks1"], p["step2"] * (p["up"] - p["down"]))
    return [str(v) for v in values]


