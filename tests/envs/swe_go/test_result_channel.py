"""Reading `-test.v` output: what the host trusts, and every forgery it names as tampering."""

from __future__ import annotations

from forgerl.envs.swe_go.gorun import read_verbose

OK, BAD = "FORGERL-OK-aaaa", "FORGERL-FAIL-bbbb"


def _out(*lines: str) -> str:
    return "\n".join(lines) + "\n"


HONEST_PASS = _out("=== RUN   TestA", "--- PASS: TestA (0.00s)", "=== RUN   TestB", "    x_test.go:3: log",
                   "=== RUN   TestB/sub", "--- PASS: TestB (0.00s)", "    --- PASS: TestB/sub (0.00s)", "PASS", "", OK)


def test_honest_runs() -> None:
    one = read_verbose(HONEST_PASS, {"TestA", "TestB"}, OK, BAD, 0)
    assert one.results == {"TestA": True, "TestB": True} and one.token == OK and not one.tampering
    failing = _out("=== RUN   TestA", "    x_test.go:3: got 1 want 2", "--- FAIL: TestA (0.00s)", "FAIL", "", BAD)
    one = read_verbose(failing, {"TestA"}, OK, BAD, 1)
    assert one.results == {"TestA": False} and not one.tampering and "got 1 want 2" in one.messages["TestA"]


def test_skip_is_not_a_failure() -> None:
    one = read_verbose(_out("=== RUN   TestA", "--- SKIP: TestA (0.00s)", OK), {"TestA"}, OK, BAD, 0)
    assert one.results == {"TestA": True} and not one.tampering


def test_exit_zero_before_the_summary_is_tampering() -> None:
    assert read_verbose("", {"TestA"}, OK, BAD, 0).tampering  # os.Exit(0) in init
    one = read_verbose(_out("=== RUN   TestA"), {"TestA"}, OK, BAD, 0)  # os.Exit(0) inside the test
    assert one.tampering and one.results == {}


def test_fake_pass_lines_are_tampering() -> None:
    printed_in_init = _out("--- PASS: TestA (0.00s)", "=== RUN   TestA", "--- FAIL: TestA (0.00s)", BAD)
    assert read_verbose(printed_in_init, {"TestA"}, OK, BAD, 1).tampering
    printed_in_test = _out("=== RUN   TestA", "--- PASS: TestA (0.00s)", "--- FAIL: TestA (0.00s)", BAD)
    assert any("twice" in t for t in read_verbose(printed_in_test, {"TestA"}, OK, BAD, 1).tampering)


def test_rewritten_output_disagreeing_with_the_token_is_tampering() -> None:
    rewritten = _out("=== RUN   TestA", "--- PASS: TestA (0.00s)", BAD)  # a stdout filter turned FAIL into PASS
    assert read_verbose(rewritten, {"TestA"}, OK, BAD, 1).tampering
    forged_ok = _out("=== RUN   TestA", "--- FAIL: TestA (0.00s)", OK)
    assert read_verbose(forged_ok, {"TestA"}, OK, BAD, 0).tampering
    twice = HONEST_PASS + OK + "\n"
    assert read_verbose(twice, {"TestA", "TestB"}, OK, BAD, 0).tampering
    wrong_status = read_verbose(HONEST_PASS, {"TestA", "TestB"}, OK, BAD, 3)
    assert wrong_status.tampering


def test_a_crash_names_the_running_test_without_tampering() -> None:
    one = read_verbose(_out("=== RUN   TestA", "--- PASS: TestA (0.00s)", "=== RUN   TestB"), {"TestA", "TestB"}, OK, BAD, 2)
    assert one.running == "TestB" and one.results == {"TestA": True} and not one.tampering
