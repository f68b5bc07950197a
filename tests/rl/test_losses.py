"""Every loss against its naive reference (rl_reference.py), values and gradients, plus the edge
cases the trainer relies on. Tolerance: float64 throughout, rtol 1e-10 / atol 1e-12 unless a
test says otherwise (the two sides sum the same terms in different orders)."""

from __future__ import annotations

import math

import pytest
import rl_reference as ref
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from forgerl.rl import LOSSES, BatchCounts, LossInputError, LossOutput, get_loss, group_normalized

TOL = {"rtol": 1e-10, "atol": 1e-12}
NAMES = sorted(LOSSES)
# Wider GSPO ranges exercise both sides of its min(); the defaults are tested too.
HYPER = {
    "cispo": [{}, {"trust_region_mask": True, "eps_low": 0.2}, {"eps_high": 2.0}],
    "ppo": [{}, {"eps_low": 0.1, "eps_high": 0.3}],
    "grpo": [{}],
    "dapo": [{}],
    "gspo": [{}, {"eps_low": 0.05, "eps_high": 0.1}],
}
CASES = [(name, h) for name in NAMES for h in HYPER[name]]


def make_batch(seed: int, B: int = 4, T: int = 6, *, per_token_adv: bool = False, spread: float = 0.5):
    """Random padded batch: ratios both inside and far outside the clip ranges, ragged masks
    with an empty row (when B > 2), one row exactly on-policy (ratio 1, inside every range)."""
    g = torch.Generator().manual_seed(seed)
    old = -3.0 * torch.rand(B, T, generator=g, dtype=torch.float64)
    logp = old + spread * torch.randn(B, T, generator=g, dtype=torch.float64)
    logp[0] = old[0]
    mask = (torch.rand(B, T, generator=g) < 0.75).to(torch.float64)
    mask[0, 0] = 1.0
    if B > 2:
        mask[2] = 0.0
    shape = (B, T) if per_token_adv else (B,)
    adv = torch.randn(*shape, generator=g, dtype=torch.float64)
    return logp.requires_grad_(), old, adv, mask


def hyper_for(name: str, hyper: dict, *, total: BatchCounts | None = None) -> dict:
    kw = dict(hyper)
    if total is not None:
        kw["num_tokens" if name in ("cispo", "dapo") else "num_sequences"] = (
            total.tokens if name in ("cispo", "dapo") else total.sequences
        )
    return kw


@pytest.mark.parametrize("per_token_adv", [False, True])
@pytest.mark.parametrize(("name", "hyper"), CASES)
def test_value_and_gradient_match_reference(name, hyper, per_token_adv):
    for seed in range(3):
        logp, old, adv, mask = make_batch(seed, per_token_adv=per_token_adv)
        got = ref.value_and_grad(get_loss(name), logp, old, adv, mask, **hyper)
        want = ref.value_and_grad(ref.REFERENCES[name], logp, old, adv, mask, **hyper)
        torch.testing.assert_close(got[0], want[0], **TOL)
        torch.testing.assert_close(got[1], want[1], **TOL)
        assert got[1].abs().sum() > 0  # the batch really trains something


@settings(max_examples=40, deadline=None)
@given(
    case=st.sampled_from(CASES),
    B=st.integers(1, 4),
    T=st.integers(1, 5),
    seed=st.integers(0, 2**31 - 1),
    per_token_adv=st.booleans(),
    spread=st.sampled_from([0.0, 0.05, 1.0, 4.0]),
)
def test_matches_reference_on_random_shapes(case, B, T, seed, per_token_adv, spread):
    name, hyper = case
    logp, old, adv, mask = make_batch(seed, B, T, per_token_adv=per_token_adv, spread=spread)
    got = ref.value_and_grad(get_loss(name), logp, old, adv, mask, **hyper)
    want = ref.value_and_grad(ref.REFERENCES[name], logp, old, adv, mask, **hyper)
    torch.testing.assert_close(got[0], want[0], **TOL)
    torch.testing.assert_close(got[1], want[1], **TOL)


@pytest.mark.parametrize("name", NAMES)
def test_micro_batches_accumulate_to_the_full_batch_gradient(name):
    logp, old, adv, mask = make_batch(7, B=7, T=6)
    mask[4, 1:] = 0.0  # rows of very different lengths, so per-micro-batch means would differ
    full_loss, full_grad = ref.value_and_grad(get_loss(name), logp, old, adv, mask)
    total = BatchCounts.of([mask[:1], mask[1:5], mask[5:]])
    assert total == BatchCounts.of(mask)
    loss_sum = torch.zeros((), dtype=torch.float64)
    for rows in (slice(0, 1), slice(1, 5), slice(5, 7)):
        out = get_loss(name)(logp[rows], old[rows], adv[rows], mask[rows], **hyper_for(name, {}, total=total))
        out.loss.backward()
        loss_sum += out.loss.detach()
    torch.testing.assert_close(loss_sum, full_loss, **TOL)
    torch.testing.assert_close(logp.grad, full_grad, **TOL)


def test_micro_batches_without_totals_do_not_match_so_the_totals_matter():
    logp, old, adv, mask = make_batch(7, B=7, T=6)
    mask[4, 1:] = 0.0
    _, full_grad = ref.value_and_grad(get_loss("cispo"), logp, old, adv, mask)
    for rows in (slice(0, 1), slice(1, 5), slice(5, 7)):
        get_loss("cispo")(logp[rows], old[rows], adv[rows], mask[rows]).loss.backward()
    assert not torch.allclose(logp.grad, full_grad)


@pytest.mark.parametrize(("name", "hyper"), CASES)
def test_all_equal_rewards_give_zero_loss_and_zero_gradient(name, hyper):
    logp, old, _, mask = make_batch(3, spread=2.0)
    adv = group_normalized([0.7, 0.7, 0.7, 0.7])
    assert adv.tolist() == [0.0] * 4
    out = get_loss(name)(logp, old, adv, mask, **hyper)
    (grad,) = torch.autograd.grad(out.loss, logp)
    assert out.loss.item() == 0.0
    assert torch.count_nonzero(grad) == 0


# One row, four tokens whose ratios are far outside every clip range:
# (A > 0, r = e^5), (A > 0, r = e^-5), (A < 0, r = e^5), (A < 0, r = e^-5).
FAR_LOG_RATIO = torch.tensor([[5.0, -5.0, 5.0, -5.0]], dtype=torch.float64)
FAR_ADV = torch.tensor([[2.0, 2.0, -3.0, -3.0]], dtype=torch.float64)


def far_outside_grad(name: str, **hyper) -> torch.Tensor:
    old = torch.full((1, 4), -2.0, dtype=torch.float64)
    logp = (old + FAR_LOG_RATIO).requires_grad_()
    out = get_loss(name)(logp, old, FAR_ADV, torch.ones(1, 4), **hyper)
    return torch.autograd.grad(out.loss, logp)[0][0]


def test_cispo_keeps_the_gradient_of_tokens_far_outside_the_clip_range():
    # ŵ = clip(r, 0, 1.28); d(-ŵ·A·logp/N)/dlogp = -ŵ·A/N, for every token.
    r = FAR_LOG_RATIO[0].exp()
    weight = r.clamp(0.0, 1.28)
    torch.testing.assert_close(far_outside_grad("cispo"), -weight * FAR_ADV[0] / 4, **TOL)
    assert torch.count_nonzero(far_outside_grad("cispo")) == 4


def test_cispo_trust_region_mask_drops_exactly_the_ppo_clipped_tokens():
    grad = far_outside_grad("cispo", eps_low=0.2, trust_region_mask=True)
    # dropped: (A > 0, r > 1.28) and (A < 0, r < 0.8); kept with clipped weights 0.8 and 1.28
    expected = torch.tensor([0.0, -0.8 * 2.0 / 4, -1.28 * -3.0 / 4, 0.0], dtype=torch.float64)
    torch.testing.assert_close(grad, expected, **TOL)


def test_cispo_trust_region_mask_with_m2_defaults_never_drops_negative_advantages():
    # ε_low = 1 (no lower bound): only (A > 0, r > 1 + ε_high) can leave the trust region.
    grad = far_outside_grad("cispo", trust_region_mask=True)
    assert grad[0] == 0.0
    assert torch.count_nonzero(grad[1:]) == 3


@pytest.mark.parametrize("name", ["ppo", "dapo"])
def test_ppo_style_losses_zero_the_gradient_outside_the_clip_range(name):
    grad = far_outside_grad(name)
    r = FAR_LOG_RATIO[0].exp()
    # PPO's min() picks the clipped constant for (A > 0, r > 1 + ε) and (A < 0, r < 1 - ε):
    # gradient 0. The other two keep the unclipped r·A, whose gradient is r·A; one row of 4
    # tokens, so PPO's sequence mean and DAPO's token mean both divide by 4.
    expected = torch.stack([r.new_tensor(0.0), -r[1] * 2.0 / 4, -r[2] * -3.0 / 4, r.new_tensor(0.0)])
    torch.testing.assert_close(grad, expected, **TOL)


@pytest.mark.parametrize(("name", "hyper"), CASES)
def test_masked_positions_can_hold_garbage_without_changing_anything(name, hyper):
    logp, old, _, mask = make_batch(5, spread=1.0)
    adv = torch.randn(logp.shape, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    clean = ref.value_and_grad(get_loss(name), logp, old, adv, mask, **hyper)
    off = mask == 0
    dirty_logp = logp.detach().masked_fill(off, float("nan")).requires_grad_()
    dirty_old = old.masked_fill(off, float("-inf"))
    dirty_adv = adv.masked_fill(off, float("inf"))
    dirty = ref.value_and_grad(get_loss(name), dirty_logp, dirty_old, dirty_adv, mask, **hyper)
    torch.testing.assert_close(dirty[0], clean[0], **TOL)
    torch.testing.assert_close(dirty[1], clean[1], **TOL)
    assert torch.count_nonzero(dirty[1][off]) == 0


@pytest.mark.parametrize(("name", "hyper"), CASES)
def test_an_empty_completion_contributes_nothing(name, hyper):
    logp, old, adv, mask = make_batch(11, B=4)
    assert mask[2].sum() == 0  # make_batch's empty row
    keep = [0, 1, 3]
    with_empty = get_loss(name)(logp, old, adv, mask, **hyper)
    without = get_loss(name)(logp[keep], old[keep], adv[keep], mask[keep], **hyper)
    torch.testing.assert_close(with_empty.loss, without.loss, **TOL)
    (grad,) = torch.autograd.grad(with_empty.loss, logp)
    assert torch.count_nonzero(grad[2]) == 0


@pytest.mark.parametrize("shape", [(3, 5), (0, 5), (3, 0)])
@pytest.mark.parametrize(("name", "hyper"), CASES)
def test_a_batch_with_nothing_to_train_gives_zero_loss_and_no_nan(name, hyper, shape):
    logp = torch.full(shape, float("nan"), dtype=torch.float64).requires_grad_()
    out = get_loss(name)(logp, torch.zeros(shape), torch.ones(shape[0]), torch.zeros(shape), **hyper)
    (grad,) = torch.autograd.grad(out.loss, logp)
    assert out.loss.item() == 0.0
    assert torch.count_nonzero(grad) == 0
    assert all(math.isfinite(v) for v in out.metrics.values())


def test_cispo_on_policy_is_reinforce_with_token_level_normalisation():
    logp, _, adv, mask = make_batch(2, per_token_adv=True)
    out = get_loss("cispo")(logp, logp.detach(), adv, mask)
    (grad,) = torch.autograd.grad(out.loss, logp)
    n = mask.sum()
    torch.testing.assert_close(grad, -adv * mask / n, **TOL)
    torch.testing.assert_close(out.loss, -(adv * mask * logp).sum() / n, **TOL)


def test_gspo_uses_one_ratio_per_sequence():
    # Shifting token log-ratios within a row while keeping their mean fixes s_i, so the loss
    # does not move; GSPO's default ranges are tiny, so keep the row inside them.
    old = torch.tensor([[-1.0, -2.0, -0.5]], dtype=torch.float64)
    mask = torch.ones(1, 3)
    a = torch.tensor([1.5], dtype=torch.float64)
    base = get_loss("gspo")(old + 1e-4, old, a, mask).loss
    shuffled = get_loss("gspo")(old + torch.tensor([[3e-4, -1e-4, 1e-4]], dtype=torch.float64), old, a, mask).loss
    torch.testing.assert_close(base, shuffled, **TOL)
    torch.testing.assert_close(base, -(math.exp(1e-4) * 1.5) * torch.ones((), dtype=torch.float64), **TOL)


def test_ppo_kl_term_matches_reference_and_requires_both_arguments():
    logp, old, adv, mask = make_batch(4)
    ref_logp = old - 0.3 * torch.rand(old.shape, dtype=torch.float64, generator=torch.Generator().manual_seed(9))
    got = ref.value_and_grad(get_loss("grpo"), logp, old, adv, mask, kl_coef=0.04, ref_logp=ref_logp)
    want = ref.value_and_grad(ref.ppo, logp, old, adv, mask, kl_coef=0.04, ref_logp=ref_logp)
    torch.testing.assert_close(got[0], want[0], **TOL)
    torch.testing.assert_close(got[1], want[1], **TOL)
    assert get_loss("grpo")(logp, old, adv, mask, kl_coef=0.04, ref_logp=ref_logp).metrics["kl_ref"] > 0
    with pytest.raises(LossInputError, match="kl_coef > 0 and ref_logp"):
        get_loss("grpo")(logp, old, adv, mask, kl_coef=0.04)
    with pytest.raises(LossInputError, match="kl_coef > 0 and ref_logp"):
        get_loss("grpo")(logp, old, adv, mask, ref_logp=ref_logp)


def test_metrics_match_a_loop_over_trainable_tokens():
    logp, old, adv, mask = make_batch(6, spread=1.0)
    entropy = torch.rand(logp.shape, dtype=torch.float64)
    out = get_loss("cispo")(logp, old, adv, mask, eps_low=0.2, trust_region_mask=True, entropy=entropy)
    logp = logp.detach()
    cells = [(b, t) for b in range(logp.shape[0]) for t in range(logp.shape[1]) if mask[b, t]]
    r = {c: math.exp(float(logp[c]) - float(old[c])) for c in cells}
    n = len(cells)
    a = {c: float(adv[c[0]]) for c in cells}
    expect = {
        "is_ratio_mean": sum(r.values()) / n,
        "clip_frac_low": sum(v < 0.8 for v in r.values()) / n,
        "clip_frac_high": sum(v > 1.28 for v in r.values()) / n,
        "approx_kl_k3": sum(v - 1 - math.log(v) for v in r.values()) / n,
        "neg_logp": -sum(float(logp[c]) for c in cells) / n,
        "entropy": sum(float(entropy[c]) for c in cells) / n,
        "trust_region_masked_frac": sum((a[c] > 0 and r[c] > 1.28) or (a[c] < 0 and r[c] < 0.8) for c in cells) / n,
        "tokens": n,
        "sequences": 3,
    }
    for key, value in expect.items():
        assert out.metrics[key] == pytest.approx(value, rel=1e-9), key
    assert 0 < out.metrics["trust_region_masked_frac"] < 1
    assert out.metrics["loss"] == pytest.approx(out.loss.item())


def test_low_precision_inputs_are_computed_in_float32():
    logp, old, adv, mask = make_batch(8)
    low = logp.detach().to(torch.bfloat16).requires_grad_()
    out = get_loss("cispo")(low, old.to(torch.bfloat16), adv.to(torch.bfloat16), mask)
    (grad,) = torch.autograd.grad(out.loss, low)
    assert out.loss.dtype == torch.float32 and grad.dtype == torch.bfloat16
    as_seen = [t.detach().to(torch.bfloat16).double() for t in (logp, old, adv)]
    want = ref.cispo(*as_seen, mask)
    assert out.loss.item() == pytest.approx(want.item(), rel=1e-5)


def test_registry_names_the_default_and_every_loss_shares_one_signature():
    from forgerl.rl import DEFAULT_LOSS

    assert DEFAULT_LOSS == "cispo"
    assert set(LOSSES) == {"cispo", "ppo", "grpo", "dapo", "gspo"}
    logp, old, adv, mask = make_batch(0)
    for name in NAMES:
        out = get_loss(name)(logp, old, adv, mask, num_tokens=100, num_sequences=10, entropy=torch.zeros(logp.shape))
        assert isinstance(out, LossOutput) and out.loss.dim() == 0
    with pytest.raises(KeyError, match="registered losses: cispo, dapo, grpo, gspo, ppo"):
        get_loss("reinforce")


def poisoned(t: torch.Tensor, index: tuple[int, ...]) -> torch.Tensor:
    t = t.clone()
    t[index] = float("nan")
    return t


BAD_INPUTS = [
    ("logp must be a \\[B, T\\]", lambda lp, o, a, m: (lp[0], o, a, m), {}),
    ("old_logp must have logp's shape", lambda lp, o, a, m: (lp, o[:, :-1], a, m), {}),
    ("mask must have logp's shape", lambda lp, o, a, m: (lp, o, a, m[:-1]), {}),
    ("advantages must be \\[B\\]", lambda lp, o, a, m: (lp, o, a[:-1], m), {}),
    ("mask must hold only 0/1", lambda lp, o, a, m: (lp, o, a, m * 0.5), {}),
    ("old_logp has 1 non-finite", lambda lp, o, a, m: (lp, poisoned(o, (0, 0)), a, m), {}),
    (
        "advantages has \\d+ non-finite value\\(s\\) at trainable positions \\(first at index \\(1, 0\\)\\)",
        lambda lp, o, a, m: (lp, o, poisoned(a, (1,)), m),
        {},
    ),
    ("eps_low must be in", lambda lp, o, a, m: (lp, o, a, m), {"eps_low": 1.5}),
    ("eps_high must be >= 0", lambda lp, o, a, m: (lp, o, a, m), {"eps_high": -0.1}),
]


@pytest.mark.parametrize(("message", "mangle", "hyper"), BAD_INPUTS)
@pytest.mark.parametrize("name", NAMES)
def test_bad_input_is_refused_with_a_message_that_says_what_was_wrong(name, message, mangle, hyper):
    logp, old, adv, mask = make_batch(0)
    mask[1, 0] = 1.0  # make sure (1, ·) has a trainable token for the advantage check
    with pytest.raises(LossInputError, match=message):
        get_loss(name)(*mangle(logp, old, adv, mask), **hyper)


@pytest.mark.parametrize("name", NAMES)
def test_a_batch_total_smaller_than_this_micro_batch_is_refused(name):
    logp, old, adv, mask = make_batch(0)
    key = "num_tokens" if name in ("cispo", "dapo") else "num_sequences"
    with pytest.raises(LossInputError, match=f"{key}=1 is smaller than"):
        get_loss(name)(logp, old, adv, mask, **{key: 1})
