"""The settings of one pre-training run, stored as `pretrain.json` in its directory so `--resume`
can refuse to continue a run under different settings (that would not be the same run)."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, model_validator

DEFAULT_MIX = {"code": 0.3, "synthetic": 0.4, "episodes": 0.3}
"""The first guess, kept as the default until the whole chain is validated: on its own it never got
past the copying plateau; the measured two-stage recipe (a `repeat`-heavy first stage at 4 x 128
tokens per step, then a mixed one) is in docs/reading.md."""


class PretrainConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", use_attribute_docstrings=True, frozen=True)

    steps: int = Field(ge=1)
    """Optimizer steps; each trains on batch_size x seq_len tokens."""
    seq_len: int = Field(512, ge=16)
    """Tokens per packed row (documents run on across rows)."""
    batch_size: int = Field(8, ge=1)
    """Rows per step."""
    lr: float = Field(2e-3, gt=0)
    """Peak AdamW learning rate (train/schedule.py: linear warm-up, cosine decay to 0)."""
    warmup: int = Field(100, ge=1)
    """Warm-up steps."""
    seed: int = Field(0, ge=0)
    """Seeds the initial weights (tiny-random), the code chunks' order and the synthetic and episode documents."""
    init: str = "tiny-random"
    """Model to start from: `tiny-random` (the embedded architecture, random weights), `tiny-random-digits`
    (the same on the digit-group tokenizer) or a model directory."""
    chat_format: str = "minimax_m2"
    """The format whose markers the tokenizer must hold; episodes without a drawn format render in it."""
    mix: dict[str, float] = Field(default_factory=lambda: dict(DEFAULT_MIX))
    """Source -> share of the tokens (normalised, positive)."""
    checkpoint_every: int = Field(100, ge=1)
    """Write a resumable checkpoint every this many steps (and at the end)."""
    keep_checkpoints: int = Field(2, ge=1)
    """Checkpoints kept (the newest); older ones are deleted after each write."""
    reading_check: int = Field(64, ge=0)
    """Synthetic tasks no training document uses, scored at each checkpoint (pretrain/reading.py); 0 = off."""
    moe_bias_step: float = Field(1e-3, ge=0)
    """Step of the MoE selection-bias sign rule after each optimizer step (model/moe.py), as in RL."""

    @model_validator(mode="after")
    def _mix_is_normalised(self) -> PretrainConfig:
        if not self.mix or any(w <= 0 for w in self.mix.values()) or abs(sum(self.mix.values()) - 1) > 1e-9:
            raise ValueError(f"mix {self.mix} must give positive shares that sum to 1 (corpus.parse_mix makes them)")
        return self

    @property
    def tokens_per_step(self) -> int:
        return self.batch_size * self.seq_len
