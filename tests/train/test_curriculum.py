"""Mixed-domain curriculum (issue 24, part 1): the `[[curriculum.stages]]` config and its errors,
the groups each step gets (ratios, stage switching, resume), per-domain metrics and evaluation,
and a config without a curriculum drawing exactly what it drew before."""

from __future__ import annotations

import asyncio
import collections
import itertools
from pathlib import Path
from types import SimpleNamespace

import pytest

from forgerl.errors import ConfigError
from forgerl.rollout.curriculum import (
    CurriculumConfig,
    check_curriculum,
    domain_metrics,
    eval_specs,
    stage_families,
)
from forgerl.rollout.source import group_specs
from forgerl.rollout.tasks import training_seed
from forgerl.train.config import dump_config, load_config
from forgerl.types import Trajectory

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "configs" / "curriculum.toml"

TWO_STAGES = {"stages": [
    {"steps": 2, "domains": {"tool-reasoning": {"weight": 0.7, "difficulty": [1]},
                             "arithmetic": {"weight": 0.3}}},
    {"steps": 3, "name": "agentic", "domains": {"tool-reasoning": {"weight": 0.4, "difficulty": "2-3"},
                                                "cowork": {"weight": 0.6, "difficulty": [1, 2], "max_context": 1024}}},
]}


def config(**overrides):
    return load_config(None, **{"steps": 6, "groups_per_step": 5, "curriculum": TWO_STAGES, **overrides})


def take(iterator, n):
    return list(itertools.islice(iterator, n))


# -- the config and its errors -----------------------------------------------------------------
def test_a_curriculum_loads_with_ranges_expanded_and_survives_the_run_directorys_config_toml(tmp_path):
    cfg = config()
    assert cfg.curriculum.stages[1].domains["tool-reasoning"].difficulty == [2, 3]
    assert cfg.curriculum.families() == ["tool-reasoning", "arithmetic", "cowork"]
    (tmp_path / "config.toml").write_text(dump_config(cfg))
    again = load_config(tmp_path / "config.toml")  # what `forgerl train --resume` reads
    assert again.curriculum == cfg.curriculum
    assert take(group_specs(again), 40) == take(group_specs(cfg), 40)


@pytest.mark.parametrize(("domain", "message"), [
    ({"weight": 0}, "greater than 0"),
    ({"weight": -1.0}, "greater than 0"),
    ({"weight": 1, "difficulty": "3-1"}, "empty"),
    ({"weight": 1, "difficulty": "hard"}, "neither a list of levels nor a range"),
    ({"weight": 1, "difficulty": []}, "at least 1"),
    ({"weight": 1, "max_context": 4096}, "exceeds the run's max_context"),
    ({"weight": 1, "max_context": 100}, "max_tokens (128) must be smaller than its max_context (100)"),
    ({"weight": 1, "temperature": 0.5}, "curriculum.stages.0.domains.arithmetic.temperature"),
])
def test_bad_domains_are_refused_saying_where_and_what(domain, message):
    with pytest.raises(ConfigError) as err:
        load_config(None, curriculum={"stages": [{"steps": 1, "domains": {"arithmetic": domain}}]})
    assert message in str(err.value), str(err.value)


def test_a_stage_without_domains_or_steps_is_refused():
    with pytest.raises(ConfigError, match="domains"):
        load_config(None, curriculum={"stages": [{"steps": 1, "domains": {}}]})
    with pytest.raises(ConfigError, match="steps"):
        load_config(None, curriculum={"stages": [{"domains": {"arithmetic": {"weight": 1}}}]})
    with pytest.raises(ConfigError, match="stages"):
        load_config(None, curriculum={"stages": []})


def test_unknown_families_and_levels_are_refused_listing_what_exists():
    unknown = CurriculumConfig.model_validate({"stages": [{"steps": 1, "domains": {"arithmetc": {"weight": 1}}}]})
    with pytest.raises(ConfigError) as err:
        check_curriculum(unknown)
    assert "curriculum.stages[0].domains.arithmetc" in str(err.value)
    assert "registered families:" in str(err.value) and "arithmetic" in str(err.value)
    too_hard = CurriculumConfig.model_validate({"stages": [{"steps": 1, "domains": {"arithmetic": {"weight": 1,
                                                                                                   "difficulty": [2]}}}]})
    with pytest.raises(ConfigError, match=r"family 'arithmetic' has no difficulty 2; its difficulties are \[1\]"):
        check_curriculum(too_hard)
    check_curriculum(config().curriculum)  # the good one passes


def test_the_gateway_source_refuses_a_curriculum():
    from forgerl.gateway.train import GatewaySource

    source = GatewaySource.__new__(GatewaySource)
    with pytest.raises(ConfigError, match="curriculum"):
        source.check(config())


# -- which groups a step gets ----------------------------------------------------------------------
@pytest.mark.parametrize("weights", [(0.7, 0.3), (1, 1, 1), (5, 2, 1), (0.45, 0.55)])
def test_each_domains_share_is_exact_within_one_group_over_every_prefix(weights):
    stage = CurriculumConfig.model_validate({"stages": [{"steps": 1, "domains": {
        f"d{i}": {"weight": w} for i, w in enumerate(weights)}}]}).stages[0]
    slots = stage_families(stage, 400)
    total = sum(weights)
    counts: collections.Counter[str] = collections.Counter()
    for n, family in enumerate(slots, start=1):
        counts[family] += 1
        for i, w in enumerate(weights):
            assert abs(counts[f"d{i}"] - n * w / total) < 1.0, (n, counts)


def test_every_step_mixes_its_stages_domains_and_switches_stage_at_the_boundary():
    cfg = config()  # stage 1: steps 0-1, stage 2: steps 2.. (the last runs to the end)
    specs = take(group_specs(cfg), cfg.steps * cfg.groups_per_step)
    by_step = collections.defaultdict(list)
    for spec in specs:
        by_step[spec["k"] // cfg.groups_per_step].append(spec)
    for step, groups in by_step.items():
        stage = 0 if step < 2 else 1
        assert {g["stage"] for g in groups} == {stage}
        families = collections.Counter(g["family"] for g in groups)
        want = {"tool-reasoning", "arithmetic"} if stage == 0 else {"tool-reasoning", "cowork"}
        assert set(families) == want, (step, families)  # every batch samples all domains of its stage
    first = collections.Counter(s["family"] for s in specs if s["stage"] == 0)
    assert first == {"tool-reasoning": 7, "arithmetic": 3}  # 10 slots at 0.7 / 0.3
    second = collections.Counter(s["family"] for s in specs if s["stage"] == 1)
    assert second == {"tool-reasoning": 8, "cowork": 12}  # 20 slots (steps 2-5: past its 3 steps) at 0.4 / 0.6
    for spec in specs:  # seeds are the run's, levels the domain's, limits the domain's
        step, group = divmod(spec["k"], cfg.groups_per_step)
        assert spec["seed"] == training_seed(cfg.seed, step, group)
        if spec["family"] == "cowork":
            assert spec["difficulty"] in (1, 2) and spec["max_context"] == 1024
        elif spec["stage"] == 1:
            assert spec["difficulty"] in (2, 3) and spec["max_context"] is None
        else:
            assert spec["difficulty"] == 1


def test_the_stream_is_reproducible_and_seed_dependent():
    assert take(group_specs(config()), 50) == take(group_specs(config()), 50)
    other = take(group_specs(config(seed=1)), 50)
    assert [s["seed"] for s in other] != [s["seed"] for s in take(group_specs(config()), 50)]
    assert [s["family"] for s in other] == [s["family"] for s in take(group_specs(config()), 50)]  # by weight


def test_a_resume_in_the_middle_of_a_stage_continues_the_same_task_stream():
    """The scheduler restored from its ledger skips the specs it had submitted and goes on from
    there: with the curriculum's stream (a function of k) the resumed run gets exactly the tasks
    the uninterrupted one gets — here from step 3, the middle of stage 2."""
    from forgerl.rollout.ledger import LedgerState
    from forgerl.rollout.scheduler import RolloutScheduler, SchedulerConfig

    cfg = config()
    g = cfg.groups_per_step

    async def produce(spec):
        return [Trajectory(family=spec["family"])]

    async def collect(ledger, batches):
        scheduler = RolloutScheduler(produce, group_specs(cfg), SchedulerConfig(mode="sync", batch_size=g),
                                     current_version=lambda: 0, ledger=ledger)
        return [[(s["k"], s["family"], s["seed"], s["difficulty"]) for s in b.specs]
                async for b in scheduler.batches(max_batches=batches)]

    whole = asyncio.run(collect(None, 6))
    resumed_at = 3
    ledger = SimpleNamespace(load=lambda: LedgerState(next_index=resumed_at * g), record_submitted=lambda *a: None,
                             record_finished=lambda *a: None, record_consumed=lambda *a: None)
    resumed = asyncio.run(collect(ledger, 6 - resumed_at))
    assert resumed == whole[resumed_at:]
    assert {k for batch in resumed for k, *_ in batch} == set(range(resumed_at * g, 6 * g))


def test_without_a_curriculum_the_task_stream_is_what_it_always_was():
    cfg = load_config(None, env="arithmetic", difficulty=[1], groups_per_step=3)
    assert cfg.curriculum is None and "curriculum" not in dump_config(cfg)
    specs = take(group_specs(cfg), 12)
    assert specs == [{"k": k, "seed": training_seed(0, k // 3, k % 3), "difficulty": 1} for k in range(12)]


# -- metrics and held-out evaluation --------------------------------------------------------------
def test_domain_metrics_report_each_familys_groups_reward_and_pass_rate():
    cfg = config()
    trajs = [Trajectory(family="tool-reasoning", reward=1.0), Trajectory(family="tool-reasoning", reward=0.0),
             Trajectory(family="arithmetic", reward=0.5)]
    specs = [{"family": "tool-reasoning"}, {"family": "arithmetic"}]
    out = domain_metrics(cfg.curriculum, 1, trajs, specs)
    assert out["curriculum/stage"] == 1.0
    assert out["domain/tool-reasoning/reward"] == 0.5 and out["domain/arithmetic/reward"] == 0.5
    assert out["domain/tool-reasoning/groups"] == 1.0
    assert out["domain/tool-reasoning/pass_rate"] == 0.5 and out["domain/arithmetic/pass_rate"] == 0.0
    assert "domain/cowork/reward" not in out
    assert domain_metrics(cfg.curriculum, 2, [], [])["curriculum/stage"] == 2.0


def test_held_out_tasks_split_over_every_family_at_its_target_levels():
    specs = eval_specs(config().curriculum, 9)
    assert [s["family"] for s in specs] == ["tool-reasoning", "arithmetic", "cowork"] * 3
    assert [s["difficulty"] for s in specs if s["family"] == "tool-reasoning"] == [2, 3, 2]  # its last stage's
    assert {s["max_context"] for s in specs if s["family"] == "cowork"} == {1024}
    assert [s["difficulty"] for s in specs if s["family"] == "arithmetic"] == [1, 1, 1]


def test_the_example_config_loads_and_names_registered_families():
    cfg = load_config(EXAMPLE)
    assert cfg.curriculum is not None and len(cfg.curriculum.stages) == 2
    check_curriculum(cfg.curriculum)
    assert sum(s.steps for s in cfg.curriculum.stages) == cfg.steps


# -- the report ------------------------------------------------------------------------------------
def _report_of(tmp_path, rows):
    from forgerl.store import TrajectoryStore
    from forgerl.train.report import write_report

    with TrajectoryStore(tmp_path) as store:
        run_id = store.add_run({})
        for step, values in rows.items():
            store.log_metrics(run_id, step, values)
    return write_report(tmp_path).read_text()


def test_the_report_of_a_curriculum_run_has_per_domain_columns_and_stage_boundaries(tmp_path):
    rows = {0: {"eval/reward": 0.2, "eval/arithmetic": 0.1, "eval/cowork": 0.3}}
    for step in range(1, 5):
        rows[step] = {"rollout/reward": 0.5, "curriculum/stage": 1.0 if step <= 2 else 2.0,
                      "domain/arithmetic/reward": 0.25 * step, "domain/arithmetic/groups": 1.0}
    report = _report_of(tmp_path, rows)
    assert "## Per domain (curriculum)" in report
    assert "stages: stage 1 from step 1, stage 2 from step 3" in report
    assert "| step | stage | arithmetic reward | arithmetic groups | eval arithmetic | eval cowork |" in report
    assert "| 3 | 2 | 0.75 | 1 |  |  |" in report
    assert "| 0 |  |  |  | 0.1 | 0.3 |" in report


def test_the_report_of_a_run_without_a_curriculum_is_unchanged(tmp_path):
    report = _report_of(tmp_path, {0: {"eval/reward": 0.2}, 1: {"rollout/reward": 0.5, "eval/reward": 0.3}})
    assert "Per domain" not in report and "domains.png" not in report
    assert report.splitlines()[4:8] == ["| step | rollout/reward | eval/reward |", "|---|---|---|",
                                        "| 0 |  | 0.2 |", "| 1 | 0.5 | 0.3 |"]


# -- the adaptive rule -----------------------------------------------------------------------------
ADAPTIVE = {"stages": [{"steps": 10, "domains": {"tool-reasoning": {"weight": 1, "difficulty": [3, 1, 2]},
                                                 "arithmetic": {"weight": 1}}}],
            "adaptive": {"window": 2, "raise_above": 0.75, "lower_below": 0.25}}


def test_adaptive_thresholds_must_be_ordered():
    with pytest.raises(ConfigError, match=r"lower_below \(0.5\) must be smaller than raise_above \(0.5\)"):
        load_config(None, curriculum={**ADAPTIVE, "adaptive": {"raise_above": 0.5, "lower_below": 0.5}})


def test_a_domain_moves_up_after_window_steps_above_and_down_after_window_steps_below():
    from forgerl.rollout.curriculum import AdaptiveLevels

    levels = AdaptiveLevels(load_config(None, curriculum=ADAPTIVE).curriculum)
    assert levels.level(0, "tool-reasoning") == 1  # the lowest listed level first
    assert levels.observe(0, {"tool-reasoning": 0.9}) == {}  # one step is not a window
    assert levels.observe(1, {"tool-reasoning": 0.8, "arithmetic": 1.0}) == {"tool-reasoning": 1}
    assert levels.level(0, "tool-reasoning") == 2 and levels.level(0, "arithmetic") == 1  # arithmetic: one level
    assert levels.observe(2, {"tool-reasoning": 0.9}) == {}  # the window restarts after a change
    assert levels.observe(3, {"tool-reasoning": 0.5}) == {}  # not above in *each* step of the window
    assert levels.observe(4, {"tool-reasoning": 0.9}) == {}
    assert levels.observe(5, {"tool-reasoning": 1.0}) == {"tool-reasoning": 1}
    assert levels.level(0, "tool-reasoning") == 3
    levels.observe(6, {"tool-reasoning": 1.0})
    assert levels.observe(7, {"tool-reasoning": 1.0}) == {}  # the top level stays
    levels.observe(8, {"tool-reasoning": 0.0})
    assert levels.observe(9, {"tool-reasoning": 0.1}) == {"tool-reasoning": -1}
    assert levels.metrics(9, {"tool-reasoning": -1}) == {"curriculum/tool-reasoning/difficulty": 2.0,
                                                          "curriculum/arithmetic/difficulty": 1.0,
                                                          "curriculum/tool-reasoning/difficulty_change": -1.0}


def test_specs_drawn_after_a_change_use_the_new_level_and_a_replay_rebuilds_the_state():
    from forgerl.rollout.curriculum import AdaptiveLevels

    cfg = load_config(None, groups_per_step=2, curriculum=ADAPTIVE)
    levels = AdaptiveLevels(cfg.curriculum)
    stream = group_specs(cfg, adaptive=levels)
    before = take(stream, 4)
    assert {s["difficulty"] for s in before if s["family"] == "tool-reasoning"} == {1}
    history = {0: {"tool-reasoning": 1.0}, 1: {"tool-reasoning": 1.0, "arithmetic": 0.0}}
    for step, rates in history.items():
        levels.observe(step, rates)
    after = take(stream, 4)
    assert {s["difficulty"] for s in after if s["family"] == "tool-reasoning"} == {2}
    rebuilt = AdaptiveLevels(cfg.curriculum)
    rebuilt.replay(history)
    assert (rebuilt.position, rebuilt.seen) == (levels.position, levels.seen)


def test_a_resume_reads_the_rules_history_from_the_stores_metrics(tmp_path):
    from forgerl.rollout.source import logged_pass_rates
    from forgerl.store import TrajectoryStore

    with TrajectoryStore(tmp_path) as store:
        run_id = store.add_run({})
        store.log_metrics(run_id, 0, {"eval/reward": 0.0})
        for step, rate in ((1, 0.9), (2, 0.8), (3, 0.1)):
            store.log_metrics(run_id, step, {"domain/tool-reasoning/pass_rate": rate, "domain/arithmetic/pass_rate": 0.5})
        run = SimpleNamespace(store=store, run_id=run_id, step=2)  # resumed from the checkpoint of step 2
        assert logged_pass_rates(run, ["tool-reasoning", "arithmetic", "cowork"]) == {
            0: {"tool-reasoning": 0.9, "arithmetic": 0.5}, 1: {"tool-reasoning": 0.8, "arithmetic": 0.5}}


# -- end to end: a real (tiny) run interrupted in the middle of a stage ------------------------------
# 6-20 s on 2 cores (3 + 3 + 1 steps of a tiny model): in the default suite, as the "done when" asks for it
def test_a_run_crashed_in_the_middle_of_a_stage_resumes_with_the_tasks_of_an_uninterrupted_one(tmp_path, monkeypatch):
    import forgerl.train.loop as loop
    from forgerl.store import TrajectoryStore
    from forgerl.training import run_training

    stages = {"stages": [{"steps": 1, "domains": {"arithmetic": {"weight": 1}}},
                         {"steps": 2, "domains": {"arithmetic": {"weight": 1}, "parallel-lookup": {"weight": 2}}}]}
    settings = dict(model="tiny-random", groups_per_step=3, group_size=2, max_turns=2, max_tokens=12, max_context=1024,
                    eval={"every": 10, "tasks": 2}, checkpoint_every=2, steps=3, curriculum=stages)

    def tasks(run_dir):
        with TrajectoryStore(run_dir) as store:
            rows = store.query(run_id=store.runs()[-1].id, consumed=True)
        return sorted((t.rollout_step, t.metadata["task_index"], t.family, t.difficulty, tuple(t.calls[0].prompt_ids))
                      for t in rows)

    run_training(load_config(None, **settings, run_dir=str(tmp_path / "whole")))
    real, calls = loop.optimize, [0]

    def crash_in_step_3(run, samples):
        calls[0] += 1
        if calls[0] == 3:  # stage 2's second step; the checkpoint is at step 2
            raise RuntimeError("killed")
        return real(run, samples)

    monkeypatch.setattr(loop, "optimize", crash_in_step_3)
    with pytest.raises(RuntimeError, match="killed"):
        run_training(load_config(None, **settings, run_dir=str(tmp_path / "crashed")))
    monkeypatch.undo()
    run_training(load_config(tmp_path / "crashed" / "config.toml"), resume=True)
    whole = tasks(tmp_path / "whole")
    assert {family for _, _, family, _, _ in whole} == {"arithmetic", "parallel-lookup"}
    assert tasks(tmp_path / "crashed") == whole


def test_a_group_runs_its_domains_family_and_limits(monkeypatch):
    """rollout_group hands the episode runner the spec's family, its context and turn limits and
    its token budget; a spec without a curriculum gets the run's."""
    import forgerl.rollout.source as source

    seen = []

    async def fake_episode(run, task, env, sampling, *, perturbations, group_id, family, limits):
        seen.append((family, task.family, limits.max_total_tokens, limits.max_turns, sampling.max_tokens))
        return [Trajectory(family=family)]

    monkeypatch.setattr(source, "run_episode_for", fake_episode)
    cfg = config()
    run = SimpleNamespace(config=cfg)
    cowork = next(s for s in group_specs(cfg) if s["family"] == "cowork")
    asyncio.run(source.rollout_group(run, {**cowork, "max_turns": 3, "max_tokens": 64}, perturbed=False))
    plain = load_config(None, env="arithmetic", difficulty=[1])
    asyncio.run(source.rollout_group(SimpleNamespace(config=plain), next(group_specs(plain)), perturbed=False))
    group = cfg.group_size
    assert seen == [("cowork", "cowork", 1024, 3, 64)] * group + [("arithmetic", "arithmetic", 2048, 8, 128)] * group


def test_the_windowed_mode_trains_the_curriculums_tasks_and_logs_its_metrics(tmp_path):
    """The curriculum sits behind the scheduler source, so the asynchronous modes get it too: each
    trained rollout is the task (family, level) the stream gave its index; per-domain metrics logged."""
    from forgerl.store import TrajectoryStore
    from forgerl.training import run_training

    stages = {"stages": [{"steps": 1, "domains": {"arithmetic": {"weight": 1}, "parallel-lookup": {"weight": 1}}}]}
    cfg = load_config(None, model="tiny-random", groups_per_step=2, group_size=2, max_turns=2, max_tokens=12,
                      max_context=1024, eval={"every": 10, "tasks": 2}, steps=2, curriculum=stages,
                      rollout={"mode": "windowed"}, run_dir=str(tmp_path / "run"))
    run_training(cfg)
    stream = {s["k"]: s for s in take(group_specs(cfg), 40)}
    with TrajectoryStore(tmp_path / "run") as store:
        run_id = store.runs()[-1].id
        rows = store.query(run_id=run_id, consumed=True)
        names = {name for _, name, _ in store.metrics(run_id)}
    assert len(rows) == 2 * 2 * 2
    for t in rows:
        spec = stream[t.metadata["task_index"]]
        assert (t.family, t.difficulty) == (spec["family"], spec["difficulty"])
    assert {"curriculum/stage", "domain/arithmetic/groups", "eval/arithmetic", "eval/parallel-lookup",
            "domain/arithmetic/eval_pass_rate", "domain/arithmetic/eval_scored"} <= names


def _register_always_passing_family() -> str:
    """Arithmetic tasks every episode passes (so the adaptive rule's thresholds are crossed by a
    tiny random model), with three levels."""
    from forgerl.envs.arithmetic import ArithmeticEnv, sample_task
    from forgerl.envs.base import Family, register_family
    from forgerl.envs.rewards import RewardResult

    name = "test-always-pass"

    class AlwaysEnv(ArithmeticEnv):
        family = name

        def reward(self, trajectory, *, excused_tool_errors=0):
            return RewardResult(score=1.0)

    def task(seed, difficulty=1):
        return sample_task(seed).model_copy(update={"family": name})

    register_family(Family(name=name, make_env=AlwaysEnv, sample_task=task, generate=task, difficulties=(1, 2, 3)))
    return name


def test_the_adaptive_rule_raises_a_passing_domain_step_by_step_and_a_resume_keeps_its_level(tmp_path, monkeypatch):
    import forgerl.train.loop as loop
    from forgerl.store import TrajectoryStore
    from forgerl.training import run_training

    name = _register_always_passing_family()
    settings = dict(model="tiny-random", groups_per_step=1, group_size=2, max_turns=1, max_tokens=8, max_context=512,
                    eval={"every": 10, "tasks": 1}, checkpoint_every=2, steps=4,
                    curriculum={"stages": [{"steps": 4, "domains": {name: {"weight": 1, "difficulty": "1-3"}}}],
                                "adaptive": {"window": 1, "raise_above": 0.5, "lower_below": 0.1}})

    def levels(run_dir):
        with TrajectoryStore(run_dir) as store:
            run_id = store.runs()[-1].id
            trained = sorted({(t.rollout_step, t.difficulty) for t in store.query(run_id=run_id, consumed=True)})
            logged = [(s, v) for s, _, v in store.metrics(run_id, f"curriculum/{name}/difficulty")]
            changes = [(s, v) for s, _, v in store.metrics(run_id, f"curriculum/{name}/difficulty_change")]
        return trained, logged, changes

    run_training(load_config(None, **settings, run_dir=str(tmp_path / "whole")))
    whole = levels(tmp_path / "whole")
    assert whole == ([(0, 1), (1, 2), (2, 3), (3, 3)], [(1, 2.0), (2, 3.0), (3, 3.0), (4, 3.0)], [(1, 1.0), (2, 1.0)])

    real, calls = loop.optimize, [0]

    def crash_in_step_3(run, samples):
        calls[0] += 1
        if calls[0] == 3:
            raise RuntimeError("killed")
        return real(run, samples)

    monkeypatch.setattr(loop, "optimize", crash_in_step_3)
    with pytest.raises(RuntimeError, match="killed"):
        run_training(load_config(None, **settings, run_dir=str(tmp_path / "crashed")))
    monkeypatch.undo()
    # resumed at the checkpoint of step 2: step 3's stored rollouts are offered again, step 4's task
    # is drawn afresh at the level the rule rebuilt from the store (a fresh rule would say 2)
    run_training(load_config(tmp_path / "crashed" / "config.toml"), resume=True)
    assert levels(tmp_path / "crashed") == whole


def test_held_out_evaluation_reports_each_family_and_collect_groups_draws_the_curriculums_step(monkeypatch):
    import forgerl.train.rollouts as rollouts

    rewards = {"tool-reasoning": 1.0, "arithmetic": 0.5, "cowork": 0.0}
    seen = []

    async def fake_episode(run, task, env, sampling, *, perturbations, group_id, family, limits, evaluation=False):
        seen.append((family, limits.max_total_tokens))
        return [Trajectory(family=family, reward=rewards[family])]

    monkeypatch.setattr(rollouts, "run_episode_for", fake_episode)
    cfg = config(eval={"tasks": 6})
    mean, by_family = asyncio.run(rollouts.evaluate_domains(SimpleNamespace(config=cfg, step=0)))
    assert by_family == rewards and mean == pytest.approx(0.5)
    assert ("cowork", 1024) in seen and ("arithmetic", 2048) in seen
    plain = load_config(None, env="arithmetic", difficulty=[1], eval={"tasks": 2})
    assert asyncio.run(rollouts.evaluate_domains(SimpleNamespace(config=plain, step=0))) == (0.5, {})

    seen.clear()
    groups = asyncio.run(rollouts.collect_groups(SimpleNamespace(config=cfg, step=2)))
    stream = take(group_specs(cfg), 3 * cfg.groups_per_step)[2 * cfg.groups_per_step:]
    assert [g[0].family for g in groups] == [s["family"] for s in stream]


def test_held_out_evaluation_logs_each_familys_pass_rate_and_scored_tasks(monkeypatch):
    """eval/<family> is a mean reward (shaped: a correct but slow episode scores below 1); the pass
    rate (the verifier's outcome, as `forgerl eval` counts it) and the number of scored tasks
    behind it are logged too, so an interval can be computed. Infra failures are not scored."""
    import forgerl.train.rollouts as rollouts
    from forgerl.types import TrajectoryStatus

    outcomes = {"tool-reasoning": [(0.9, 1.0), (0.0, 0.0)], "arithmetic": [(1.0, 1.0), "failed"],
                "cowork": [(1.0, 0.0), (0.7, 1.0)]}  # (reward, outcome): a reward model may lift a failure
    counters = collections.Counter()

    async def fake_episode(run, task, env, sampling, *, perturbations, group_id, family, limits, evaluation=False):
        outcome = outcomes[family][counters[family]]
        counters[family] += 1
        if outcome == "failed":
            return [Trajectory(family=family, reward=None, status=TrajectoryStatus.FAILED)]
        return [Trajectory(family=family, reward=outcome[0], reward_breakdown={"outcome": outcome[1]})]

    monkeypatch.setattr(rollouts, "run_episode_for", fake_episode)
    mean, metrics = asyncio.run(rollouts.evaluate_domain_metrics(SimpleNamespace(config=config(eval={"tasks": 6}), step=0)))
    assert metrics["eval/tool-reasoning"] == pytest.approx(0.45)
    assert metrics["domain/tool-reasoning/eval_pass_rate"] == 0.5  # 0.9: solved, slowly
    assert (metrics["domain/arithmetic/eval_pass_rate"], metrics["domain/arithmetic/eval_scored"]) == (1.0, 1.0)
    assert (metrics["domain/cowork/eval_pass_rate"], metrics["domain/cowork/eval_scored"]) == (0.5, 2.0)
    assert mean == pytest.approx((0.9 + 0.0 + 1.0 + 1.0 + 0.7) / 5)
    counters.clear()  # the same evaluation through the older interface: means only
    assert asyncio.run(rollouts.evaluate_domains(SimpleNamespace(config=config(eval={"tasks": 6}), step=0)))[1] == {
        "tool-reasoning": pytest.approx(0.45), "arithmetic": 1.0, "cowork": pytest.approx(0.85)}
