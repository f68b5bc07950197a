"""The appdev environment without a browser: its file tools and shell in the sandbox, what
`submit` hands the verifier (only the app's files), the verdict it builds from the verifier's
report, and the no-op (an empty workspace fails the gate without starting a browser). The app
verifier here is a recording fake; tests/envs/appdev/test_validate.py runs the real one."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

import forgerl
from forgerl.envs.appdev import AppDevEnv, generate_task, gold_files
from forgerl.envs.appdev.env import MAX_FILE_BYTES, SYSTEM_PROMPT, TOOLS
from forgerl.envs.appdev.rubric import GATE_ID, AppReport, ItemVerdict, Rubric
from forgerl.envs.base import family_info, make_env, play_rounds, run_gold
from forgerl.errors import ConfigError, ToolError, VerifierError
from forgerl.types import Message, ToolCall, Trajectory


class FakeVerifier:
    """Records what it was given; passes the gate and every item but the last."""

    def __init__(self, error: Exception | None = None) -> None:
        self.calls: list[tuple[dict[str, str], Rubric, str, Path | None]] = []
        self.error = error

    async def __call__(self, files, rubric, request, evidence_dir):
        self.calls.append((dict(files), rubric, request, evidence_dir))
        if self.error is not None:
            raise self.error
        (evidence_dir / "shot.png").write_bytes(b"png")
        items = [ItemVerdict(id=i.id, layer=i.layer, passed=n < len(rubric.items) - 1, reason="fake",
                             screenshots=["shot.png"]) for n, i in enumerate(rubric.items)]
        return AppReport(gate=ItemVerdict(id=GATE_ID, layer="execution", passed=True), items=items,
                         verifier="fake", seconds=0.5)


def run(env: AppDevEnv, name: str, **arguments) -> str:
    return asyncio.run(env.execute(ToolCall(name=name, arguments=arguments)))


@pytest.fixture()
def ready():
    envs: list[AppDevEnv] = []

    def make(seed: int = 0, difficulty: int = 1, **kwargs) -> tuple[AppDevEnv, FakeVerifier]:
        verifier = kwargs.pop("verifier", None) or FakeVerifier()
        env = AppDevEnv(seed, verifier=verifier, **kwargs)
        env.reset(generate_task(seed, difficulty))
        envs.append(env)
        return env, verifier

    yield make
    for env in envs:
        asyncio.run(env.close())


def test_reset_opens_an_empty_workspace_with_the_request(ready):
    env, _ = ready()
    assert run(env, "list_files") == "The workspace is empty."
    messages = env.reset(generate_task(1, 2))
    assert messages[0].content == SYSTEM_PROMPT and "## Contract" in SYSTEM_PROMPT
    assert messages[1].content == generate_task(1, 2).prompt
    assert [t.name for t in env.tools()] == [t.name for t in TOOLS]
    assert family_info("appdev").make_env is AppDevEnv


def test_file_tools_write_read_edit_and_list(ready):
    env, _ = ready()
    assert run(env, "write_file", path="js/app.js", content="let a = 1;\nlet b = 2;\n") == "wrote js/app.js (2 lines)"
    assert run(env, "edit_file", path="js/app.js", old_text="b = 2", new_text="b = 3") == "edited js/app.js"
    assert "    2  let b = 3;" in run(env, "read_file", path="js/app.js")
    assert "js/app.js (22 bytes)" in run(env, "list_files")
    with pytest.raises(ToolError, match="occurs 0 times"):
        run(env, "edit_file", path="js/app.js", old_text="missing", new_text="x")
    run(env, "write_file", path="twice.txt", content="x x")
    with pytest.raises(ToolError, match="occurs 2 times"):
        run(env, "edit_file", path="twice.txt", old_text="x", new_text="y")
    with pytest.raises(ToolError, match="no file"):
        run(env, "read_file", path="nope.html")


@pytest.mark.parametrize("path", ["../escape.html", "/etc/passwd", "~/x", "a/../../b", "", ".", "a\x00b"])
def test_paths_outside_the_workspace_are_refused(ready, path):
    env, _ = ready()
    with pytest.raises(ToolError):
        run(env, "write_file", path=path, content="x")


def test_a_symlink_out_of_the_workspace_is_refused(ready):
    env, _ = ready()
    run(env, "run_shell", command="ln -s / root")
    with pytest.raises(ToolError, match="symlink"):
        run(env, "write_file", path="root/tmp/x", content="x")
    with pytest.raises(ToolError, match="symlink"):
        run(env, "read_file", path="root/etc/hostname")


def test_sizes_arguments_and_unknown_tools_are_checked(ready):
    env, _ = ready()
    with pytest.raises(ToolError, match=f"limited to {MAX_FILE_BYTES} bytes"):
        run(env, "write_file", path="big.js", content="x" * (MAX_FILE_BYTES + 1))
    with pytest.raises(ToolError, match="content must be a string"):
        run(env, "write_file", path="a.js", content=3)
    with pytest.raises(ToolError, match="unexpected arguments"):
        run(env, "list_files", path="x")
    with pytest.raises(ToolError, match="unknown tool"):
        run(env, "deploy")


def test_the_shell_checks_scripts_and_cannot_read_the_reference_apps(ready):
    env, _ = ready()
    run(env, "write_file", path="ok.js", content="const x = 1;\n")
    run(env, "write_file", path="bad.js", content="const = ;\n")
    assert run(env, "run_shell", command="node --check ok.js").startswith("exit code: 0")
    assert "SyntaxError" in run(env, "run_shell", command="node --check bad.js")
    templates = Path(forgerl.__file__).resolve().parent / "envs" / "appdev" / "templates.py"
    out = run(env, "run_shell", command=f"cat {templates} | head -3; ls {templates.parent} | wc -l")
    assert "No such file" in out and "AppDev task templates" not in out  # forgerl's package (the gold apps) is hidden


def test_submit_hands_only_the_app_files_to_the_verifier_and_scores_its_report(ready):
    env, verifier = ready()
    gold = gold_files(env.task)
    for path, text in gold.items():
        run(env, "write_file", path=path, content=text)
    run(env, "write_file", path="notes.md", content="my plan")
    run(env, "write_file", path=".cache/x.js", content="hidden")
    run(env, "run_shell", command="printf '\\377\\376' > logo.svg")
    assert "Submitted" in run(env, "submit")
    files, rubric, request, evidence_dir = verifier.calls[0]
    assert files == gold and request == env.task.prompt and rubric == Rubric.model_validate(env.task.verifier["rubric"])
    verdict = env.verify(Trajectory(task_id=env.task.id, messages=[]))
    n = len(rubric.items)
    assert verdict.outcome == pytest.approx((n - 1) / n)
    assert verdict.parts["gate"] == 1.0 and verdict.parts["submitted"] == 1.0
    assert verdict.parts["pass_rate"] == pytest.approx((n - 1) / n)
    assert [verdict.parts[f"item/{i.id}"] for i in rubric.items] == [1.0] * (n - 1) + [0.0]
    evidence = verdict.evidence
    assert evidence["verifier"] == "fake" and evidence["seconds"] == 0.5 and evidence["files"] == ["index.html"]
    assert [i["id"] for i in evidence["items"]] == [i.id for i in rubric.items]
    assert evidence["gate"]["passed"] and Path(evidence["evidence_dir"]) == evidence_dir
    assert sorted(evidence["skipped_files"]) == [".cache/x.js (not an app file)", "logo.svg (not UTF-8 text)",
                                                 "notes.md (not an app file)"]
    with pytest.raises(ToolError, match="already submitted"):
        run(env, "submit")
    with pytest.raises(ToolError, match="already submitted"):
        run(env, "write_file", path="index.html", content="late")
    assert len(verifier.calls) == 1


def test_no_submit_scores_zero_with_a_reason(ready):
    env, verifier = ready()
    run(env, "write_file", path="index.html", content="<p>hi</p>")
    verdict = env.verify(Trajectory(task_id=env.task.id, messages=[]))
    assert verdict.outcome == 0 and verdict.parts == {"submitted": 0.0} and "never called submit" in verdict.evidence["reason"]
    assert not verifier.calls


@pytest.mark.parametrize(("difficulty", "seed", "entry"), [(1, 0, "index.html"), (3, 2, "server.py")])
def test_an_empty_submission_fails_the_gate_without_a_browser(ready, difficulty, seed, entry):
    env, verifier = ready(seed, difficulty)
    if entry == "server.py":  # a python task needs its server, not just a page
        run(env, "write_file", path="index.html", content="<p>hi</p>")
    run(env, "submit")
    verdict = env.verify(Trajectory(task_id=env.task.id, messages=[]))
    assert verdict.outcome == 0 and verdict.parts["gate"] == 0 and not verifier.calls
    assert f"no {entry}" in verdict.evidence["gate"]["reason"]
    assert all(not i["passed"] for i in verdict.evidence["items"])


def test_a_verifier_failure_is_an_infrastructure_error_not_a_zero(ready):
    env, _ = ready(verifier=FakeVerifier(VerifierError("Chromium crashed")))
    run(env, "write_file", path="index.html", content="<p>hi</p>")
    with pytest.raises(VerifierError, match="Chromium crashed"):
        run(env, "submit")
    assert not env.done


def test_evidence_is_temporary_unless_a_root_is_given(ready, tmp_path, monkeypatch):
    env, verifier = ready()
    run(env, "write_file", path="index.html", content="<p>hi</p>")
    run(env, "submit")
    temporary = verifier.calls[0][3]
    assert (temporary / "shot.png").exists()
    asyncio.run(env.close())
    assert not temporary.exists()

    monkeypatch.setenv("FORGERL_APPDEV_EVIDENCE", str(tmp_path / "kept"))
    env, verifier = ready()
    run(env, "write_file", path="index.html", content="<p>hi</p>")
    run(env, "submit")
    asyncio.run(env.close())
    kept = verifier.calls[0][3]
    assert kept.parent == tmp_path / "kept" and kept.name.startswith(env.task.id) and (kept / "shot.png").exists()


def test_gold_path_writes_every_file_in_one_round_then_submits():
    verifier = FakeVerifier()
    env = AppDevEnv(0, verifier=verifier)
    task = generate_task(1, 3)
    rounds = env.gold_solution(task)
    assert [c.name for c in rounds[0]] == ["write_file"] * len(gold_files(task)) and [c.name for c in rounds[1]] == ["submit"]
    trajectory, result = asyncio.run(run_gold(env, task))
    asyncio.run(env.close())
    assert verifier.calls[0][0] == gold_files(task) and trajectory.reward == result.score > 0


def test_declared_no_op_and_variants_play_through_the_family(monkeypatch):
    """The family's no-op submits the empty workspace (0, no browser); its variants write a
    broken app and submit (here judged by the fake)."""
    family = family_info("appdev")
    task = generate_task(0, 1)
    env = make_env("appdev", 0)
    _, result = asyncio.run(play_rounds(env, task, family.noop))
    asyncio.run(env.close())
    assert result.score == 0
    scripts = family.variants(task)
    assert sorted(scripts) == ["js_error", "missing_feature", "overflow"]
    assert [c.name for c in scripts["overflow"][0]] == ["write_file"] and scripts["overflow"][1][0].name == "submit"


def test_a_task_of_another_family_is_refused():
    from forgerl.envs.base import sample_task

    with pytest.raises(ConfigError, match="not an appdev task"):
        AppDevEnv(0).reset(sample_task("arithmetic", 0))
    assert Message(role="user", content="x")  # the vocabulary is importable alongside
