"""`forgerl mtp add` (train/mtp_build.py): the cropped rows and random pieces compute exactly what
whole rows do, agreement against a direct count, and the command end to end on tiny-random — main
weights unchanged bit for bit, the MTP loss going down, the record written."""

from __future__ import annotations

import hashlib
import json
import random

import pytest
import torch

from forgerl.chat import get_format
from forgerl.cli.main import run_cli
from forgerl.model.loading import load_policy
from forgerl.model.mtp import MTP_FILENAME, MTPShape, attach_mtp, get_mtp
from forgerl.train.mtp_build import MTPBuild, conversations_for, heads_agreement, heads_rows, pad_rows, segment
from forgerl.train.sft import encode_within, save_policy


@pytest.fixture(scope="module")
def setup(tokenizer):
    torch.set_num_threads(1)
    model, _ = load_policy("tiny-random")
    attach_mtp(model, MTPShape(2, 1, 8), seed=2)
    convs = conversations_for(MTPBuild(examples=3, difficulty=(1, 2)), range(3))
    encoded = encode_within(tokenizer, get_format("minimax_m2"), convs)
    return model, encoded


def _outputs(model, ids, positions, valid, hidden):
    return get_mtp(model)(hidden, ids, model.model.embed_tokens, positions=positions, valid=valid)


def test_cropped_rows_and_pieces_compute_what_whole_rows_do(setup) -> None:
    """Every target a cropped row (heads_rows) or a random piece of one (segment) counts gets the
    head input the whole uncropped sequence gives it (within 1e-5)."""
    model, encoded = setup
    heads = get_mtp(model)
    reach = heads.reach
    rows = heads_rows(model, encoded, reach)
    rng = random.Random(0)
    with torch.no_grad():
        for (ids, _), row in zip(encoded, rows):
            full_ids = torch.tensor([ids])
            full = _outputs(model, full_ids, None, None, model.model(input_ids=full_ids).last_hidden_state)
            assert row.start > 0  # the conversations' prompts are longer than the reach: a real crop
            for piece in (row, segment(row, 20, reach, rng)):
                p_ids, p_mask, p_valid, p_pos, p_hidden = pad_rows([piece])
                outs = _outputs(model, p_ids, p_pos, p_valid, p_hidden)
                counted = 0
                for k, out in enumerate(outs, start=1):
                    for i in range(len(piece.ids) - k - 1):
                        if piece.mask[i + k + 1]:
                            at = piece.start + i
                            assert torch.allclose(out[0, i], full[k - 1][0, at], atol=1e-5), (k, at)
                            counted += 1
                assert counted > 0


def test_agreement_matches_a_direct_count(setup) -> None:
    model, encoded = setup
    heads = get_mtp(model)
    rows = heads_rows(model, encoded, len(heads.depths) * heads.window)
    agreement = heads_agreement(model, rows, batch_size=2)
    with torch.no_grad():
        for k in (1, 2):
            hits = total = 0
            for row in rows:
                ids, _, valid, pos, hidden = pad_rows([row])
                out = _outputs(model, ids, pos, valid, hidden)[k - 1][0]
                for i in range(len(row.ids) - k - 1):
                    if row.mask[i + k + 1]:
                        draft = int(model.lm_head(out[i]).argmax())
                        main = int(model.lm_head(row.hidden[i + k]).argmax())
                        hits += draft == main
                        total += 1
            assert agreement[k - 1] == pytest.approx(hits / total, abs=1e-9)


def test_mtp_add_command_keeps_the_main_model_and_lowers_the_loss(tmp_path) -> None:
    """On a saved tiny-random policy: model.safetensors is copied byte for byte, the loaded main
    weights equal the source's, the heads load, and the depth-1 loss fell from its first step."""
    model, tokenizer = load_policy("tiny-random")
    source = save_policy(model, tokenizer, tmp_path / "src", {"made_by": "test"})
    out = tmp_path / "out"
    status = run_cli(["mtp", "add", "--model", str(source), "--out", str(out), "--steps", "12", "--expand-steps", "3",
                      "--examples", "4", "--heldout", "2", "--window", "8", "--chunk", "64", "--batch-size", "4",
                      "--lr", "5e-3", "--difficulty", "1", "--threads", "1"])
    assert status == 0

    def sha(path):
        return hashlib.sha256(path.read_bytes()).hexdigest()

    assert sha(out / "model.safetensors") == sha(source / "model.safetensors")
    loaded, _ = load_policy(str(out))
    assert get_mtp(loaded).shape == MTPShape(3, 1, 8)
    base = model.state_dict()
    for name, tensor in loaded.state_dict().items():
        if not name.startswith("mtp."):
            assert torch.equal(tensor, base[name]), name
    record = json.loads((out / "forgerl.json").read_text())
    assert record["made_by"] == "test"  # the source's record is kept
    mtp = record["mtp"]
    assert mtp["made_by"] == "forgerl mtp add" and mtp["command"].startswith("forgerl mtp add")
    assert len(mtp["agreement"]) == 3 and all(0.0 <= a <= 1.0 for a in mtp["agreement"])
    assert mtp["final_losses"][0] < mtp["first_losses"][0]
    assert (out / MTP_FILENAME).is_file()


def test_mtp_add_rejects_bad_options(tmp_path, capsys) -> None:
    status = run_cli(["mtp", "add", "--model", "tiny-random", "--out", str(tmp_path / "x"), "--modules", "3",
                      "--expand-to", "2"])
    assert status == 2 and "--expand-to" in capsys.readouterr().err
