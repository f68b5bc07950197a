"""The AppDev task templates: per template, seeded parameters, the user's request, the hidden
rubric, and the reference app (gold) with its seeded broken variants.

A template is a small app a user might ask for. Everything that varies with the seed (element
ids, wording, the values a flow types and the results it expects) is drawn once into a JSON-able
`params` dict that the task stores, so the request, the rubric and every app file are pure
functions of it: a task rebuilt on another worker is identical, and a validation can replay the
gold app and its broken variants without storing them.

Hidden values never appear in the request (the generator redraws if one does by chance): the
request says *how* the app computes, the rubric types numbers the app has never seen and expects
the app's own results, so hard-coding what the request shows earns nothing.

Apps are written once with two markers that make the broken variants mechanical:
- `/*HANDLER*/` at the top of the one event handler the flows depend on: the `js_error` variant
  puts a call of an undefined function there (a ReferenceError when a user acts; the page still
  loads cleanly, so the gate passes and only the flows through that handler fail);
- `/*FEATURE*/ ... /*END*/` (`# FEATURE` ... `# END` in Python) around one feature: the
  `missing_feature` variant drops it, so exactly the items that test it fail.
The `overflow` variant gives the page's main column a fixed width wider than a phone, so only
the phone's no-horizontal-scroll item fails. Every rubric has at least two items each variant
still passes (the visual items pass under a JS error; the flows pass under an overflow), so a
variant scores strictly between 0 and 1.
"""

from __future__ import annotations

from forgerl.envs.appdev.templates.common import VARIANTS, Template, apply_variant, money
from forgerl.envs.appdev.templates.multiview import (
    expense_draw,
    expense_files,
    expense_hidden,
    expense_request,
    expense_rubric,
    notes_draw,
    notes_files,
    notes_hidden,
    notes_request,
    notes_rubric,
)
from forgerl.envs.appdev.templates.stateful import (
    form_draw,
    form_files,
    form_hidden,
    form_request,
    form_rubric,
    table_draw,
    table_files,
    table_hidden,
    table_request,
    table_rubric,
    todo_draw,
    todo_files,
    todo_hidden,
    todo_request,
    todo_rubric,
)
from forgerl.envs.appdev.templates.widgets import (
    convert_draw,
    convert_files,
    convert_hidden,
    convert_request,
    convert_rubric,
    counter_draw,
    counter_files,
    counter_hidden,
    counter_request,
    counter_rubric,
    tip_draw,
    tip_files,
    tip_hidden,
    tip_request,
    tip_rubric,
)

__all__ = ["BY_DIFFICULTY", "TEMPLATES", "VARIANTS", "Template", "apply_variant", "money"]

# --- the registry -------------------------------------------------------------------------------

TEMPLATES: dict[str, Template] = {t.name: t for t in (
    Template("tip_calculator", 1, tip_draw, tip_request, tip_rubric, tip_files, tip_hidden),
    Template("unit_converter", 1, convert_draw, convert_request, convert_rubric, convert_files, convert_hidden),
    Template("counter", 1, counter_draw, counter_request, counter_rubric, counter_files, counter_hidden),
    Template("todo_list", 2, todo_draw(False), todo_request, todo_rubric, todo_files, todo_hidden),
    Template("signup_form", 2, form_draw, form_request, form_rubric, form_files, form_hidden),
    Template("sortable_table", 2, table_draw, table_request, table_rubric, table_files, table_hidden),
    Template("persistent_todo", 3, todo_draw(True), todo_request, todo_rubric, todo_files, todo_hidden),
    Template("expense_views", 3, expense_draw, expense_request, expense_rubric, expense_files, expense_hidden),
    Template("notes_server", 3, notes_draw, notes_request, notes_rubric, notes_files, notes_hidden),
)}
BY_DIFFICULTY: dict[int, list[str]] = {
    level: [name for name, t in TEMPLATES.items() if t.difficulty == level] for level in (1, 2, 3)
}
