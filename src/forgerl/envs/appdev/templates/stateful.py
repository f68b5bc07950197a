"""Level 2: apps with state (a todo list with filters, a sign-up form with validation, a
sortable and searchable table); the todo list also serves level 3 with persistence."""

from __future__ import annotations

import random
from collections.abc import Callable
from typing import Any

from forgerl.envs.appdev.rubric import Rubric, Step
from forgerl.envs.appdev.templates.common import (
    BASE_CSS,
    INTROS,
    OVERFLOW_CSS,
    UNDEFINED_CALLS,
    apply_variant,
    click,
    closing,
    decimal_text,
    fill,
    flow,
    js,
    order_is,
    page,
    pick_ids,
    step,
    subst,
    text_is,
    visual_items,
)

# --- d2/d3: todo list ---------------------------------------------------------------------------

TODO_IDS = {"input": ("new-todo", "todo-input", "task-input"), "add": ("add-todo", "add-button", "add-task"),
            "list": ("todo-list", "tasks", "todos"), "remaining": ("remaining", "left-count", "open-count"),
            "all": ("filter-all", "show-all"), "active": ("filter-active", "show-active"),
            "done": ("filter-done", "show-done"), "clear": ("clear-done", "clear-completed")}
CHORES = ["buy milk", "call the plumber", "water the plants", "book dentist", "pay rent", "fix the bike",
          "return library books", "email Sam", "renew passport", "clean the garage", "pick up parcel",
          "write thank-you card", "order printer ink", "walk the dog", "plan the trip", "bake bread"]


def todo_draw(persist: bool) -> Callable[[random.Random], dict[str, Any]]:
    def draw(rng: random.Random) -> dict[str, Any]:
        ids = pick_ids(rng, TODO_IDS)
        items = {f"set{k}": rng.sample(CHORES, 3) for k in range(4)}
        return {"ids": ids, "intro": rng.randrange(len(INTROS)), "bug": rng.choice(UNDEFINED_CALLS),
                "persist": persist, "enter_item": rng.choice(CHORES), **items}

    return draw


def todo_request(p: dict[str, Any]) -> str:
    i = p["ids"]
    what = "a todo list app that remembers its items" if p["persist"] else "a todo list app"
    text = (f"{INTROS[p['intro']].format(what=what)} Typing into the input `{i['input']}` and clicking the button "
            f"`{i['add']}` (or pressing Enter in the input) adds a todo at the end of the list and clears the input; "
            f"text is trimmed and empty text adds nothing. Todos are `li` elements with class `todo` inside "
            f"`#{i['list']}`; each holds a checkbox with class `toggle` that marks it done (and undone) and its "
            f"text in an element with class `title`. `#{i['remaining']}` shows how many todos are not done, as "
            f"digits only. Three filter buttons show all todos (`{i['all']}`), only the ones not done "
            f"(`{i['active']}`) or only the done ones (`{i['done']}`); hidden todos are not displayed at all.")
    if p["persist"]:
        text += (f" A button `{i['clear']}` removes every done todo. The todos and their done state are kept "
                 "in localStorage, so reloading the page shows the same list.")
    return f"{text} {closing(p)}"


def _add(i: dict[str, str], texts: list[str]) -> list[Step]:
    return [s for t in texts for s in (fill(i["input"], t), click(i["add"]))]


def todo_rubric(p: dict[str, Any]) -> Rubric:
    i = {k: "#" + v for k, v in p["ids"].items()}
    titles, toggle = f"{i['list']} .todo .title", (lambda n: f"{i['list']} li:nth-child({n}) .toggle")
    a, b, c, d = (p[f"set{k}"] for k in range(4))
    items = [
        flow("add_items", f"Add {a}: they are listed in order, {i['remaining']} shows 3 and the input is cleared.",
             _add(i, a) + [order_is(titles, a), text_is(i["remaining"], "3"), step("expect_value", i["input"], "")]),
        flow("filters", f"Add {b}, mark the second done: active shows {[b[0], b[2]]}, done shows {[b[1]]}, "
                        "all shows all three; 2 remaining.",
             _add(i, b) + [step("check", toggle(2)), click(i["active"]), order_is(titles, [b[0], b[2]]),
                           click(i["done"]), order_is(titles, [b[1]]), click(i["all"]), order_is(titles, b),
                           text_is(i["remaining"], "2")]),
    ]
    if not p["persist"]:
        e = p["enter_item"]
        items.append(flow("enter_and_empty", f"Pressing Enter adds {e!r}; blank text adds nothing.",
                          [fill(i["input"], "   "), click(i["add"]), step("expect_count", f"{i['list']} .todo", "0"),
                           fill(i["input"], e), step("press", i["input"], "Enter"), order_is(titles, [e])]))
    else:
        items += [
            flow("survives_reload", f"Add {c}, mark the second done, reload: the list and its done state remain.",
                 _add(i, c) + [step("check", toggle(2)), step("reload"), order_is(titles, c),
                               text_is(i["remaining"], "2"), click(i["done"]), order_is(titles, [c[1]])]),
            flow("clear_done", f"Add {d}, mark the first and third done, clear them: {[d[1]]} remains, also "
                               "after a reload.",
                 _add(i, d) + [step("check", toggle(1)), step("check", toggle(3)), click(i["clear"]),
                               order_is(titles, [d[1]]), step("reload"), order_is(titles, [d[1]])]),
        ]
    controls = [i["input"], i["add"], i["all"], i["active"], i["done"]] + ([i["clear"]] if p["persist"] else [])
    return Rubric(items=items + visual_items(controls))


TODO_JS = """(function () {
  var KEY = 'todos-v1';
  var todos = [];
  var filter = 'all';
  var input = document.getElementById({{input}});
  var list = document.getElementById({{list}});
  function save() {
    {{save}}
  }
  function load() {
    {{load}}
  }
  function render() {
    list.textContent = '';
    todos.forEach(function (todo, index) {
      var li = document.createElement('li');
      li.className = 'todo' + (todo.done ? ' done' : '');
      var box = document.createElement('input');
      box.type = 'checkbox';
      box.className = 'toggle';
      box.checked = todo.done;
      box.setAttribute('aria-label', 'done');
      box.addEventListener('change', function () { toggle(index, box.checked); });
      var title = document.createElement('span');
      title.className = 'title';
      title.textContent = todo.title;
      li.appendChild(box);
      li.appendChild(title);
      var shown = filter !== 'active' || !todo.done;
      {{done_filter}}
      li.hidden = !shown;
      list.appendChild(li);
    });
    var left = todos.filter(function (t) { return !t.done; }).length;
    document.getElementById({{remaining}}).textContent = String(left);
  }
  function add() {
    {{add_handler}}
    var text = input.value.trim();
    if (!text) { return; }
    todos.push({ title: text, done: false });
    input.value = '';
    save();
    render();
  }
  function toggle(index, done) {
    {{toggle_handler}}
    todos[index].done = done;
    save();
    render();
  }
  function setFilter(name) { filter = name; render(); }
  document.getElementById({{add}}).addEventListener('click', add);
  input.addEventListener('keydown', function (event) { if (event.key === 'Enter') { add(); } });
  document.getElementById({{all}}).addEventListener('click', function () { setFilter('all'); });
  document.getElementById({{active}}).addEventListener('click', function () { setFilter('active'); });
  document.getElementById({{done}}).addEventListener('click', function () { setFilter('done'); });
  {{clear}}
  load();
  render();
})();
"""

TODO_SAVE = "/*FEATURE*/localStorage.setItem(KEY, JSON.stringify(todos));/*END*/"
TODO_LOAD = ("/*FEATURE*/try { todos = JSON.parse(localStorage.getItem(KEY) || '[]'); } "
             "catch (e) { todos = []; }/*END*/")
TODO_CLEAR = ("document.getElementById({{clear_id}}).addEventListener('click', function () {\n"
              "    todos = todos.filter(function (t) { return !t.done; });\n    save();\n    render();\n  });")


def todo_files(p: dict[str, Any], variant: str) -> dict[str, str]:
    i, persist = p["ids"], p["persist"]
    filter_done = "if (filter === 'done') { shown = todo.done; }"
    values = {k: js(v) for k, v in i.items()} | {
        "save": TODO_SAVE if persist else "",
        "load": TODO_LOAD if persist else "",
        "done_filter": filter_done if persist else f"/*FEATURE*/{filter_done}/*END*/",
        "add_handler": "" if persist else "/*HANDLER*/",
        "toggle_handler": "/*HANDLER*/" if persist else "",
        "clear": subst(TODO_CLEAR, {"clear_id": js(i["clear"])}) if persist else "",
    }
    script = apply_variant(subst(TODO_JS, values), variant, p["bug"])
    title = "My todos" if persist else "Todo list"
    clear = f'<button id="{i["clear"]}" type="button">Clear done</button>' if persist else ""
    body = (f"<h1>{title}</h1>\n"
            f'<label for="{i["input"]}">New todo</label>\n<input id="{i["input"]}" type="text" autocomplete="off">\n'
            f'<button id="{i["add"]}" type="button">Add</button>\n'
            f'<div class="filters"><button id="{i["all"]}" type="button">All</button>'
            f'<button id="{i["active"]}" type="button">Active</button>'
            f'<button id="{i["done"]}" type="button">Done</button>{clear}</div>\n'
            f'<p class="out"><span id="{i["remaining"]}">0</span> left</p>\n'
            f'<ul id="{i["list"]}"></ul>')
    css = BASE_CSS + (OVERFLOW_CSS if variant == "overflow" else "")
    return {"index.html": page(title, body, scripts=("app.js",), stylesheet="style.css"), "app.js": script,
            "style.css": css}


def todo_hidden(p: dict[str, Any]) -> list[str]:
    values = [t for k in range(4) for t in p[f"set{k}"]]
    return values if p["persist"] else values + [p["enter_item"]]


# --- d2: form with validation -------------------------------------------------------------------

FORM_IDS = {"form": ("signup", "signup-form", "register-form"), "name": ("name", "full-name"),
            "email": ("email", "email-address"), "age": ("age", "years"), "submit": ("submit", "register", "sign-up"),
            "success": ("success", "welcome", "confirmation")}
NAME_MESSAGES = ("Please enter your name", "Name is required", "Your name is missing")
EMAIL_MESSAGES = ("Please enter a valid email address", "That email address is not valid", "Check the email address")
SUCCESS_PATTERNS = (("Welcome, ", "!"), ("Thanks, ", "! You are registered."), ("Hello ", ", your account is ready."))
PEOPLE = ["Maria Lopez", "Kenji Sato", "Amira Haddad", "Lars Nilsson", "Chiara Rossi", "Tunde Bello",
          "Elena Petrova", "Noah Fischer", "Ines Duarte", "Ravi Menon", "Sofia Lind", "Owen Walsh"]


def _email(name: str, domain: str) -> str:
    return name.lower().replace(" ", ".") + "@" + domain


def _bad_email(rng: random.Random, name: str) -> str:
    user = name.lower().replace(" ", ".")
    return rng.choice((f"{user}.example.com", f"{user}@@example.com", f"{user}@example",
                       f"{name.lower()}@example.com", "@example.com"))


def form_draw(rng: random.Random) -> dict[str, Any]:
    min_age = rng.choice((13, 16, 18, 21))
    names = rng.sample(PEOPLE, 4)
    domain = rng.choice(("example.com", "mail.example.org", "example.net"))
    return {"ids": pick_ids(rng, FORM_IDS), "intro": rng.randrange(len(INTROS)), "bug": rng.choice(UNDEFINED_CALLS),
            "min_age": min_age, "name_msg": rng.choice(NAME_MESSAGES), "email_msg": rng.choice(EMAIL_MESSAGES),
            "success": list(rng.choice(SUCCESS_PATTERNS)), "names": names, "domain": domain,
            "bad_email": _bad_email(rng, names[0]), "young": rng.randint(max(1, min_age - 8), min_age - 1),
            "ages": [rng.randint(min_age + 1, 90) for _ in range(4)]}


def _age_msg(p: dict[str, Any]) -> str:
    return f"Age must be a whole number from {p['min_age']} to 120"


def form_request(p: dict[str, Any]) -> str:
    i = p["ids"]
    pre, post = p["success"]
    return (f"{INTROS[p['intro']].format(what='a sign-up form')} The form (id `{i['form']}`) has text inputs "
            f"`{i['name']}`, `{i['email']}` and `{i['age']}` and a submit button `{i['submit']}`. On submit, check "
            f"every field and show each problem in the element whose id is the field's id followed by `-error` "
            f"(e.g. `#{i['email']}-error`), with exactly these messages: an empty name (after trimming) gives "
            f"`{p['name_msg']}`; an email that does not have the form something@something.something (exactly one "
            f"@, no spaces, a dot after the @ with text on both sides) gives `{p['email_msg']}`; an age that is not "
            f"a whole number from {p['min_age']} to 120 gives `{_age_msg(p)}`. Error elements of valid fields are "
            f"empty or hidden. When every field is valid, show `{pre}<name>{post}` (with the trimmed name) in "
            f"`#{i['success']}`, which is otherwise empty or hidden. The page must not reload on submit. "
            f"{closing(p)}")


def form_rubric(p: dict[str, Any]) -> Rubric:
    i = {k: "#" + v for k, v in p["ids"].items()}
    n = p["names"]
    pre, post = p["success"]

    def submit(name: str, email: str, age: str) -> list[Step]:
        return [fill(i["name"], name), fill(i["email"], email), fill(i["age"], age), click(i["submit"])]

    err = {k: f"{i[k]}-error" for k in ("name", "email", "age")}
    young = str(p["young"])
    return Rubric(items=[
        flow("invalid_email", f"Submit {p['bad_email']!r}: the email error {p['email_msg']!r}, no success message.",
             submit(n[0], p["bad_email"], str(p["ages"][0])) + [text_is(err["email"], p["email_msg"]),
                                                                 step("expect_hidden", i["success"])]),
        flow("too_young", f"Submit age {young}: the age error, no success message.",
             submit(n[1], _email(n[1], p["domain"]), young) + [text_is(err["age"], _age_msg(p)),
                                                                step("expect_hidden", i["success"])]),
        flow("missing_name", "Submit with a blank name: the name error.",
             submit("  ", _email(n[2], p["domain"]), str(p["ages"][2])) + [text_is(err["name"], p["name_msg"])]),
        flow("success", f"Submit valid data for {n[3]}: {pre}{n[3]}{post} and no errors.",
             submit(n[3], _email(n[3], p["domain"]), str(p["ages"][3]))
             + [text_is(i["success"], f"{pre}{n[3]}{post}"), step("expect_hidden", err["email"]),
                step("expect_hidden", err["age"])]),
        *visual_items([i["name"], i["email"], i["age"], i["submit"]]),
    ])


FORM_JS = """(function () {
  var form = document.getElementById({{form}});
  function value(id) { return document.getElementById(id).value.trim(); }
  function report(id, message) { document.getElementById(id + '-error').textContent = message; }
  form.addEventListener('submit', function (event) {
    /*HANDLER*/
    event.preventDefault();
    var name = value({{name}}), email = value({{email}}), ageText = value({{age}});
    var ok = true;
    report({{name}}, name ? '' : {{name_msg}});
    if (!name) { ok = false; }
    var emailOk = /^[^@\\s]+@[^@\\s]+\\.[^@\\s]+$/.test(email) && !/@\\.|\\.$/.test(email);
    report({{email}}, emailOk ? '' : {{email_msg}});
    if (!emailOk) { ok = false; }
    var age = Number(ageText);
    var ageOk = /^[0-9]+$/.test(ageText) && age <= 120;
    /*FEATURE*/ageOk = ageOk && age >= {{min_age}};/*END*/
    report({{age}}, ageOk ? '' : {{age_msg}});
    if (!ageOk) { ok = false; }
    document.getElementById({{success}}).textContent = ok ? {{pre}} + name + {{post}} : '';
  });
})();
"""


def form_files(p: dict[str, Any], variant: str) -> dict[str, str]:
    i = p["ids"]
    pre, post = p["success"]
    values = {k: js(v) for k, v in i.items()} | {
        "name_msg": js(p["name_msg"]), "email_msg": js(p["email_msg"]), "age_msg": js(_age_msg(p)),
        "min_age": p["min_age"], "pre": js(pre), "post": js(post)}
    script = apply_variant(subst(FORM_JS, values), variant, p["bug"])
    fields = "".join(
        f'<label for="{i[k]}">{label}</label>\n<input id="{i[k]}" name="{k}" type="text" {attrs}>\n'
        f'<p id="{i[k]}-error" class="error" role="alert"></p>\n'
        for k, label, attrs in (("name", "Full name", 'autocomplete="name"'), ("email", "Email", 'autocomplete="email"'),
                                ("age", "Age", 'inputmode="numeric"')))
    body = (f'<h1>Create your account</h1>\n<form id="{i["form"]}" novalidate>\n{fields}'
            f'<button id="{i["submit"]}" type="submit">Sign up</button>\n</form>\n'
            f'<p id="{i["success"]}" class="success" role="status"></p>')
    css = BASE_CSS + (OVERFLOW_CSS if variant == "overflow" else "")
    return {"index.html": page("Sign up", body, scripts=("form.js",), stylesheet="style.css"), "form.js": script,
            "style.css": css}


def form_hidden(p: dict[str, Any]) -> list[str]:
    return [*p["names"], p["bad_email"], str(p["young"]), *(str(a) for a in p["ages"]),
            *(_email(n, p["domain"]) for n in p["names"][1:])]


# --- d2: sortable table -------------------------------------------------------------------------

PRODUCTS = ["Anchor Mug", "Bamboo Tray", "Copper Kettle", "Desk Lamp", "Enamel Bowl", "Felt Coaster",
            "Glass Vase", "Hemp Rug", "Ink Pen", "Jute Basket", "Knit Blanket", "Linen Napkin", "Marble Board",
            "Nylon Bag", "Oak Stool", "Pine Shelf", "Quartz Clock", "Rattan Chair", "Steel Bottle", "Teak Spoon"]
TABLE_IDS = {"table": ("products", "inventory", "catalog"), "name": ("sort-name", "by-name"),
             "price": ("sort-price", "by-price"), "stock": ("sort-stock", "by-stock"), "search": ("search", "filter")}


def table_draw(rng: random.Random) -> dict[str, Any]:
    while True:
        names = rng.sample(PRODUCTS, rng.randint(5, 6))
        prices = rng.sample(range(250, 9999), len(names))
        stocks = rng.sample(range(0, 80), len(names))
        rows = [[n, pr, st] for n, pr, st in zip(names, prices, stocks, strict=True)]
        query = _table_query(rng, names)
        orders = [_sorted_names(rows, 1, False), _sorted_names(rows, 2, True), _sorted_names(rows, 0, False)]
        if query and names not in orders:
            return {"ids": pick_ids(rng, TABLE_IDS), "intro": rng.randrange(len(INTROS)),
                    "bug": rng.choice(UNDEFINED_CALLS), "rows": rows, "query": query}


def _table_query(rng: random.Random, names: list[str]) -> str | None:
    """A lowercase 3-letter piece from inside a word of one name (never a whole word) that
    matches some but not all rows."""
    for _ in range(50):
        word = rng.choice([w for n in names for w in n.split()])
        if len(word) < 5:
            continue
        start = rng.randint(1, len(word) - 4)
        query = word[start:start + 3].lower()
        hits = [n for n in names if query in n.lower()]
        if 0 < len(hits) < len(names):
            return query
    return None


def _sorted_names(rows: list[list[Any]], column: int, descending: bool) -> list[str]:
    key = (lambda r: r[0].lower()) if column == 0 else (lambda r: r[column])
    return [r[0] for r in sorted(rows, key=key, reverse=descending)]


def table_request(p: dict[str, Any]) -> str:
    i = p["ids"]
    listing = "\n".join(f"- {n}: price {decimal_text(pr, 2)}, stock {st}" for n, pr, st in p["rows"])
    return (f"{INTROS[p['intro']].format(what='a product table I can sort and search')} Show these products, in "
            f"this order at first, in a table with id `{i['table']}` whose body (`tbody`) has one row per product "
            f"and the columns Name, Price (two decimals) and Stock, in that order:\n{listing}\n"
            f"The header has three buttons, `{i['name']}`, `{i['price']}` and `{i['stock']}`: clicking one sorts "
            "the rows by that column ascending; clicking the same button again flips to descending (and back); "
            "clicking another column's button sorts by that column ascending. A text input "
            f"`{i['search']}` shows only the rows whose name contains the typed text, ignoring case, updating as "
            f"you type (rows that do not match are not displayed). {closing(p)}")


def table_rubric(p: dict[str, Any]) -> Rubric:
    i = {k: "#" + v for k, v in p["ids"].items()}
    rows, names = p["rows"], f"{i['table']} tbody tr td:first-child"
    hits = [r[0] for r in rows if p["query"] in r[0].lower()]
    return Rubric(items=[
        flow("sort_by_price", "Sort by price: cheapest first.",
             [click(i["price"]), order_is(names, _sorted_names(rows, 1, False))]),
        flow("sort_descending", "Click the stock button twice: most stock first.",
             [click(i["stock"]), click(i["stock"]), order_is(names, _sorted_names(rows, 2, True))]),
        flow("sort_by_name", "Sort by price, then by name: alphabetical.",
             [click(i["price"]), click(i["name"]), order_is(names, _sorted_names(rows, 0, False))]),
        flow("search", f"Type {p['query']!r} in the search: only {hits}, in the original order.",
             [fill(i["search"], p["query"]), order_is(names, hits)]),
        *visual_items([i["search"], i["name"], i["price"], i["stock"]]),
    ])


TABLE_JS = """(function () {
  var ROWS = {{rows}};
  var sortKey = null;
  var ascending = true;
  var body = document.querySelector('#' + {{table}} + ' tbody');
  var search = document.getElementById({{search}});
  function render() {
    var query = search.value.trim().toLowerCase();
    var rows = ROWS.slice();
    if (sortKey !== null) {
      rows.sort(function (a, b) {
        var x = a[sortKey], y = b[sortKey];
        var c = typeof x === 'string' ? x.toLowerCase().localeCompare(y.toLowerCase()) : x - y;
        return ascending ? c : -c;
      });
    }
    body.textContent = '';
    rows.forEach(function (row) {
      if (row.name.toLowerCase().indexOf(query) === -1) { return; }
      var tr = document.createElement('tr');
      [row.name, row.price.toFixed(2), String(row.stock)].forEach(function (text) {
        var td = document.createElement('td');
        td.textContent = text;
        tr.appendChild(td);
      });
      body.appendChild(tr);
    });
  }
  function sortBy(key) {
    /*HANDLER*/
    if (sortKey === key) {
      /*FEATURE*/ascending = !ascending;/*END*/
    } else {
      sortKey = key;
      ascending = true;
    }
    render();
  }
  document.getElementById({{name}}).addEventListener('click', function () { sortBy('name'); });
  document.getElementById({{price}}).addEventListener('click', function () { sortBy('price'); });
  document.getElementById({{stock}}).addEventListener('click', function () { sortBy('stock'); });
  search.addEventListener('input', render);
  render();
})();
"""


def table_files(p: dict[str, Any], variant: str) -> dict[str, str]:
    i = p["ids"]
    rows = [{"name": n, "price": pr / 100, "stock": st} for n, pr, st in p["rows"]]
    script = apply_variant(subst(TABLE_JS, {k: js(v) for k, v in i.items()} | {"rows": js(rows)}), variant, p["bug"])
    body = (f'<h1>Products</h1>\n<label for="{i["search"]}">Search</label>\n'
            f'<input id="{i["search"]}" type="text" autocomplete="off">\n<table id="{i["table"]}">\n<thead><tr>'
            f'<th><button id="{i["name"]}" type="button">Name</button></th>'
            f'<th><button id="{i["price"]}" type="button">Price</button></th>'
            f'<th><button id="{i["stock"]}" type="button">Stock</button></th>'
            "</tr></thead>\n<tbody></tbody>\n</table>")
    css = BASE_CSS + (OVERFLOW_CSS if variant == "overflow" else "")
    return {"index.html": page("Products", body, scripts=("table.js",), stylesheet="style.css"), "table.js": script,
            "style.css": css}


def table_hidden(p: dict[str, Any]) -> list[str]:
    rows = p["rows"]
    orders = [_sorted_names(rows, 1, False), _sorted_names(rows, 2, True), _sorted_names(rows, 0, False)]
    return [p["query"], *(", ".join(o) for o in orders)]


