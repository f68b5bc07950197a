"""The model proposer: strict parsing of its JSON answer, and the scripted-model path end to end through
the agent loop (each proposal a recorded, scored trajectory; malformed answers logged and skipped)."""

from __future__ import annotations

import json

import pytest
from evolve_helpers import FakeRunner, naming_rate

from forgerl.chat import get_format
from forgerl.engine.scripted import ScriptedEngine
from forgerl.evolve.log import read_log
from forgerl.evolve.model_proposer import ModelProposer, ModelSettings, ProposalError, parse_proposals
from forgerl.evolve.run import run_evolve
from forgerl.evolve.space import SearchSpace
from forgerl.store import TrajectoryStore
from forgerl.types import Message

SPACE = SearchSpace(knobs={"optim.lr": [1e-4, 3e-4]}, scaffold={"naming": ["default", "camel"],
                                                                 "response_layout": ["default", "json"]})


def good(**scaffold) -> str:
    return json.dumps({"proposals": [{"config": {}, "scaffold": scaffold, "reason": "names the model reads better"}]})


@pytest.mark.parametrize(("text", "why"), [
    ("I think camel case would help.", "exactly one JSON object"),
    ('Sure! {"proposals": []}', "exactly one JSON object"),
    ('{"proposals": [}', "not valid JSON"),
    ('{"proposals": []}', "give 1 to 2 proposals"),
    ('{"proposal": [{"scaffold": {"naming": "camel"}}]}', "proposals"),
    ('{"proposals": [{"scaffold": {"naming": "camel"}, "extra": 1}]}', "proposals.0.extra"),
    ('{"proposals": [{"config": {"loss.name": "grpo"}}]}', "not in the search space"),
    ('{"proposals": [{"config": {"optim.lr": 1.0}}]}', "not one of the declared values"),
    ('{"proposals": [{"scaffold": {"naming": "kebab"}}]}', "not in the search space"),
    ('{"proposals": [{"scaffold": {"naming": "nonsense"}}]}', "unknown"),
    ('{"proposals": [{"scaffold": {"tool_descriptions": "rewritten"}}]}', "needs a naming style"),
    ('{"proposals": [{"config": {"optim.lr": "3e-4"}}]}', "not one of the declared values"),
    ('{"proposals": "camel"}', "proposals"),
])
def test_malformed_answers_are_rejected_with_what_is_wrong(text: str, why: str) -> None:
    with pytest.raises(ProposalError, match=why):
        parse_proposals(text, SPACE, max_candidates=2)


def test_a_valid_answer_parses() -> None:
    [(candidate, reason)] = parse_proposals(
        '{"proposals": [{"config": {"optim.lr": 0.0003}, "scaffold": {"naming": "camel"}, "reason": "r"}]}', SPACE, 2)
    assert candidate.config == {"optim.lr": 3e-4} and candidate.scaffold.naming == "camel" and reason == "r"


def reply(fmt, content: str) -> str:
    return fmt.render_assistant_body(Message(role="assistant", content=content, reasoning="Let me look at the history."))


def test_scripted_model_proposes_through_the_agent_loop(settings_for, tokenizer, tmp_path) -> None:
    """Two malformed answers, then a valid one, then repeats of it: the log has the rejections and the
    measured proposal; three answers in a row without a new proposal end the search; the proposer's
    trajectories are in its store, scored 0 (malformed) or 1 (parsed)."""
    fmt = get_format("minimax_m2")
    replies = [reply(fmt, "camel case, probably"), reply(fmt, '{"proposals": [{"scaffold": {"naming": "kebab"}}]}'),
               reply(fmt, good(naming="camel"))]
    engine = ScriptedEngine(tokenizer, replies, max_context=8192, cycle=True)
    settings = settings_for(proposer="model", space=SPACE.model_dump(), budget={"max_runs": 4})
    store = tmp_path / "proposer"
    proposer = ModelProposer(engine, ModelSettings(max_rejections=3), store_dir=store)
    runner = FakeRunner(naming_rate({"camel": 0.75}))
    result = run_evolve(settings, runner=runner, proposer=proposer, use_doctor=False)
    _, lines = read_log(result.log_path)
    rejects = [r for r in lines if r["kind"] == "reject"]
    assert "exactly one JSON object" in rejects[0]["why"] and rejects[0]["raw"] == "camel case, probably"
    assert "not in the search space" in rejects[1]["why"]
    measured = [r for r in lines if r["kind"] == "measure"]
    assert [r["source"] for r in measured] == ["baseline", "model"]
    assert measured[1]["decision"] == "kept" and measured[1]["reason"] == "names the model reads better"
    assert [r["why"].startswith("already measured") for r in rejects[2:]] == [True] * 3
    assert result.stop_reason == "the model proposer has nothing more to propose"
    with TrajectoryStore(store) as s:
        trajectories = list(s.iter_trajectories())
    assert [t.reward_breakdown.get("outcome") for t in trajectories] == [0.0, 0.0, 1.0, 1.0, 1.0, 1.0]
    assert all(t.family == "evolve-proposer" and t.calls and t.calls[0].completion_ids for t in trajectories)
    assert "History:" in tokenizer.decode(engine.prompts[-1]) and "naming=camel" in tokenizer.decode(engine.prompts[-1])


def test_the_model_proposer_over_http(settings_for, tmp_path) -> None:
    """The same proposer against a completions server (forgerl's OpenAI-compatible app with a scripted
    model behind it), opened from the settings as a real endpoint would be."""
    import copy
    import socket
    import threading
    import time

    import uvicorn

    from forgerl.evolve.model_proposer import open_model_engine
    from forgerl.model.tokenizer import load_default_tokenizer, prepare_tokenizer
    from forgerl.server.app import create_app

    fmt = get_format("minimax_m2")
    served = ScriptedEngine(prepare_tokenizer(copy.deepcopy(load_default_tokenizer()), fmt),
                            [reply(fmt, good(naming="camel", response_layout="json"))], cycle=True, model_name="default")
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    server = uvicorn.Server(uvicorn.Config(create_app(served, fmt), log_level="warning", lifespan="off"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.01)
    try:
        model = ModelSettings(url=f"http://127.0.0.1:{sock.getsockname()[1]}", model="default", max_rejections=1)
        proposer = ModelProposer(open_model_engine(model), model, store_dir=tmp_path / "proposer")
        result = run_evolve(settings_for(proposer="model", space=SPACE.model_dump(), budget={"max_runs": 3}),
                            runner=FakeRunner(naming_rate({"camel": 0.75})), proposer=proposer, use_doctor=False)
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        sock.close()
    measured = [r for r in read_log(result.log_path)[1] if r["kind"] == "measure"]
    assert measured[1]["source"] == "model" and measured[1]["candidate"]["scaffold"]["response_layout"] == "json"
    assert measured[1]["decision"] == "kept" and served.prompts  # the server sampled it
    assert proposer.trajectories[0].calls[0].completion_ids  # token ids as the server sampled them
