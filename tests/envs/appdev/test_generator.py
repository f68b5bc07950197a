"""The appdev task generator and its templates, without a browser: determinism, variation,
hidden values kept out of the request, rubric shape, and reference apps that match their rubric
(every selector names something the request names and the gold app has) and parse."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys

import pytest

from forgerl.envs.appdev.generator import (
    DIFFICULTIES,
    appears_in,
    broken_variants,
    generate_task,
    gold_files,
    task_rubric,
)
from forgerl.envs.appdev.rubric import EXPECTATIONS, PHONE, Rubric
from forgerl.envs.appdev.templates import BY_DIFFICULTY, TEMPLATES, VARIANTS, apply_variant, money
from forgerl.envs.base import sample_task
from forgerl.errors import ConfigError

ALL = [(d, s) for d in DIFFICULTIES for s in range(3)]  # seeds 0..2 cover every template of a level
NODE = shutil.which("node")


def test_seed_sets_cover_every_template_of_a_level():
    for level in DIFFICULTIES:
        every = set(BY_DIFFICULTY[level])
        assert {generate_task(s, level).data["template"] for s in range(3)} == every  # envs validate -n 3
        assert {generate_task(s, level).data["template"] for s in range(99, 102)} == every
        for start in range(20):  # any five consecutive seeds
            assert {generate_task(s, level).data["template"] for s in range(start, start + 5)} == every
    assert sorted(TEMPLATES) == sorted(n for names in BY_DIFFICULTY.values() for n in names)
    assert len(TEMPLATES) == 9


def test_mixed_difficulty_sets_see_every_template():
    """Levels cycle with the seed (sample_task) or the index (generate_tasks): the template must
    not be locked to the level."""
    from forgerl.envs.tasks import generate_tasks

    assert {sample_task("appdev", s).data["template"] for s in range(9)} == set(TEMPLATES)
    for seed in (0, 1, 7):
        assert {t.data["template"] for t in generate_tasks("appdev", 9, seed=seed)} == set(TEMPLATES)


@pytest.mark.parametrize(("difficulty", "seed"), ALL)
def test_same_seed_same_task_byte_for_byte(difficulty, seed):
    first, second = generate_task(seed, difficulty), generate_task(seed, difficulty)
    assert first.model_dump_json() == second.model_dump_json()
    assert gold_files(first) == gold_files(second) and broken_variants(first) == broken_variants(second)
    assert sample_task("appdev", seed, difficulty).model_dump_json() == first.model_dump_json()


@pytest.mark.parametrize(("difficulty", "seed"), ALL)
def test_other_seeds_of_a_template_vary_values_and_wording(difficulty, seed):
    template = generate_task(seed, difficulty).data["template"]
    tasks = [t for t in (generate_task(s, difficulty) for s in range(seed, seed + 30)) if t.data["template"] == template]
    tasks = tasks[:6]
    assert len(tasks) == 6
    assert len({t.prompt for t in tasks}) >= 5
    assert len({str(t.data["hidden"]) for t in tasks}) == 6  # the hidden values differ every time
    assert len({str(t.data["params"]["ids"]) for t in tasks}) >= 2  # element ids vary too


@pytest.mark.parametrize("difficulty", DIFFICULTIES)
def test_hidden_values_never_appear_in_the_request(difficulty):
    for seed in range(60):
        task = generate_task(seed, difficulty)
        hidden = task.data["hidden"]
        assert hidden, task.id
        leaked = [v for v in hidden if appears_in(v, task.prompt)]
        assert not leaked, (task.id, leaked)
        rubric = task_rubric(task)  # and the values the flows type or expect are among them
        typed = {s.value for i in rubric.items for s in i.steps if s.action == "fill" and s.value and s.value.strip()}
        assert not [v for v in typed if appears_in(v, task.prompt)], task.id


def test_appears_in_matches_whole_tokens_only():
    assert appears_in("12.5", "costs 12.5 now") and appears_in("12.50", "a 12.50.")
    assert not appears_in("12.5", "1.609344 and 112.50 and 12.55")
    assert not appears_in("ink", "Ink Pen, thinking")


@pytest.mark.parametrize(("difficulty", "seed"), ALL)
def test_rubric_is_valid_and_has_flows_and_visual_items(difficulty, seed):
    task = generate_task(seed, difficulty)
    rubric = task_rubric(task)
    assert Rubric.model_validate_json(rubric.model_dump_json()) == rubric
    assert 3 <= len(rubric.items) <= 8
    flows = [i for i in rubric.items if i.layer == "interaction"]
    visual = [i for i in rubric.items if i.layer == "visual"]
    assert len(flows) >= 2 and {i.check for i in visual} == {"no_horizontal_scroll", "on_screen", "contrast_aa", "no_overlap"}
    scroll = next(i for i in visual if i.check == "no_horizontal_scroll")
    assert scroll.viewport == PHONE
    for item in flows:
        assert any(s.action in EXPECTATIONS for s in item.steps), item.id
    assert (rubric.server.kind == "python") == (task.data["template"] == "notes_server")


def _selectors(rubric: Rubric) -> set[str]:
    found = {s.selector for i in rubric.items for s in i.steps if s.selector}
    return found | {sel for i in rubric.items for sel in i.selectors}


def _named(ident: str, prompt: str) -> bool:
    """The request names `ident` (an error element may be named by the rule "the field's id
    followed by `-error`")."""
    if f"`{ident}`" in prompt or f"`#{ident}`" in prompt:
        return True
    field = ident.removesuffix("-error")
    return field != ident and f"`{field}`" in prompt and "`-error`" in prompt


@pytest.mark.parametrize(("difficulty", "seed"), ALL)
def test_every_id_and_class_a_rubric_uses_is_named_in_the_request(difficulty, seed):
    """The request is the contract: a rubric may only drive elements the user named, and the
    gold app has them."""
    task = generate_task(seed, difficulty)
    gold = "\n".join(gold_files(task).values())
    for selector in _selectors(task_rubric(task)):
        for ident in re.findall(r"#([\w-]+)", selector):
            assert _named(ident, task.prompt), (selector, task.id)
            assert ident in gold, (ident, task.id)
        for cls in re.findall(r"\.([\w-]+)", selector):
            assert f"`{cls}`" in task.prompt, (selector, task.id)


@pytest.mark.parametrize(("difficulty", "seed"), ALL)
def test_broken_variants_differ_from_gold_in_the_declared_way(difficulty, seed):
    task = generate_task(seed, difficulty)
    gold, variants = gold_files(task), broken_variants(task)
    assert set(variants) == set(VARIANTS)
    bug = task.data["params"]["bug"]
    markers = ("/*HANDLER*/", "/*FEATURE*/", "/*END*/", "# FEATURE", "# END")
    for files in [gold, *variants.values()]:
        assert "index.html" in files and not any(m in text for text in files.values() for m in markers)
        assert set(files) == set(gold)
    assert f"{bug}();" in "".join(variants["js_error"].values()) and f"{bug}();" not in "".join(gold.values())
    assert len("".join(variants["missing_feature"].values())) < len("".join(gold.values()))
    assert "width: 760px" in "".join(variants["overflow"].values())


def _scripts(files: dict[str, str]) -> dict[str, str]:
    """Every script of an app: .js files and inline <script> blocks."""
    scripts = {name: text for name, text in files.items() if name.endswith(".js")}
    for name, text in files.items():
        if name.endswith(".html"):
            for n, block in enumerate(re.findall(r"<script>(.*?)</script>", text, re.S)):
                scripts[f"{name}#{n}"] = block
    return scripts


@pytest.mark.skipif(NODE is None, reason="needs node (apt-get install -y nodejs) to syntax-check the apps")
@pytest.mark.parametrize("difficulty", DIFFICULTIES)
def test_every_script_of_gold_and_variants_parses(difficulty, tmp_path):
    """The broken variants break behaviour, never syntax (a syntax error would fail the gate)."""
    checked = 0
    for seed in range(3):
        task = generate_task(seed, difficulty)
        for variant, files in {"gold": gold_files(task), **broken_variants(task)}.items():
            for name, code in _scripts(files).items():
                path = tmp_path / f"{task.id}-{variant}-{name.replace('/', '_').replace('#', '_')}.js"
                path.write_text(code)
                checked += 1
                done = subprocess.run([NODE, "--check", str(path)], capture_output=True, text=True)
                assert done.returncode == 0, (task.id, variant, name, done.stderr)
            if "server.py" in files:
                compile(files["server.py"], f"{task.id}-{variant}-server.py", "exec")
    assert checked >= 12


def test_python_server_runs_and_keeps_notes(tmp_path):
    """The notes template's gold server, started as the request says, stores and lists notes;
    its missing-feature variant answers but keeps nothing."""
    import json
    import socket
    import time
    import urllib.request

    task = generate_task(2, 3)
    assert task.data["template"] == "notes_server"
    for variant, files in (("gold", gold_files(task)), ("missing_feature", broken_variants(task)["missing_feature"])):
        app = tmp_path / variant
        app.mkdir()
        for name, text in files.items():
            (app / name).write_text(text)
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        server = subprocess.Popen([sys.executable, "server.py", str(port)], cwd=app)
        try:
            base = f"http://127.0.0.1:{port}"
            for _ in range(100):
                try:
                    urllib.request.urlopen(base + "/api/notes", timeout=1).read()
                    break
                except OSError:
                    time.sleep(0.05)
            post = urllib.request.Request(base + "/api/notes", data=json.dumps({"text": "  hello  "}).encode(),
                                          headers={"Content-Type": "application/json"}, method="POST")
            assert json.loads(urllib.request.urlopen(post, timeout=2).read())["text"] == "hello"
            listed = json.loads(urllib.request.urlopen(base + "/api/notes", timeout=2).read())
            assert [n["text"] for n in listed] == (["hello"] if variant == "gold" else [])
            page = urllib.request.urlopen(base + "/", timeout=2).read().decode()
            assert page == files["index.html"]
        finally:
            server.terminate()
            server.wait(5)


def test_money_and_variant_markers():
    from fractions import Fraction

    assert money(Fraction(1234, 100)) == "12.34" and money(Fraction(12345, 1000) + Fraction(1, 10**6)) == "12.35"
    source = "a();/*HANDLER*/b();/*FEATURE*/c();/*END*/\n    # FEATURE\n    d()\n    # END\n"
    assert apply_variant(source, "gold", "boom") == "a();b();c();\n    d()\n"
    assert apply_variant(source, "js_error", "boom") == "a();boom();b();c();\n    d()\n"
    assert apply_variant(source, "missing_feature", "boom") == "a();b();\n"


def test_a_task_of_another_family_is_refused():
    task = sample_task("arithmetic", 0)
    with pytest.raises(ConfigError, match="not an appdev task"):
        gold_files(task)
    with pytest.raises(ValueError, match="difficulty"):
        generate_task(0, 4)
