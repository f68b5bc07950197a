"""A sharded optimizer step (FSDP2, 2 ranks over gloo, 1 thread each) equals the one-process step:
parameters within 1e-5 (fp32) after two steps, for a dense tiny Llama, with LoRA, and for the tiny
M2 MoE (its selection bias after the bias update too), on uneven samples that give the two ranks
different micro-batch counts (the shorter rank runs zero-weight micro-batches). Also: the sharded
training state (DCP) of the 2-rank run resumes in one process (resharded 2 -> 1)."""

from __future__ import annotations

import copy
import os
import random
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

from forgerl.errors import ConfigError
from forgerl.model.lora import add_lora, inference_weights
from forgerl.model.moe import ExpertLoadTracker
from forgerl.testing import build_micro_moe
from forgerl.train.config import TrainConfig
from forgerl.train.sharded import Sharding, check_world, load_training_state, share
from forgerl.train.step import _micro_batches, optimize
from forgerl.types import TrainingSample

WORKER = Path(__file__).with_name("distributed_worker.py")
LENGTHS = [90, 12, 14, 9, 16, 11, 13, 10, 15]  # one long sample on rank 0, many short ones on rank 1
TOLERANCE = 1e-5


def train_config(variant: str) -> TrainConfig:
    # adam_eps 1e-6, not forgerl's 1e-15: with 1e-15 Adam's first step is lr * sign(g), so a
    # gradient element of ~1e-10 (rounding noise of a sum taken in another order) moves a weight
    # by the full lr; the gradients themselves agree to ~1e-8 (what this test is about)
    return TrainConfig(optim={"micro_batch_tokens": 32, "lr": 1e-3, "adam_eps": 1e-6}, batch_mode="chain" if variant == "lora" else "tree",
                       moe_bias_step=0.01 if variant == "moe" else 0.0,
                       lora={"rank": 4, "targets": ["q_proj", "v_proj"]} if variant == "lora" else {})


def build_model(variant: str, config: TrainConfig) -> torch.nn.Module:
    """The variant's tiny model, identical for a seed (LoRA's random A matrices included)."""
    if variant == "moe":
        return build_micro_moe().train()
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    model = LlamaForCausalLM(LlamaConfig(vocab_size=300, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                                         num_attention_heads=4, num_key_value_heads=2, tie_word_embeddings=False))
    if variant == "lora":
        model = add_lora(model, config.lora.rank, config.lora.alpha, config.lora.targets)
    return model.train()


def samples_for(variant: str, step: int) -> list[TrainingSample]:
    """Fixed, uneven samples; recorded logprobs near but not at the model's (an off-policy batch)."""
    rng = random.Random(step * 7 + len(variant))
    out = []
    for i, n in enumerate(LENGTHS):
        mask = [0] * 4 + [1] * (n - 4)
        out.append(TrainingSample(input_ids=[rng.randrange(1, 300) for _ in range(n)], loss_mask=mask,
                                  old_logprobs=[-5.5 - rng.random() if m else 0.0 for m in mask],
                                  advantages=[(1.0 if i % 2 else -1.0) if m else 0.0 for m in mask],
                                  trajectory_id=f"t{i}", calls=[0], policy_versions=[0]))
    return out


def fake_run(model: torch.nn.Module, config: TrainConfig) -> SimpleNamespace:
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=config.optim.lr,
                                  betas=config.optim.betas, eps=config.optim.adam_eps)
    return SimpleNamespace(config=config, policy=model, optimizer=optimizer, tracker=ExpertLoadTracker(model),
                           tokenizer=SimpleNamespace(pad_token_id=0), compute_dtype=torch.float32)


@pytest.fixture(scope="module")
def ranks(tmp_path_factory) -> Path:
    """The two ranks' results for every case below, from one launch (tests/train/distributed_worker.py)."""
    out = tmp_path_factory.mktemp("ranks")
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": os.pathsep.join(sys.path)}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2", "--max-restarts", "0",
           "--standalone", str(WORKER), str(out)]
    proc = subprocess.run(cmd, cwd=out, env=env, capture_output=True, text=True, timeout=240)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-5000:]
    return out


def one_process(variant: str) -> tuple[torch.nn.Module, SimpleNamespace, list[dict[str, float]]]:
    config = train_config(variant)
    model = build_model(variant, config)
    run = fake_run(model, config)
    metrics = [optimize(run, samples_for(variant, step)) for step in range(2)]
    return model, run, metrics


def test_the_split_is_token_balanced_and_gives_uneven_micro_batch_counts():
    samples = samples_for("dense", 0)
    parts = [share(samples, Sharding(rank, 2, rank, torch.device("cpu"))) for rank in range(2)]
    assert sorted(s.trajectory_id for p in parts for s in p) == sorted(s.trajectory_id for s in samples)
    tokens = [sum(len(s.input_ids) for s in p) for p in parts]
    assert abs(tokens[0] - tokens[1]) <= max(LENGTHS)
    for variant in ("dense", "lora"):
        cfg = train_config(variant)
        counts = [len(_micro_batches(p, cfg, torch.device("cpu"), 0, {})) for p in parts]
        assert counts[0] != counts[1], counts  # the shorter rank must pad with zero-weight micro-batches


def test_a_prompts_samples_stay_on_one_rank():
    """A group's rollouts share their prompt: split apart, its prefix tree (and the MoE loads of
    the shared prompt) would be counted on two ranks."""
    base = samples_for("dense", 0)
    group = [s.model_copy(update={"input_ids": [7, 7, 7, 7] + s.input_ids[4:], "trajectory_id": f"g{i}"})
             for i, s in enumerate(base[1:5])]
    samples = [base[0], *group, *base[5:]]
    parts = [{s.trajectory_id for s in share(samples, Sharding(rank, 2, rank, torch.device("cpu")))} for rank in range(2)]
    assert any({"g0", "g1", "g2", "g3"} <= part for part in parts)
    assert parts[0].isdisjoint(parts[1]) and len(parts[0] | parts[1]) == len(samples)


@pytest.mark.parametrize("variant", ["dense", "lora", "moe"])
def test_sharded_step_equals_the_one_process_step(ranks, variant):
    saved = torch.load(ranks / f"{variant}.pt", weights_only=True)
    sharded = saved["weights"]
    reference, _, reference_metrics = one_process(variant)
    expected = inference_weights(reference)
    for got, want in zip(saved["metrics"], reference_metrics):  # the whole batch's metrics, gathered to rank 0
        for name in ("train/loss", "train/entropy", "train/grad_norm", "mismatch/mean_abs_logprob", "mismatch/prob_corr",
                     "loss/clip_frac_high", "loss/is_ratio_mean", "batch/sample_tokens", "train/tokens"):
            assert abs(got[name] - want[name]) < 1e-5, (name, got[name], want[name])
    assert sharded.keys() == expected.keys()
    initial = inference_weights(build_model(variant, train_config(variant)))
    moved = 0.0
    for name, tensor in expected.items():
        assert torch.allclose(sharded[name], tensor, atol=TOLERANCE, rtol=0), (name, (sharded[name] - tensor).abs().max())
        moved = max(moved, float((tensor - initial[name]).abs().max()))
    assert moved > 5e-4  # the steps changed the weights (the comparison is not between two untouched models)
    if variant == "moe":
        biases = [n for n in expected if n.endswith("e_score_correction_bias")]
        assert biases and all(not torch.equal(expected[n], initial[n]) for n in biases)  # both layers updated


def test_an_abandoned_step_changes_no_rank(ranks):
    """Rank 0 abandons the step before the optimizer (a second Ctrl-C): it tells the other ranks,
    so none steps its shard and the next collective still meets."""
    saved = torch.load(ranks / "abandon.pt", weights_only=True)
    for name, tensor in saved["before"].items():
        assert torch.equal(saved["after"][name], tensor), name


def test_a_two_rank_training_state_resumes_in_one_process(ranks):
    """DCP reshards: the 2-rank model and optimizer state loads into one process, whose next step
    equals the uninterrupted one-process run's third step."""
    config = train_config("dense")
    resumed = build_model("dense", config)
    run = fake_run(resumed, config)
    load_training_state(ranks / "dcp", resumed, run.optimizer)
    reference, reference_run, _ = one_process("dense")
    for r in (run, reference_run):
        optimize(r, samples_for("dense", 2))
    for (name, a), b in zip(resumed.state_dict().items(), reference.state_dict().values()):
        assert torch.allclose(a, b, atol=TOLERANCE, rtol=0), name
    assert not torch.equal(copy.deepcopy(resumed.state_dict())["lm_head.weight"],
                           build_model("dense", config).state_dict()["lm_head.weight"])


def test_a_world_the_device_cannot_serve_is_a_config_error():
    with pytest.raises(ConfigError, match="runs on CPU .gloo. or CUDA .NCCL., not on mps"):
        check_world("mps", 2)
    if torch.cuda.device_count() < 8:
        with pytest.raises(ConfigError, match=f"8 ranks per node need 8 GPUs, but this node has {torch.cuda.device_count()}"):
            check_world("cuda", 8)
    check_world("cpu", 2)  # gloo: any number of ranks


def test_several_nodes_without_a_rendezvous_endpoint_is_refused(tmp_path, capsys):
    from forgerl.cli.main import run_cli

    code = run_cli(["train", "--model", "tiny-random", "--env", "arithmetic", "--run-dir", str(tmp_path / "run"),
                    "--nproc-per-node", "2", "--nnodes", "2"])
    err = capsys.readouterr().err
    assert code == 2 and "--nnodes 2 needs --rdzv-endpoint HOST:PORT" in err and "hint:" in err
    assert not (tmp_path / "run").exists()


def test_train_help_documents_the_launch_flags():
    from typer.testing import CliRunner

    from forgerl.cli.main import app

    out = CliRunner().invoke(app, ["train", "--help"], env={"COLUMNS": "200"}).output
    for flag in ("--nproc-per-node", "--nnodes", "--node-rank", "--rdzv-endpoint", "docs/scaling.md"):
        assert flag in out, flag


def test_expert_loads_do_not_depend_on_how_the_batch_is_packed():
    """Loads count each sample's tokens as if it ran alone (a shared tree prefix once per sample,
    padding never): one tree, many small trees and padded chains give the same counts, which is
    what lets a sharded run update the MoE bias exactly as one process does."""
    base = samples_for("moe", 0)
    shared = [s.model_copy(update={"input_ids": [5] * 6 + s.input_ids[6:]}) for s in base[1:5]]  # one prompt, four samples
    samples = [base[0], *shared, *base[5:]]
    counts = []
    for mode, budget in (("tree", 10_000), ("tree", 32), ("chain", 32), ("chain", 10_000)):
        cfg = TrainConfig(optim={"micro_batch_tokens": budget}, batch_mode=mode, moe_bias_step=0.0)
        run = fake_run(build_model("moe", cfg), cfg)
        optimize(run, samples)
        counts.append({name: c.clone() for name, c in run.tracker.counts.items()})
    k = build_micro_moe().config.num_experts_per_tok
    for name, c in counts[0].items():
        assert int(c.sum()) == k * sum(len(s.input_ids) for s in samples)  # every token of every sample, k slots
        for other in counts[1:]:
            assert torch.equal(other[name], c), (name, other[name], c)
