"""Level 3: multi-view apps whose state persists (an expense tracker with hash-routed views
kept in localStorage; a notes app whose Python standard-library server keeps the notes)."""

from __future__ import annotations

import random
from typing import Any

from forgerl.envs.appdev.rubric import Rubric, ServerSpec, Step
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

# --- d3: multi-view expense tracker with hash routes ------------------------------------------

EXPENSE_IDS = {"nav_add": ("nav-add", "tab-add"), "nav_list": ("nav-list", "tab-list"),
               "nav_summary": ("nav-summary", "tab-summary"), "view_add": ("view-add", "page-add"),
               "view_list": ("view-list", "page-list"), "view_summary": ("view-summary", "page-summary"),
               "name": ("expense-name", "what"), "amount": ("expense-amount", "cost"),
               "category": ("category", "expense-category"), "save": ("save", "add-expense"),
               "list": ("expense-list", "expenses"), "total": ("total", "total-spent"),
               "count": ("count", "expense-count")}
EXPENSES = ["Train ticket", "Groceries", "Cinema", "Coffee beans", "Phone bill", "Bike repair", "Concert",
            "Bookshop", "Taxi", "Pharmacy", "Lunch out", "Gym pass", "Parking", "Gift for Ana"]
CATEGORIES = ["food", "travel", "home", "fun", "health", "books"]


def expense_draw(rng: random.Random) -> dict[str, Any]:
    cats = rng.sample(CATEGORIES, 3)

    def batch(n: int) -> list[list[Any]]:
        return [[name, rng.randint(150, 9999), rng.choice(cats)] for name in rng.sample(EXPENSES, n)]

    return {"ids": pick_ids(rng, EXPENSE_IDS), "intro": rng.randrange(len(INTROS)), "bug": rng.choice(UNDEFINED_CALLS),
            "categories": cats, "listed": batch(3), "summed": batch(3), "kept": batch(2),
            "routes": rng.choice((["add", "list", "summary"], ["new", "all", "stats"]))}


def expense_request(p: dict[str, Any]) -> str:
    i, (r_add, r_list, r_sum) = p["ids"], p["routes"]
    cats = ", ".join(f"`{c}`" for c in p["categories"])
    return (f"{INTROS[p['intro']].format(what='a small expense tracker with three views')} The page shows exactly "
            f"one view at a time, chosen by the URL hash: `#{r_add}` shows the section `{i['view_add']}`, "
            f"`#{r_list}` the section `{i['view_list']}` and `#{r_sum}` the section `{i['view_summary']}`; no hash "
            f"or an unknown one shows `{i['view_add']}`. Opening or reloading the page with a hash shows that view. "
            f"A navigation bar has links `{i['nav_add']}`, `{i['nav_list']}` and `{i['nav_summary']}` to those "
            f"hashes. The add view has inputs `{i['name']}` and `{i['amount']}` (a positive amount with up to two "
            f"decimals), a select `{i['category']}` with the options {cats} (option values exactly these words), "
            f"and a button `{i['save']}` that adds the expense and clears the inputs. The list view shows the "
            f"expenses in the order they were added as `li` elements inside `#{i['list']}`, each with the name in "
            f"an element with class `name` and the amount (two decimals) in an element with class `amount`. The "
            f"summary view shows the sum of all amounts with two decimals in `#{i['total']}` and the number of "
            f"expenses in `#{i['count']}`. Expenses are kept in localStorage, so they survive a reload. "
            f"{closing(p)}")


def _add_expenses(i: dict[str, str], batch: list[list[Any]]) -> list[Step]:
    return [s for name, cents, cat in batch for s in (fill(i["name"], name), fill(i["amount"], decimal_text(cents, 2)),
                                                      step("select", i["category"], cat), click(i["save"]))]


def expense_rubric(p: dict[str, Any]) -> Rubric:
    i = {k: "#" + v for k, v in p["ids"].items()}
    names = f"{i['list']} .name"
    r_sum = p["routes"][2]
    total = decimal_text(sum(c for _, c, _ in p["summed"]), 2)
    return Rubric(items=[
        flow("deep_link", f"Open /#{r_sum} and reload: only the summary view is shown.",
             [step("goto", value=f"/#{r_sum}"), step("reload"), step("expect_visible", i["view_summary"]),
              step("expect_hidden", i["view_add"]), step("expect_hidden", i["view_list"])]),
        flow("add_then_list", "Add three expenses, open the list view: they are listed in order, the add view is hidden.",
             _add_expenses(i, p["listed"]) + [click(i["nav_list"]), step("expect_visible", i["view_list"]),
                                              step("expect_hidden", i["view_add"]),
                                              order_is(names, [n for n, _, _ in p["listed"]])]),
        flow("summary_totals", f"Add three expenses, open the summary: total {total}, count 3.",
             _add_expenses(i, p["summed"]) + [click(i["nav_summary"]), text_is(i["total"], total),
                                              text_is(i["count"], "3")]),
        flow("survives_reload", "Add two expenses, reload, open the list: both are still there.",
             _add_expenses(i, p["kept"]) + [step("reload"), click(i["nav_list"]),
                                            order_is(names, [n for n, _, _ in p["kept"]])]),
        *visual_items([i["nav_add"], i["nav_list"], i["nav_summary"], i["name"], i["amount"], i["save"]]),
    ])


EXPENSE_JS = """(function () {
  var KEY = 'expenses-v1';
  var VIEWS = {{views}};
  var LINKS = {{links}};
  var expenses = [];
  try { expenses = JSON.parse(localStorage.getItem(KEY) || '[]'); } catch (e) { expenses = []; }
  function element(id) { return document.getElementById(id); }
  function currentRoute() {
    var route = location.hash.replace(/^#\\/?/, '');
    return Object.prototype.hasOwnProperty.call(VIEWS, route) ? route : {{default_route}};
  }
  function renderList() {
    var list = element({{list}});
    list.textContent = '';
    expenses.forEach(function (expense) {
      var li = document.createElement('li');
      var name = document.createElement('span');
      name.className = 'name';
      name.textContent = expense.name;
      var amount = document.createElement('span');
      amount.className = 'amount';
      amount.textContent = ' ' + expense.amount.toFixed(2);
      li.appendChild(name);
      li.appendChild(amount);
      list.appendChild(li);
    });
  }
  function renderSummary() {
    var total = expenses.reduce(function (sum, e) { return sum + e.amount; }, 0);
    element({{total}}).textContent = total.toFixed(2);
    element({{count}}).textContent = String(expenses.length);
  }
  function show(route) {
    Object.keys(VIEWS).forEach(function (r) {
      element(VIEWS[r]).hidden = r !== route;
      element(LINKS[r]).classList.toggle('active', r === route);
    });
    renderList();
    renderSummary();
  }
  window.addEventListener('hashchange', function () { show(currentRoute()); });
  element({{save}}).addEventListener('click', function () {
    /*HANDLER*/
    var name = element({{name}}).value.trim();
    var amount = Number(element({{amount}}).value);
    var message = element('form-error');
    if (!name || !(amount > 0)) { message.textContent = 'Enter a name and a positive amount.'; return; }
    message.textContent = '';
    expenses.push({ name: name, amount: Math.round(amount * 100) / 100, category: element({{category}}).value });
    localStorage.setItem(KEY, JSON.stringify(expenses));
    element({{name}}).value = '';
    element({{amount}}).value = '';
    renderList();
    renderSummary();
  });
  var first = {{default_route}};
  /*FEATURE*/first = currentRoute();/*END*/
  show(first);
})();
"""


def expense_files(p: dict[str, Any], variant: str) -> dict[str, str]:
    i, routes = p["ids"], p["routes"]
    views = dict(zip(routes, (i["view_add"], i["view_list"], i["view_summary"]), strict=True))
    links = dict(zip(routes, (i["nav_add"], i["nav_list"], i["nav_summary"]), strict=True))
    values = {k: js(v) for k, v in i.items()} | {"views": js(views), "links": js(links),
                                                  "default_route": js(routes[0])}
    script = apply_variant(subst(EXPENSE_JS, values), variant, p["bug"])
    options = "".join(f'<option value="{c}">{c.capitalize()}</option>' for c in p["categories"])
    body = (f'<h1>Expenses</h1>\n<nav><a id="{i["nav_add"]}" href="#{routes[0]}">Add</a>'
            f'<a id="{i["nav_list"]}" href="#{routes[1]}">List</a>'
            f'<a id="{i["nav_summary"]}" href="#{routes[2]}">Summary</a></nav>\n'
            f'<section id="{i["view_add"]}">\n<h2>Add an expense</h2>\n'
            f'<label for="{i["name"]}">What</label>\n<input id="{i["name"]}" type="text" autocomplete="off">\n'
            f'<label for="{i["amount"]}">Amount</label>\n'
            f'<input id="{i["amount"]}" type="number" min="0.01" step="0.01" inputmode="decimal">\n'
            f'<label for="{i["category"]}">Category</label>\n<select id="{i["category"]}">{options}</select>\n'
            f'<button id="{i["save"]}" type="button">Save</button>\n<p id="form-error" class="error"></p>\n'
            f'</section>\n<section id="{i["view_list"]}" hidden>\n<h2>All expenses</h2>\n<ul id="{i["list"]}"></ul>\n'
            f'</section>\n<section id="{i["view_summary"]}" hidden>\n<h2>Summary</h2>\n'
            f'<p class="out">Total: <span id="{i["total"]}">0.00</span></p>\n'
            f'<p class="out">Expenses: <span id="{i["count"]}">0</span></p>\n</section>')
    css = BASE_CSS + (OVERFLOW_CSS if variant == "overflow" else "")
    return {"index.html": page("Expenses", body, scripts=("app.js",), stylesheet="style.css"), "app.js": script,
            "style.css": css}


def expense_hidden(p: dict[str, Any]) -> list[str]:
    batches = [p["listed"], p["summed"], p["kept"]]
    values = [v for b in batches for name, cents, _ in b for v in (name, decimal_text(cents, 2))]
    return values + [decimal_text(sum(c for _, c, _ in p["summed"]), 2)]


# --- d3: notes with a Python standard-library backend -------------------------------------------

NOTES_IDS = {"input": ("note-text", "new-note"), "add": ("add-note", "save-note"), "list": ("notes", "note-list"),
             "error": ("note-error", "error")}
NOTE_TEXTS = ["Call grandma on Sunday", "Buy stamps for the postcards", "Ask Lee about the budget",
              "Bring the projector cable", "Check the boiler pressure", "Renew the parking permit",
              "Send the invoice to Pia", "Book the meeting room", "Return the drill to Max", "Water the tomatoes",
              "Pack the tent pegs", "Print the boarding passes"]
EMPTY_NOTE_MESSAGES = ("A note needs some text", "Write something first", "Empty notes are not saved")


def notes_draw(rng: random.Random) -> dict[str, Any]:
    texts = rng.sample(NOTE_TEXTS, 3)
    return {"ids": pick_ids(rng, NOTES_IDS), "intro": rng.randrange(len(INTROS)), "bug": rng.choice(UNDEFINED_CALLS),
            "texts": texts, "message": rng.choice(EMPTY_NOTE_MESSAGES)}


def notes_request(p: dict[str, Any]) -> str:
    i = p["ids"]
    return (f"{INTROS[p['intro']].format(what='a notes app with a small server that keeps the notes')} Write the "
            "server in Python using only the standard library, as `server.py`, started as `python3 server.py "
            "PORT`: it listens on 127.0.0.1 at that port, serves the page (index.html) at `/`, answers `GET "
            "/api/notes` with a JSON list of the notes, oldest first, each an object with a `text` field, and "
            "stores a note on `POST /api/notes` with a JSON body `{\"text\": ...}` (text trimmed; empty text is "
            "refused with status 400). Notes are kept by the server (in memory is fine), not in the browser, so "
            f"every page load shows them all. On the page: an input `{i['input']}`, a button `{i['add']}` that "
            f"saves the typed note through the API and clears the input, and a list `#{i['list']}` with one `li` "
            f"per note (its text), loaded from the server when the page opens. Clicking `{i['add']}` with empty "
            f"text shows exactly `{p['message']}` in `#{i['error']}` and saves nothing. Nothing may be loaded from "
            "the network: no CDNs or external libraries. It must work on a phone (375 px wide) without horizontal "
            "scrolling, with readable text contrast and no overlapping controls.")


def notes_rubric(p: dict[str, Any]) -> Rubric:
    i = {k: "#" + v for k, v in p["ids"].items()}
    t1, t2, t3 = p["texts"]

    def add(text: str) -> list[Step]:
        return [fill(i["input"], text), click(i["add"]), step("wait_ms", value="300")]

    return Rubric(server=ServerSpec(kind="python", script="server.py"), items=[
        flow("add_note", f"Add {t1!r}: it is listed.", add(t1) + [step("expect_contains", i["list"], t1)]),
        flow("kept_on_reload", f"Add {t2!r} and reload: it is still listed (loaded from the server).",
             add(t2) + [step("reload"), step("wait_ms", value="300"), step("expect_contains", i["list"], t2)]),
        flow("stored_by_server", f"Add {t3!r}: GET /api/notes returns it.",
             add(t3) + [step("expect_contains", i["list"], t3), step("goto", value="/api/notes"),
                        step("expect_contains", "body", t3)]),
        flow("empty_refused", f"Clicking add with empty text shows {p['message']!r}.",
             [fill(i["input"], ""), click(i["add"]), text_is(i["error"], p["message"])]),
        *visual_items([i["input"], i["add"]]),
    ])


NOTES_JS = """(function () {
  var list = document.getElementById({{list}});
  var input = document.getElementById({{input}});
  var error = document.getElementById({{error}});
  function show(note) {
    var li = document.createElement('li');
    li.className = 'note';
    li.textContent = note.text;
    list.appendChild(li);
  }
  var ready = fetch('/api/notes')
    .then(function (response) { return response.json(); })
    .then(function (notes) { notes.forEach(show); })
    .catch(function () { error.textContent = 'Could not load the notes'; });
  document.getElementById({{add}}).addEventListener('click', function () {
    /*HANDLER*/
    var text = input.value.trim();
    if (!text) { error.textContent = {{message}}; return; }
    error.textContent = '';
    ready.then(function () {
      return fetch('/api/notes', {
        method: 'POST', headers: { 'Content-Type': 'application/json' }, body: JSON.stringify({ text: text })
      });
    }).then(function (response) {
      if (!response.ok) { throw new Error('HTTP ' + response.status); }
      return response.json();
    }).then(function (note) {
      show(note);
      input.value = '';
    }).catch(function () { error.textContent = 'Could not save the note'; });
  });
})();
"""

NOTES_SERVER = '''"""The notes server: the page at /, the notes as JSON at /api/notes (kept in memory)."""

import json
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

ROOT = Path(__file__).resolve().parent
NOTES = []
LOCK = threading.Lock()


class Handler(BaseHTTPRequestHandler):
    def log_message(self, format, *args):
        pass

    def send(self, status, body, content_type):
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def send_json(self, status, data):
        self.send(status, json.dumps(data).encode("utf-8"), "application/json")

    def do_GET(self):
        path = self.path.split("?", 1)[0]
        if path in ("/", "/index.html"):
            self.send(200, (ROOT / "index.html").read_bytes(), "text/html; charset=utf-8")
        elif path == "/api/notes":
            with LOCK:
                self.send_json(200, list(NOTES))
        elif path == "/favicon.ico":
            self.send(204, b"", "image/x-icon")
        else:
            self.send_json(404, {"error": "not found"})

    def do_POST(self):
        if self.path.split("?", 1)[0] != "/api/notes":
            self.send_json(404, {"error": "not found"})
            return
        length = int(self.headers.get("Content-Length") or 0)
        try:
            data = json.loads(self.rfile.read(length) or b"{}")
        except ValueError:
            self.send_json(400, {"error": "the body must be JSON"})
            return
        text = str(data.get("text", "")).strip() if isinstance(data, dict) else ""
        if not text:
            self.send_json(400, {"error": "text is required"})
            return
        with LOCK:
            note = {"id": len(NOTES) + 1, "text": text}
            # FEATURE
            NOTES.append(note)
            # END
        self.send_json(201, note)


if __name__ == "__main__":
    ThreadingHTTPServer(("127.0.0.1", int(sys.argv[1])), Handler).serve_forever()
'''


def notes_files(p: dict[str, Any], variant: str) -> dict[str, str]:
    i = p["ids"]
    values = {k: js(v) for k, v in i.items()} | {"message": js(p["message"])}
    script = apply_variant(subst(NOTES_JS, values), variant, p["bug"])
    body = (f'<h1>Notes</h1>\n<label for="{i["input"]}">New note</label>\n'
            f'<input id="{i["input"]}" type="text" autocomplete="off">\n'
            f'<button id="{i["add"]}" type="button">Add note</button>\n<p id="{i["error"]}" class="error"></p>\n'
            f'<ul id="{i["list"]}"></ul>')
    css = BASE_CSS + (OVERFLOW_CSS if variant == "overflow" else "")
    return {"index.html": page("Notes", body, script=script, css=css),
            "server.py": apply_variant(NOTES_SERVER, variant, p["bug"])}


def notes_hidden(p: dict[str, Any]) -> list[str]:
    return list(p["texts"])


