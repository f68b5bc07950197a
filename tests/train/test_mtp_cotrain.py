"""MTP co-training in the RL step (train/mtp_cotrain.py): the KL equals a direct per-position
computation over whole rows (tree and padded paths, abs 1e-5), the main model's update is the same
with or without heads (1e-6), the heads learn the policy, the config is checked, metrics appear."""

from __future__ import annotations

import copy
import random
from types import SimpleNamespace

import pytest
import torch
from pydantic import ValidationError

from forgerl.batching import build_tree_batch
from forgerl.batching.forward import tree_token_logprobs_and_hidden
from forgerl.errors import ConfigError
from forgerl.model.logprobs import collate, token_logprobs_and_hidden
from forgerl.model.lora import add_lora
from forgerl.model.moe import ExpertLoadTracker
from forgerl.model.mtp import MTPShape, attach_mtp, get_mtp, topk_kl
from forgerl.testing import build_micro_moe
from forgerl.train.config import MTPConfig, TrainConfig
from forgerl.train.mtp_cotrain import SpecMeter, cotrain_heads, draft_kl, micro_batch_rows, plan_crops
from forgerl.train.step import optimize
from forgerl.types import TrainingSample

WINDOW = 4  # small, so the crops really are crops of the rows (reach 2 * 3 + 3 = 9 positions)


@pytest.fixture(autouse=True)
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def with_heads(depths: int = 2, seed: int = 0) -> torch.nn.Module:
    model = build_micro_moe(seed=seed)
    attach_mtp(model, MTPShape(depths, 1, WINDOW), seed=1)
    return model


def samples(seed: int = 0) -> list[TrainingSample]:
    """Two groups of chains sharing their prompt, each with two trainable completions separated by
    an observation long enough that the spans' crops do not merge, and one that does merge."""
    rng = random.Random(seed)
    out = []
    for group in range(2):
        prompt = [rng.randrange(1, 300) for _ in range(7)]
        for _ in range(2):
            ids, mask = list(prompt), [0] * len(prompt)
            for completion, observation in ((5, 14), (3, 2), (4, 0)):
                ids += [rng.randrange(1, 300) for _ in range(completion + observation)]
                mask += [1] * completion + [0] * observation
            adv = 1.0 if len(out) % 2 == 0 else -1.0
            out.append(TrainingSample(input_ids=ids, loss_mask=mask, old_logprobs=[-5.0] * len(ids),
                                      advantages=[adv] * len(ids), trajectory_id=f"g{group}-{len(out)}", calls=[],
                                      policy_versions=[]))
    return out


def reference_kl(model, rows: list[TrainingSample], top_k: int) -> list[float]:
    """Per depth, the mean over the rows' trainable tokens t (with i = t - k - 1 >= 0) of
    topk_kl(policy at t - 1, depth k at i), every row run whole and alone."""
    heads, lm_head = get_mtp(model), model.lm_head
    per_depth: list[list[float]] = [[] for _ in heads.depths]
    with torch.no_grad():
        for s in rows:
            ids = torch.tensor([s.input_ids])
            h0 = model.model(input_ids=ids).last_hidden_state
            outs = heads(h0, ids, model.model.embed_tokens)
            for k, out in enumerate(outs, start=1):
                for t, m in enumerate(s.loss_mask):
                    if m and t > 0 and t - k - 1 >= 0:
                        policy = torch.log_softmax(lm_head(h0[0, t - 1]).double(), -1)[None]
                        draft = torch.log_softmax(lm_head(out[0, t - k - 1]).double(), -1)[None]
                        per_depth[k - 1].append(float(topk_kl(policy, draft, top_k)))
    return [sum(v) / len(v) for v in per_depth]


@pytest.mark.parametrize("path", ["tree", "padded"])
def test_draft_kl_equals_a_direct_per_position_computation(path: str) -> None:
    model = with_heads()
    rows = samples()
    config = MTPConfig(top_k=5, weight=0.5)
    with torch.no_grad():
        if path == "tree":
            mb = build_tree_batch(rows, token_budget=10**6).micro_batches[0]
            assert mb.length < sum(len(s.input_ids) for s in rows)  # the prompts are shared
            _, _, hidden = tree_token_logprobs_and_hidden(model, mb, mode="dense")
        else:
            mb = collate(rows, "cpu")
            _, _, hidden = token_logprobs_and_hidden(model, mb)
        ordered = list(mb.samples)
        kl = draft_kl(model, get_mtp(model), *micro_batch_rows(mb, hidden), config)
    expected = reference_kl(model, ordered, top_k=5)
    assert kl.per_depth == pytest.approx(expected, abs=1e-5)
    assert float(kl.loss) == pytest.approx(0.5 * sum(expected) / 2, abs=1e-5)
    assert kl.positions == sum(sum(s.loss_mask[1:]) for s in rows)


def test_crops_cover_the_window_reach_and_the_cap_keeps_spread_whole_spans() -> None:
    mask = torch.zeros(2, 60)
    mask[0, 30:40] = 1
    mask[0, 43:45] = 1  # close enough to merge with the first span's crop
    mask[1, 50:60] = 1
    plan = plan_crops(mask, depths=2, window=4, max_positions=1000)
    reach = 2 * 4 + 1  # dependency_reach(2 depths, window 4), written out: the formula under test
    assert list(zip(plan.sample, plan.start, plan.length)) == [(0, 30 - reach, 45 - (30 - reach)), (1, 50 - reach, reach + 10)]
    assert plan.positions == 22 and len(plan.pairs[1]) == 22
    capped = plan_crops(mask, depths=2, window=4, max_positions=11)
    kept = sorted({(b, t + 1) for (_, _, b, t) in capped.pairs[0]})
    assert kept == [(0, t) for t in range(30, 40)] + [(1, 50)]  # whole spans, spread: the first and the last


def fake_run(model, config: TrainConfig):
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=config.optim.lr,
                                  betas=config.optim.betas, eps=config.optim.adam_eps)
    return SimpleNamespace(config=config, policy=model, optimizer=optimizer, tracker=ExpertLoadTracker(model),
                           tokenizer=SimpleNamespace(pad_token_id=0), compute_dtype=torch.float32)


def main_state(model) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.state_dict().items() if not k.startswith("mtp.")}


@pytest.mark.parametrize("batch_mode", ["tree", "chain"])
def test_the_main_models_update_does_not_depend_on_the_heads(batch_mode: str) -> None:
    """Same seed, same samples, 3 steps with a binding gradient clip and the MoE bias update on:
    no heads, heads co-trained, heads attached but not co-trained. The main weights and selection
    biases agree (1e-6); co-trained heads move, the others do not."""
    base = build_micro_moe()
    rows = samples(1)
    cfg = {"optim": {"lr": 1e-2, "grad_clip": 0.01, "micro_batch_tokens": 64}, "moe_bias_step": 1e-2, "batch_mode": batch_mode}
    results = {}
    for arm, cotrain in (("none", None), ("cotrain", True), ("frozen", False)):
        model = copy.deepcopy(base)
        if arm != "none":
            attach_mtp(model, MTPShape(2, 1, WINDOW), seed=1)
        heads_before = copy.deepcopy(get_mtp(model).state_dict()) if arm != "none" else {}
        config = TrainConfig(mtp={"cotrain": cotrain}, **cfg)
        run = fake_run(model, config)
        metrics = [optimize(run, rows) for _ in range(3)]
        results[arm] = (main_state(model), heads_before, get_mtp(model), metrics)
    reference = results["none"][0]
    for arm in ("cotrain", "frozen"):
        state, heads_before, heads, metrics = results[arm]
        assert state.keys() == reference.keys()
        for name, value in reference.items():
            assert torch.equal(state[name], value), (arm, name)  # bit-identical (1e-6 asked)
        assert metrics[-1]["train/grad_norm"] == pytest.approx(results["none"][3][-1]["train/grad_norm"], abs=1e-6)
        moved = max(float((heads.state_dict()[k] - v).abs().max()) for k, v in heads_before.items())
        assert (moved > 1e-4) if arm == "cotrain" else moved == 0.0, (arm, moved)
    assert any("e_score_correction_bias" in k and float(v.abs().max()) > 0 for k, v in reference.items())
    for name in ("moe/max_over_mean_load", "moe/mean_max_over_mean_load"):
        assert results["none"][3][-1][name] == results["cotrain"][3][-1][name] == results["frozen"][3][-1][name]
    _, heads_before, heads, _ = results["cotrain"]
    biases = [k for k in heads_before if "e_score_correction_bias" in k]
    assert biases and all(torch.equal(heads.state_dict()[k], heads_before[k]) for k in biases)  # never counted
    cotrained = results["cotrain"][3]
    assert {"mtp/draft_kl", "mtp/draft_kl_depth1", "mtp/draft_kl_depth2", "mtp/grad_norm"} <= cotrained[0].keys()
    assert not any(k.startswith("mtp/") for k in results["frozen"][3][0])


def test_co_training_moves_the_drafts_toward_the_policy() -> None:
    """The main model frozen (a fixed target): 20 steps on fixed samples lower the KL steadily (the
    micro model's drafts cannot match it closely: from 2.95 to about 2.3 here)."""
    model = with_heads()
    for name, p in model.named_parameters():
        p.requires_grad_(name.startswith("mtp."))
    run = fake_run(model, TrainConfig(optim={"lr": 3e-2, "grad_clip": 0.0}))
    rows = samples(2)
    kls = [optimize(run, rows)["mtp/draft_kl"] for _ in range(20)]
    assert kls[-1] < 0.85 * kls[0], kls
    assert all(later < kls[0] for later in kls[1:]), kls


def test_config_is_checked(caplog) -> None:
    plain = build_micro_moe()
    assert cotrain_heads(plain, MTPConfig()) is None  # default: off without heads
    with pytest.raises(ConfigError, match="forgerl mtp add"):
        cotrain_heads(plain, MTPConfig(cotrain=True))
    model = with_heads()
    assert cotrain_heads(model, MTPConfig()) is get_mtp(model)
    assert cotrain_heads(model, MTPConfig(cotrain=False)) is None
    with caplog.at_level("WARNING", logger="forgerl.train.mtp_cotrain"):
        assert cotrain_heads(model, MTPConfig(), sharded=True) is None
        assert cotrain_heads(model, MTPConfig(), sharded=True) is None
    assert [r.getMessage() for r in caplog.records if "co-training is off" in r.getMessage()] == [
        "MTP co-training is off: sharded training (--nproc-per-node > 1) does not co-train MTP heads yet: set "
        "[mtp] cotrain = false (the heads then keep their weights) or train in one process"]  # said once, not every step
    with pytest.raises(ConfigError, match="sharded"):
        cotrain_heads(model, MTPConfig(cotrain=True), sharded=True)
    lora = add_lora(with_heads(), rank=2, alpha=4, targets=["q_proj"])
    assert cotrain_heads(lora, MTPConfig()) is None
    with pytest.raises(ConfigError, match="LoRA"):
        cotrain_heads(lora, MTPConfig(cotrain=True))
    with pytest.raises(ValidationError, match="LoRA"):
        TrainConfig(mtp={"cotrain": True}, lora={"rank": 8})
    for bad in ({"top_k": 0}, {"weight": 0.0}, {"max_positions": 0}, {"cotrain": "yes"}):
        with pytest.raises(ValidationError):
            MTPConfig(**bad)


def test_spec_meter_reports_per_step_deltas_of_the_engines_counters() -> None:
    engine = SimpleNamespace(stats={"generated_tokens": 0, "spec": {"proposed": [10, 8], "accepted": [9, 4],
                                                                    "row_forwards": 5, "tokens": 15}})
    meter = SpecMeter(engine)
    engine.stats["spec"] = {"proposed": [30, 20], "accepted": [24, 8], "row_forwards": 15, "tokens": 40}
    assert meter.step(engine) == pytest.approx({"mtp/accept_depth1": 0.75, "mtp/accept_depth2": 4 / 12,
                                                "mtp/tokens_per_forward": 2.5})
    assert meter.step(engine) == {}  # nothing happened since: no rate to report
    assert SpecMeter(SimpleNamespace(stats={"generated_tokens": 3})).step(SimpleNamespace(stats={})) == {}
    assert SpecMeter(object()).step(object()) == {}
