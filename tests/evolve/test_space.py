"""The search space and scaffolds: what a choice turns on, what is refused, what a measurement runs."""

from __future__ import annotations

import random

import pytest
from pydantic import ValidationError

from forgerl.chat import get_format
from forgerl.engine.scripted import ScriptedEngine
from forgerl.errors import ConfigError
from forgerl.evolve.measure import measure
from forgerl.evolve.runner import candidate_config, train_config
from forgerl.evolve.settings import load_settings
from forgerl.evolve.space import Candidate, Range, ScaffoldChoice, SearchSpace, diff
from forgerl.evolve.splits import VALIDATION_SEED_BASE, check_disjoint, task_seeds
from forgerl.store import TrajectoryStore
from forgerl.types import Message


def test_a_scaffold_forces_its_choices_and_nothing_else() -> None:
    assert not ScaffoldChoice().perturb_spec().active
    spec = ScaffoldChoice(naming="pascal", response_layout="table", chat_format="json_tools").perturb_spec()
    assert spec.tool_info.probability == 1 and spec.tool_info.naming_styles == ["pascal"] and spec.tool_info.strength == 0
    assert spec.allowed("naming_styles") == ["pascal"]  # not held out, unlike training's default spec
    assert spec.allowed("chat_formats") == ["json_tools"] and spec.allowed("response_styles") == ["table"]
    assert spec.system_prompt.probability == 0 and spec.user_prompt.probability == 0
    assert ScaffoldChoice(naming="camel", tool_descriptions="rewritten").perturb_spec().tool_info.strength == 1


@pytest.mark.parametrize(("choice", "why"), [
    ({"tool_descriptions": "rewritten"}, "needs a naming style"),
    ({"naming": "Camel"}, "unknown"),
    ({"system_prompt": 1.5}, r"strength must be in \[0, 1\]"),
    ({"context_policy": "drop_old_tool_outputs:0"}, "N >= 1"),
    ({"context_policy": "forget"}, "drop_old_tool_outputs:N"),
])
def test_bad_scaffolds_are_refused(choice, why) -> None:
    with pytest.raises(ValidationError, match=why):
        ScaffoldChoice(**choice)


def test_space_samples_inside_itself_and_checks_proposals() -> None:
    space = SearchSpace(knobs={"optim.lr": Range(low=1e-5, high=1e-3, count=3, log=True), "max_turns": [4, 8]},
                        scaffold={"naming": ["default", "camel"], "tool_descriptions": ["default", "rewritten"]})
    assert space.knob_values()["optim.lr"] == [1e-5, 1e-4, 1e-3] and space.size() == 24
    rng = random.Random(0)
    for _ in range(50):
        c = space.sample(rng)
        space.check(c)
        assert not (c.scaffold.tool_descriptions == "rewritten" and c.scaffold.naming == "default")
    with pytest.raises(ValueError, match="not in the search space"):
        space.check(Candidate(config={"seed": 3}))
    with pytest.raises(ValidationError, match="unknown dimension"):
        SearchSpace(scaffold={"font": ["serif"]})


def test_candidate_config_and_diff_against_the_base() -> None:
    base = train_config({})
    c = Candidate(config={"optim.lr": 3e-4, "loss.name": "grpo"}, scaffold=ScaffoldChoice(naming="camel"))
    cfg = candidate_config(base, c)
    assert cfg.optim.lr == 3e-4 and cfg.loss.name == "grpo" and cfg.optim.betas == base.optim.betas
    d = diff(base.model_dump(), c)
    assert d == {"config": {"loss.name": ["cispo", "grpo"], "optim.lr": [1e-4, 3e-4]}, "scaffold": {"naming": ["default", "camel"]}}
    with pytest.raises(ConfigError, match="optim"):
        candidate_config(base, Candidate(config={"optim.lrr": 1.0}))


def test_splits_are_disjoint_and_nested() -> None:
    assert task_seeds("validation", 3) == [VALIDATION_SEED_BASE, VALIDATION_SEED_BASE + 1, VALIDATION_SEED_BASE + 2]
    assert task_seeds("evaluation", 8)[:4] == task_seeds("evaluation", 4)
    assert not set(task_seeds("validation", 1000)) & set(task_seeds("evaluation", 1000))
    check_disjoint("tool-reasoning", 32, 64, [3])  # different task ids


def test_settings_errors_name_the_key(tmp_path) -> None:
    path = tmp_path / "evolve.toml"
    path.write_text('[budget]\nmax_runs = 0\n[space.scaffold]\nnaming = ["Camel"]\n')
    with pytest.raises(ConfigError, match=r"budget.max_runs.*space.scaffold|space.*budget"):
        load_settings(path)
    with pytest.raises(ConfigError, match="does not exist"):
        load_settings(tmp_path / "missing.toml")


def test_measure_runs_the_split_under_the_scaffold(tokenizer, tmp_path) -> None:
    """Episodes on validation seeds, the scaffold's renamed tools shown to the model, Wilson interval, stored."""
    fmt = get_format("minimax_m2")
    answer = fmt.render_assistant_body(Message(role="assistant", content="I do not know.", reasoning="Hmm."))
    engine = ScriptedEngine(tokenizer, [answer], cycle=True)
    cfg = train_config({"max_turns": 2})
    m = measure(engine, cfg, ScaffoldChoice(naming="upper", variant=2), "validation", 3, out_dir=tmp_path / "val")
    assert (m.split, m.n, m.successes, m.failed) == ("validation", 3, 0, 0) and m.ci_high < 0.8
    assert m.seeds["tasks"] == [VALIDATION_SEED_BASE, 3] and m.seeds["perturbation_variant"] == 2
    prompt = tokenizer.decode(engine.prompts[0])
    assert "LOOKUP" in prompt.upper() and any(w.isupper() and "_" in w for w in prompt.split())
    assert (tmp_path / "val" / "store.sqlite").exists()
    with TrajectoryStore(tmp_path / "val") as store:
        stored = list(store.iter_trajectories())
    assert sorted(t.metadata["task_seed"] for t in stored) == task_seeds("validation", 3)
    assert {t.difficulty for t in stored} == set(cfg.difficulty) and {t.metadata["split"] for t in stored} == {"validation"}
