"""Plain reading turns for SFT: the pre-training corpus's reading tasks asked in chat (issue 20).

Why: a policy pre-trained to copy from its context (`forgerl pretrain`, the `repeat` and `synthetic`
sources) and then fine-tuned only on tool episodes learns the episodes' tool syntax but not to
answer a plain question from what it was just told: the probes ask exactly that, in one user turn,
and the first SFT from the reading base answered none of them (docs/reading.md). So beside the tool
episodes, SFT can train on single chat turns made from the same generator as the pre-training's
synthetic documents (pretrain/synthetic.py: copy a string, look a key up, repeat a name defined
earlier, write a long number again): the user turn holds the fact and the question, the assistant
turn a short thought and the answer. The tasks are drawn from string seeds `sft-reading:<seed>:<i>`,
a stream apart from the pre-training documents' integer seeds and from the probes' (which start at
PROBE_SEED_BASE), and the probes' own phrasings are never used here. `forgerl sft --reading-examples N`
passes them to `run_sft(reading=...)` (this package sits above forgerl.train, so it hands over
messages rather than being imported by it).
"""

from __future__ import annotations

import random

from forgerl.pretrain.synthetic import MAKERS, ReadingTask, problems
from forgerl.types import Message

THOUGHTS = {
    "copy": "The text to copy is written above; I write it again exactly.",
    "lookup": "I find the key in the list above and read its value.",
    "name": "The name was defined above; I write it exactly as it was spelt.",
    "digits": "I copy the number digit by digit.",
    "mention": "The question asks for a name given above; I find it and write it exactly.",
}


def reading_task(seed: int, index: int) -> ReadingTask:
    """Reading task `index` of SFT seed `seed` (kinds in turn; a task its checker rejects is redrawn)."""
    rng = random.Random(f"sft-reading:{seed}:{index}")
    kinds = sorted(MAKERS)
    while True:
        task = MAKERS[kinds[index % len(kinds)]](rng)
        if not problems(task):
            return task


def reading_turn(task: ReadingTask) -> list[Message]:
    """The task as one user turn (the context, then the cue as the question) and the answer."""
    question = f"{task.context.rstrip()}\n{task.cue.strip()}"
    return [Message(role="user", content=question), Message(role="assistant", reasoning=THOUGHTS[task.kind], content=task.answer)]


def reading_turns(n: int, seed: int = 0) -> list[list[Message]]:
    """`n` reading turns (the four kinds in equal shares)."""
    return [reading_turn(reading_task(seed, i)) for i in range(n)]
