"""Multi-token prediction (MTP) modules, as in DeepSeek-V3 and MiniMax-M2 (M2_NOTES; issue 23).

Module k (k = 1..K) predicts the token k+1 places ahead. At position i it takes the previous
depth's hidden state h^{k-1}_i (h^0 = the main model's last hidden state) and the embedding of
token x_{i+k}, normalises both (RMSNorm each), concatenates them, projects 2H -> H and runs one
transformer block (`mtp_transformer_layers`, the main model's own decoder-layer class); its output
h^k_i goes on to module k+1, and through a final RMSNorm and the main model's LM head (shared, as
is the embedding) gives the distribution of x_{i+k+1}.

One departure, chosen for the engine: the block's attention is causal over a **window** of the last
`mtp_window` positions (default 32) instead of the whole context. A module then needs no KV cache of
its own: the engine keeps the main model's hidden states per slot and recomputes each module over
the window every draft round, so drafts never depend on what earlier rounds drafted (and rejected).
Training uses the same window, so what the modules learn is what the engine runs. Drafts are only
proposals: the main model verifies every token, so the window can cost acceptance, never
correctness.

The modules hang off the causal LM as `model.mtp` (an `MTPHeads`), so the optimizer, FSDP, LoRA's
merged export and weight pushes to the built-in engine see them like any other weights. On disk
they live beside the model in `mtp.safetensors` (MTP_FILENAME), with `num_mtp_modules`,
`mtp_transformer_layers` and `mtp_window` in config.json; a checkpoint without them loads with MTP
off, and loaders that know nothing of MTP (transformers, vLLM) never see the extra weights.
"""

from __future__ import annotations

import contextlib
import copy
import logging
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from forgerl.errors import ConfigError
from forgerl.model.logprobs import head_logits
from forgerl.model.lora import causal_lm

log = logging.getLogger(__name__)

MTP_ATTRIBUTE = "mtp"
MTP_PREFIX = "mtp."
MTP_FILENAME = "mtp.safetensors"
DEFAULT_WINDOW = 32


@dataclass(frozen=True)
class MTPShape:
    modules: int
    layers: int = 1
    window: int = DEFAULT_WINDOW

    def __post_init__(self) -> None:
        if self.modules < 1 or self.layers < 1 or self.window < 1:
            raise ValueError(f"MTP needs modules, layers and window >= 1; got {self}")


def mtp_shape(config: Any) -> MTPShape | None:
    """The MTP shape a model config declares, or None when it has no MTP modules."""
    modules = int(getattr(config, "num_mtp_modules", 0) or 0)
    if modules <= 0:
        return None
    return MTPShape(modules, int(getattr(config, "mtp_transformer_layers", 1) or 1),
                    int(getattr(config, "mtp_window", DEFAULT_WINDOW) or DEFAULT_WINDOW))


def dependency_reach(depths: int, window: int) -> int:
    """How many positions before a target token the heads' predictions of it read: depth k predicts
    token t from position t - k - 1, and each depth's windowed attention reads window - 1 positions
    further back than the one before, so the deepest reads back to t - (depths * window + 1).
    Cropping a row to start that far before its first target changes no prediction (training,
    co-training and SFT crop by it)."""
    return depths * window + 1


def _lm(model: nn.Module) -> nn.Module:
    return causal_lm(model)


def get_mtp(model: nn.Module) -> MTPHeads | None:
    """The MTP heads attached to `model` (a causal LM, or a peft wrapper around one), or None."""
    heads = getattr(_lm(model), MTP_ATTRIBUTE, None)
    return heads if isinstance(heads, MTPHeads) else None


class MTPModule(nn.Module):
    """One depth: [RMSNorm(h^{k-1}); RMSNorm(emb(x_{i+k}))] -> Linear(2H, H) -> block(s) -> h^k.
    `norm` is applied before the shared LM head (`head_input`), not to what goes to depth k+1."""

    def __init__(self, config: Any, norm_cls: type[nn.Module], layer_cls: type[nn.Module], layers: int) -> None:
        super().__init__()
        hidden, eps = config.hidden_size, getattr(config, "rms_norm_eps", 1e-6)
        self.enorm = norm_cls(hidden, eps=eps)
        self.hnorm = norm_cls(hidden, eps=eps)
        self.eh_proj = nn.Linear(2 * hidden, hidden, bias=False)
        self.layers = nn.ModuleList([layer_cls(config, layer_idx=i) for i in range(layers)])
        self.norm = norm_cls(hidden, eps=eps)

    def forward(self, previous: torch.Tensor, next_embeds: torch.Tensor,
                position_embeddings: tuple[torch.Tensor, torch.Tensor], mask: torch.Tensor) -> torch.Tensor:
        x = self.eh_proj(torch.cat([self.hnorm(previous), self.enorm(next_embeds)], dim=-1))
        for layer in self.layers:
            out = layer(x, position_embeddings=position_embeddings, attention_mask=mask)
            x = out[0] if isinstance(out, tuple) else out
        return x


class MTPHeads(nn.Module):
    """K MTP modules sharing the main model's embedding and LM head (passed in, never owned)."""

    def __init__(self, lm: nn.Module, shape: MTPShape) -> None:
        super().__init__()
        decoder = lm.base_model
        config = lm.config
        self.window = shape.window
        norm_cls, layer_cls = type(decoder.norm), type(decoder.layers[0])
        self.depths = nn.ModuleList([MTPModule(config, norm_cls, layer_cls, shape.layers) for _ in range(shape.modules)])
        self.rotary = type(decoder.rotary_emb)(config=config)
        self.layers_per_module = shape.layers

    @property
    def reach(self) -> int:
        """dependency_reach of these heads."""
        return dependency_reach(len(self.depths), self.window)

    @property
    def shape(self) -> MTPShape:
        return MTPShape(len(self.depths), self.layers_per_module, self.window)

    def position_embeddings(self, like: torch.Tensor, positions: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.rotary(like, position_ids=positions)

    def depth(self, k: int, previous: torch.Tensor, next_embeds: torch.Tensor,
              position_embeddings: tuple[torch.Tensor, torch.Tensor], mask: torch.Tensor) -> torch.Tensor:
        """h^k [B, L, H] of depth k (1-based) from h^{k-1} and the embeddings of x_{i+k}."""
        return self.depths[k - 1](previous, next_embeds, position_embeddings, mask)

    def head_input(self, k: int, hidden: torch.Tensor) -> torch.Tensor:
        """What the shared LM head reads for depth k: the module's final RMSNorm of h^k."""
        return self.depths[k - 1].norm(hidden)

    def forward(self, hidden0: torch.Tensor, input_ids: torch.Tensor, embed: nn.Module,
                positions: torch.Tensor | None = None, valid: torch.Tensor | None = None) -> list[torch.Tensor]:
        """Teacher-forced outputs of every depth over whole rows (training).

        hidden0 [B, L, H]: the main model's last hidden states; input_ids [B, L]; positions [B, L]
        (default 0..L-1); valid [B, L] (default all): padding is never attended. Returns, for
        k = 1..K, head inputs [B, L, H] whose position i predicts token i+k+1 (positions with
        i+k+1 >= L have no target and hold whatever the padding gave)."""
        rows, length = input_ids.shape
        if positions is None:
            positions = torch.arange(length, device=input_ids.device).expand(rows, length)
        if valid is None:
            valid = torch.ones_like(input_ids, dtype=torch.bool)
        mask = window_mask(valid, self.window, hidden0.dtype)
        pos_emb = self.position_embeddings(hidden0, positions)
        outputs, previous = [], hidden0
        for k in range(1, len(self.depths) + 1):
            shifted = torch.nn.functional.pad(input_ids[:, k:], (0, k), value=0)
            previous = self.depth(k, previous, embed(shifted), pos_emb, mask)
            outputs.append(self.head_input(k, previous))
        return outputs


def window_mask(valid: torch.Tensor, window: int, dtype: torch.dtype) -> torch.Tensor:
    """Additive attention mask [B, 1, L, L]: query i sees key j when i - window < j <= i and j is
    valid. A query that sees nothing (an invalid position at the start) sees itself, so softmax
    stays finite; its output is never used."""
    length = valid.shape[1]
    i = torch.arange(length, device=valid.device)
    allowed = (i[None, :] <= i[:, None]) & (i[None, :] > i[:, None] - window)  # [L, L]
    allowed = allowed[None] & valid[:, None, :]
    allowed = allowed | torch.eye(length, dtype=torch.bool, device=valid.device)[None]
    mask = torch.zeros(allowed.shape, dtype=dtype, device=valid.device)
    mask.masked_fill_(~allowed, torch.finfo(dtype).min)
    return mask[:, None]


def attach_mtp(model: nn.Module, shape: MTPShape, *, seed: int = 0) -> MTPHeads:
    """Create fresh MTP heads on `model` (initialised like the model's own layers) and record the
    shape in its config so checkpoints save and load it."""
    lm = _lm(model)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        heads = MTPHeads(lm, shape)
        init = getattr(lm, "_init_weights", None)
        if callable(init):
            heads.apply(init)
    param = next(lm.parameters())
    heads.to(device=param.device, dtype=param.dtype)
    setattr(lm, MTP_ATTRIBUTE, heads)
    _record_shape(lm.config, shape)
    return heads


def expand_mtp(model: nn.Module, modules: int) -> MTPHeads:
    """Grow the heads to `modules` depths by copying the last one's weights (M2: one module in
    pre-training, expanded to three by copying)."""
    heads = get_mtp(model)
    if heads is None:
        raise ValueError("the model has no MTP modules to expand; attach them first (attach_mtp)")
    if modules < len(heads.depths):
        raise ValueError(f"cannot shrink MTP from {len(heads.depths)} to {modules} modules")
    while len(heads.depths) < modules:
        heads.depths.append(copy.deepcopy(heads.depths[-1]))
    _record_shape(_lm(model).config, heads.shape)
    return heads


def remove_mtp(model: nn.Module) -> None:
    lm = _lm(model)
    if get_mtp(lm) is not None:
        delattr(lm, MTP_ATTRIBUTE)
    lm.config.num_mtp_modules = 0


def _record_shape(config: Any, shape: MTPShape) -> None:
    config.num_mtp_modules = shape.modules
    config.mtp_transformer_layers = shape.layers
    config.mtp_window = shape.window


def split_state(state: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """(main model tensors, MTP tensors with the `mtp.` prefix stripped)."""
    main = {k: v for k, v in state.items() if not k.startswith(MTP_PREFIX)}
    mtp = {k[len(MTP_PREFIX):]: v for k, v in state.items() if k.startswith(MTP_PREFIX)}
    return main, mtp


def mtp_logprobs(head: nn.Module, head_inputs: torch.Tensor, fp32: bool = True) -> torch.Tensor:
    """log_softmax of the shared LM head over MTP head inputs [..., H] -> [..., V] (FP32)."""
    shape = head_inputs.shape[:-1]
    logits = head_logits(head, head_inputs.reshape(-1, head_inputs.shape[-1]), fp32)
    return torch.log_softmax(logits, dim=-1).reshape(*shape, -1)


def mtp_cross_entropy(head: nn.Module, outputs: list[torch.Tensor], input_ids: torch.Tensor,
                      target_mask: torch.Tensor) -> tuple[torch.Tensor, list[float]]:
    """Pre-training/SFT MTP loss: mean over depths of the mean cross-entropy of depth k's
    prediction at i for token i+k+1, counted where `target_mask[i+k+1]` is set. Returns (loss,
    per-depth loss values). The caller weights it (M2: 0.3, then 0.1 in the decay phase)."""
    losses, values = [], []
    for k, hidden in enumerate(outputs, start=1):
        shift = k + 1
        if input_ids.shape[1] <= shift:
            continue
        targets = input_ids[:, shift:]
        weight = target_mask[:, shift:].float()
        logp = mtp_logprobs(head, hidden[:, :-shift])
        nll = -logp.gather(-1, targets.unsqueeze(-1)).squeeze(-1)
        loss = (nll * weight).sum() / weight.sum().clamp(min=1.0)
        losses.append(loss)
        values.append(float(loss.detach()))
    if not losses:
        return outputs[0].sum() * 0.0, []
    return torch.stack(losses).mean(), values


def topk_kl(policy_logp: torch.Tensor, draft_logp: torch.Tensor, top_k: int) -> torch.Tensor:
    """KL(p_K || q) per row, where p_K is the policy's distribution restricted to its top-K tokens
    and renormalised (detached), and q the draft's full distribution evaluated at those tokens.
    policy_logp, draft_logp: [N, V] log-probabilities. Returns [N]."""
    top_logp, top_index = policy_logp.detach().topk(min(top_k, policy_logp.shape[-1]), dim=-1)
    p = torch.softmax(top_logp, dim=-1)
    log_p = torch.log_softmax(top_logp, dim=-1)
    log_q = draft_logp.gather(-1, top_index)
    return (p * (log_p - log_q)).sum(-1)


# -- on disk: mtp.safetensors beside the Hugging Face weights -----------------------------------


@contextlib.contextmanager
def detached_mtp(model: nn.Module) -> Iterator[MTPHeads | None]:
    """The model without its MTP heads for the duration (config untouched), so Hugging Face
    `save_pretrained`, safetensors' `save_model`/`load_model` and vLLM see only the main weights;
    the heads are put back afterwards, whatever happened inside."""
    lm = _lm(model)
    heads = get_mtp(lm)
    if heads is not None:
        delattr(lm, MTP_ATTRIBUTE)
    try:
        yield heads
    finally:
        if heads is not None:
            setattr(lm, MTP_ATTRIBUTE, heads)


def without_mtp(state: dict[str, Any]) -> dict[str, Any]:
    """A state dict minus its `mtp.*` entries: what an engine that knows nothing of MTP loads."""
    return split_state(state)[0]


def save_mtp(model: nn.Module, directory: str | Path) -> Path | None:
    """Write the heads to `directory/mtp.safetensors` (names without the `mtp.` prefix); None, and
    any stale file removed, when the model has none. config.json (written by the caller's
    save_pretrained) carries the shape, recorded by attach_mtp/expand_mtp."""
    from safetensors.torch import save_file

    path = Path(directory) / MTP_FILENAME
    heads = get_mtp(model)
    if heads is None:
        path.unlink(missing_ok=True)
        return None
    state = {name: tensor.detach().contiguous() for name, tensor in heads.state_dict().items()}
    save_file(state, str(path), metadata={"format": "pt"})
    return path


def load_mtp(model: nn.Module, directory: str | Path) -> MTPHeads | None:
    """Attach and load the heads config.json declares from `directory/mtp.safetensors`.

    No MTP in the config: nothing happens (None). MTP in the config but no file (a checkpoint
    whose heads were stripped, e.g. copied without mtp.safetensors): a warning, and the model
    loads with MTP off (num_mtp_modules reset to 0). A file whose names or shapes do not match the
    declared shape is a ConfigError naming it."""
    from safetensors.torch import load_file

    lm = _lm(model)
    shape = mtp_shape(lm.config)
    if shape is None:
        return None
    path = Path(directory) / MTP_FILENAME
    if not path.is_file():
        log.warning("%s declares %d MTP module(s) but has no %s: loading with MTP off (speculative decoding "
                    "and MTP co-training unavailable; rebuild the heads with `forgerl mtp add`)",
                    Path(directory) / "config.json", shape.modules, MTP_FILENAME)
        remove_mtp(lm)
        return None
    heads = attach_mtp(lm, shape)
    try:
        state = load_file(str(path), device=str(next(lm.parameters()).device))
        heads.load_state_dict({k: v.to(next(heads.parameters()).dtype) if v.is_floating_point() else v
                               for k, v in state.items()}, strict=True)
    except Exception as exc:  # noqa: BLE001 — safetensors header errors and load_state_dict mismatches alike
        remove_mtp(lm)
        text = " ".join(str(exc).split())
        raise ConfigError(f"{path} does not hold the {shape.modules} MTP module(s) x {shape.layers} layer(s) "
                          f"config.json declares: {type(exc).__name__}: {text[:300]}",
                          hint="rebuild the heads with `forgerl mtp add`, or delete the file and set "
                               "num_mtp_modules to 0 in config.json") from None
    return heads
