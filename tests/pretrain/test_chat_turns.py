"""Plain reading turns for SFT (pretrain/chat_turns.py, issue 20)."""

from __future__ import annotations

import json

from forgerl.chat import get_format
from forgerl.pretrain.chat_turns import reading_task, reading_turns
from forgerl.pretrain.synthetic import problems
from forgerl.probes.items import coined_items, digit_items, kv_items
from forgerl.train.sft import Conversation, encode_conversation, run_sft


def test_each_turn_asks_back_a_fact_that_is_in_the_turn_and_trains_only_the_reply(tokenizer):
    fmt = get_format("minimax_m2")
    turns = reading_turns(40, seed=3)
    assert reading_turns(40, seed=3) == turns  # deterministic
    conversations = [Conversation(t, [], f"r{i}") for i, t in enumerate(turns)]
    assert [reading_task(3, i).kind for i in range(5)] == ["copy", "digits", "lookup", "mention", "name"]
    for conv in conversations:
        user, reply = conv.messages
        assert user.role == "user" and reply.role == "assistant" and not conv.tools
        assert reply.content in user.content and reply.content.strip() == reply.content != ""
        ids, mask = encode_conversation(tokenizer, fmt, conv)
        trained = tokenizer.decode([t for t, m in zip(ids, mask, strict=True) if m])
        assert reply.content in trained and user.content.splitlines()[0] not in trained
    assert all(not problems(reading_task(3, i)) for i in range(40))


def test_the_probes_questions_are_not_among_the_training_turns():
    prompts = {turn[0].content for turn in reading_turns(400, seed=0)}
    probes = [*coined_items(20), *digit_items(20), *kv_items(20)]
    assert not prompts & {p.prompt for p in probes}
    assert not any("Reply with the" in p or "called?" in p for p in prompts)  # the probes' phrasing is theirs alone


def test_run_sft_adds_reading_turns(tmp_path):
    out = run_sft(str(tmp_path / "p"), examples=0, reading=reading_turns(6), steps=1, batch_size=2, mtp_weight=0.0)
    sources = [json.loads(line) for line in (out / "sft_examples.jsonl").read_text().splitlines()]
    assert [s["source"] for s in sources] == ["reading"] * 6
    assert json.loads((out / "forgerl.json").read_text())["data"]["reading_turns"] == 6
