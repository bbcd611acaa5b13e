"""Tests for speechdistill.train.losses: KD divergences, CE, Distil-Whisper, RS-KD, DistilHuBERT."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from speechdistill.cache import rskd_sample
from speechdistill.train.losses import (
    DEFAULT_SKEW,
    DIVERGENCES,
    PRESETS,
    ce_loss,
    dense_ce_with_soft_targets,
    distil_whisper_loss,
    kd_loss,
    layerwise_distill_loss,
    pack_sparse,
    sparse_kd_loss,
    sparse_to_dense,
)

# ----------------------------------------------------------------------------- kd_loss


def _direct(p: torch.Tensor, q: torch.Tensor, divergence: str, lam: float) -> torch.Tensor:
    """Per-row divergences straight from their definitions, in float64 probabilities."""

    def kl(a, b):
        return (a * (a / b).log()).sum(-1)

    if divergence == "forward_kl":
        return kl(p, q)
    if divergence == "reverse_kl":
        return kl(q, p)
    if divergence == "skew_kl":
        return kl(p, lam * p + (1 - lam) * q)
    if divergence == "skew_rkl":
        return kl(q, lam * q + (1 - lam) * p)
    m = (p + q) / 2
    return 0.5 * kl(p, m) + 0.5 * kl(q, m)


def _logits(*shape: int, seed: int, scale: float = 2.0) -> torch.Tensor:
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed)) * scale


@pytest.mark.parametrize("divergence", DIVERGENCES)
@pytest.mark.parametrize("temperature", [1.0, 1.7])
def test_kd_matches_direct_formula(divergence, temperature):
    s, t = _logits(2, 4, 7, seed=0), _logits(2, 4, 7, seed=1)
    mask = torch.tensor([[1, 1, 1, 0], [1, 1, 0, 0]], dtype=torch.bool)
    lam = 0.3
    p = torch.softmax(t.double() / temperature, -1)[mask]
    q = torch.softmax(s.double() / temperature, -1)[mask]
    want = temperature**2 * _direct(p, q, divergence, lam).mean()
    got = kd_loss(s, t, mask, divergence=divergence, temperature=temperature, skew=lam)
    assert got.dtype == torch.float32
    assert got.item() == pytest.approx(want.item(), abs=1e-5)
    total = kd_loss(
        s, t, mask, divergence=divergence, temperature=temperature, skew=lam, reduction="sum"
    )
    assert total.item() == pytest.approx(want.item() * 5, abs=5e-5)


@pytest.mark.parametrize("divergence", DIVERGENCES)
def test_identical_distributions_give_zero(divergence):
    x = _logits(3, 5, 11, seed=2)
    assert kd_loss(x, x.clone(), divergence=divergence, temperature=2.0).item() == pytest.approx(
        0.0, abs=1e-6
    )


def test_bernoulli_by_hand():
    p, q = (0.3, 0.7), (0.6, 0.4)
    t = torch.tensor([[math.log(p[0]), math.log(p[1])]])
    s = torch.tensor([[math.log(q[0]), math.log(q[1])]])
    forward = 0.3 * math.log(0.3 / 0.6) + 0.7 * math.log(0.7 / 0.4)
    reverse = 0.6 * math.log(0.6 / 0.3) + 0.4 * math.log(0.4 / 0.7)
    m = (0.45, 0.55)
    js = 0.5 * (0.3 * math.log(0.3 / m[0]) + 0.7 * math.log(0.7 / m[1])) + 0.5 * (
        0.6 * math.log(0.6 / m[0]) + 0.4 * math.log(0.4 / m[1])
    )
    mix = (0.1 * 0.3 + 0.9 * 0.6, 0.1 * 0.7 + 0.9 * 0.4)  # λp + (1-λ)q, λ = 0.1
    skew = 0.3 * math.log(0.3 / mix[0]) + 0.7 * math.log(0.7 / mix[1])
    assert forward == pytest.approx(0.183787, abs=1e-6)
    assert kd_loss(s, t).item() == pytest.approx(forward, abs=1e-6)
    assert kd_loss(s, t, divergence="reverse_kl").item() == pytest.approx(reverse, abs=1e-6)
    assert kd_loss(s, t, divergence="js").item() == pytest.approx(js, abs=1e-6)
    assert kd_loss(s, t, divergence="skew_kl").item() == pytest.approx(skew, abs=1e-6)


def test_js_bounded_by_log2():
    s, t = _logits(4, 6, 9, seed=3, scale=30.0), _logits(4, 6, 9, seed=4, scale=30.0)
    assert kd_loss(s, t, divergence="js").item() <= math.log(2) + 1e-6
    # Disjoint supports: JS = log 2 exactly.
    a = torch.tensor([[0.0, -1e4], [-1e4, 0.0]])
    assert kd_loss(a, a.flip(-1), divergence="js").item() == pytest.approx(math.log(2), abs=1e-6)


@pytest.mark.parametrize("divergence", DIVERGENCES)
def test_temperature_scales_by_t_squared(divergence):
    s, t = _logits(2, 3, 5, seed=5), _logits(2, 3, 5, seed=6)
    hot = kd_loss(s, t, divergence=divergence, temperature=2.0)
    cold = kd_loss(s / 2, t / 2, divergence=divergence, temperature=1.0)
    assert hot.item() == pytest.approx(4 * cold.item(), rel=1e-5)


def test_skew_limits_and_default():
    assert DEFAULT_SKEW == 0.1
    s, t = _logits(2, 3, 6, seed=7), _logits(2, 3, 6, seed=8)
    fwd, rev = kd_loss(s, t), kd_loss(s, t, divergence="reverse_kl")
    assert kd_loss(s, t, divergence="skew_kl", skew=0.0).item() == pytest.approx(fwd.item())
    assert kd_loss(s, t, divergence="skew_rkl", skew=0.0).item() == pytest.approx(rev.item())
    for d in ("skew_kl", "skew_rkl"):
        assert kd_loss(s, t, divergence=d, skew=1.0).item() == pytest.approx(0.0, abs=1e-7)
        # Skewing towards the divergence's own first argument shrinks it.
        assert 0 < kd_loss(s, t, divergence=d, skew=0.1).item() < max(fwd.item(), rev.item())


@pytest.mark.parametrize("divergence", DIVERGENCES)
def test_kd_masking_labels_and_garbage_padding(divergence):
    s = _logits(2, 4, 6, seed=9).requires_grad_()
    t = _logits(2, 4, 6, seed=10)
    labels = torch.tensor([[5, 2, -100, -100], [1, -100, 3, 0]])
    mask = labels != -100
    by_mask = kd_loss(s, t, mask, divergence=divergence, temperature=1.5)
    by_labels = kd_loss(s, t, labels, divergence=divergence, temperature=1.5)
    assert by_mask.item() == by_labels.item()
    # Garbage (nan/inf) in padded positions changes neither the value nor the gradient.
    s2 = s.detach().clone()
    s2[~mask] = float("nan")
    t2 = t.clone()
    t2[~mask] = float("inf")
    s2.requires_grad_()
    dirty = kd_loss(s2, t2, mask, divergence=divergence, temperature=1.5)
    assert dirty.item() == pytest.approx(by_mask.item())
    by_mask.backward()
    dirty.backward()
    assert torch.equal(s.grad[~mask], torch.zeros_like(s.grad[~mask]))
    assert torch.allclose(s2.grad[mask], s.grad[mask])
    assert torch.equal(s2.grad[~mask], torch.zeros_like(s2.grad[~mask]))
    # Per-utterance computation agrees with the pooled mean over valid tokens.
    parts = [
        kd_loss(
            s[b][mask[b]], t[b][mask[b]], divergence=divergence, temperature=1.5, reduction="sum"
        )
        for b in range(2)
    ]
    assert by_mask.item() == pytest.approx(sum(p.item() for p in parts) / 5, rel=1e-6)


@pytest.mark.parametrize("divergence", DIVERGENCES)
def test_neg_inf_logits_stay_finite(divergence):
    """Suppressed tokens (-inf in both models) give finite values and gradients."""
    s = _logits(3, 8, seed=11)
    t = _logits(3, 8, seed=12)
    s[:, :2] = float("-inf")
    t[:, :2] = float("-inf")
    s.requires_grad_()
    loss = kd_loss(s, t, divergence=divergence, temperature=2.0)
    loss.backward()
    assert torch.isfinite(loss)
    assert torch.isfinite(s.grad).all()
    ref = kd_loss(s.detach()[:, 2:], t[:, 2:], divergence=divergence, temperature=2.0)
    assert loss.item() == pytest.approx(ref.item(), abs=1e-6)


def test_kd_bf16_inputs_accumulate_in_fp32():
    s, t = _logits(4, 16, 50, seed=13).bfloat16(), _logits(4, 16, 50, seed=14).bfloat16()
    got = kd_loss(s, t, temperature=2.0)
    ref = kd_loss(s.float(), t.float(), temperature=2.0)
    assert got.dtype == torch.float32
    assert got.item() == pytest.approx(ref.item(), rel=1e-6)


def test_kd_no_valid_position_is_zero():
    s = _logits(2, 3, 4, seed=15).requires_grad_()
    loss = kd_loss(s, s.detach() + 1, torch.zeros(2, 3, dtype=torch.bool))
    loss.backward()
    assert loss.item() == 0.0
    assert torch.equal(s.grad, torch.zeros_like(s))


def test_kd_argument_errors():
    s = _logits(2, 3, 4, seed=16)
    with pytest.raises(ValueError, match="differ"):
        kd_loss(s, s[..., :3])
    with pytest.raises(ValueError, match="divergence"):
        kd_loss(s, s, divergence="tv")
    with pytest.raises(ValueError, match="temperature"):
        kd_loss(s, s, temperature=0.0)
    with pytest.raises(ValueError, match="skew"):
        kd_loss(s, s, divergence="skew_kl", skew=1.5)
    with pytest.raises(TypeError, match="bool or integer"):
        kd_loss(s, s, torch.ones(2, 3))
    with pytest.raises(ValueError, match="mask has shape"):
        kd_loss(s, s, torch.ones(2, 4, dtype=torch.bool))
    with pytest.raises(ValueError, match="reduction"):
        kd_loss(s, s, reduction="none")


# ----------------------------------------------------------------------------- ce & Distil-Whisper


@pytest.mark.parametrize("smoothing", [0.0, 0.1])
def test_ce_matches_torch(smoothing):
    s = _logits(2, 5, 9, seed=17)
    labels = torch.tensor([[1, 4, 8, -100, -100], [0, 0, 3, 7, -100]])
    ref = F.cross_entropy(s.reshape(-1, 9), labels.reshape(-1), label_smoothing=smoothing)
    assert ce_loss(s, labels, label_smoothing=smoothing).item() == pytest.approx(ref.item())
    total = ce_loss(s, labels, label_smoothing=smoothing, reduction="sum")
    assert total.item() == pytest.approx(ref.item() * 7, rel=1e-6)


def test_ce_edge_cases():
    s = _logits(2, 3, 5, seed=18)
    assert ce_loss(s, torch.full((2, 3), -100)).item() == 0.0
    labels = torch.tensor([[0, 1, 2], [3, 4, -100]])
    bf = ce_loss(s.bfloat16(), labels)
    assert bf.dtype == torch.float32
    assert bf.item() == pytest.approx(ce_loss(s.bfloat16().float(), labels).item())
    with pytest.raises(ValueError, match="do not match"):
        ce_loss(s, labels[:, :2])


def test_presets_follow_paper_and_code():
    assert PRESETS["paper"] == {"alpha_ce": 1.0, "alpha_kd": 0.8}
    assert PRESETS["code"] == {"alpha_ce": 0.8, "alpha_kd": 1.0}


@pytest.mark.parametrize("preset", ["paper", "code"])
def test_distil_whisper_loss_combines_ce_and_kd(preset):
    s = _logits(2, 4, 10, seed=19).requires_grad_()
    t = _logits(2, 4, 10, seed=20)
    labels = torch.tensor([[3, 1, 9, -100], [2, -100, -100, -100]])
    out = distil_whisper_loss(s, labels, t, temperature=2.0, **PRESETS[preset])
    ce = ce_loss(s, labels)
    kd = kd_loss(s, t, labels, temperature=2.0)
    a = PRESETS[preset]
    assert out["ce"].item() == pytest.approx(ce.item())
    assert out["kd"].item() == pytest.approx(kd.item())
    assert out["loss"].item() == pytest.approx(
        a["alpha_ce"] * ce.item() + a["alpha_kd"] * kd.item()
    )
    assert not out["ce"].requires_grad and not out["kd"].requires_grad
    out["loss"].backward()
    assert torch.isfinite(s.grad).all()


def test_distil_whisper_defaults_and_ce_only():
    s, t = _logits(1, 3, 6, seed=21), _logits(1, 3, 6, seed=22)
    labels = torch.tensor([[1, 2, 3]])
    default = distil_whisper_loss(s, labels, t)
    code = distil_whisper_loss(s, labels, t, **PRESETS["code"], temperature=2.0)
    assert default["loss"].item() == code["loss"].item()
    ce_only = distil_whisper_loss(s, labels, None, alpha_ce=1.0, alpha_kd=0.0)
    assert ce_only["loss"].item() == pytest.approx(ce_loss(s, labels).item())
    assert ce_only["kd"].item() == 0.0
    with pytest.raises(ValueError, match="teacher_logits"):
        distil_whisper_loss(s, labels, None)
    js = distil_whisper_loss(s, labels, t, divergence="js", temperature=1.0)
    assert js["kd"].item() == pytest.approx(kd_loss(s, t, divergence="js").item())


# ----------------------------------------------------------------------------- RS-KD


def _exact_targets(teacher: torch.Tensor, temperature: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Dense "sparse" targets: every id, with its exact teacher probability as weight."""
    p = torch.softmax(teacher / temperature, -1)
    return torch.arange(p.shape[-1]).expand(p.shape).clone(), p


def test_pack_sparse_places_cached_rows():
    gen = torch.Generator().manual_seed(0)
    k = 8
    caches = [rskd_sample(_logits(n, 20, seed=n), k, 1.0, gen) for n in (3, 5)]
    packed = pack_sparse(caches, [3, 4], 9, starts=[2, 0], k=k)
    assert packed.ids.dtype == torch.long and packed.weights.dtype == torch.float32
    assert packed.ids.shape[:2] == (2, 9) and packed.mask.shape == (2, 9)
    want_mask = torch.zeros(2, 9, dtype=torch.bool)
    want_mask[0, 2:5] = True
    want_mask[1, 0:4] = True  # the 5th cached row is truncated away by lengths
    assert torch.equal(packed.mask, want_mask)
    dense = sparse_to_dense(packed.ids, packed.weights, 20)
    for b, (ids, counts, offsets) in enumerate(caches):
        start, length = (2, 3) if b == 0 else (0, 4)
        for j in range(length):
            lo, hi = int(offsets[j]), int(offsets[j + 1])
            want = torch.zeros(20).index_add_(0, ids[lo:hi].long(), counts[lo:hi].float() / k)
            assert torch.equal(dense[b, start + j], want)
    assert torch.allclose(packed.weights.sum(-1)[packed.mask], torch.ones(7))
    assert torch.equal(packed.weights[~packed.mask], torch.zeros_like(packed.weights[~packed.mask]))
    # Defaults: all rows, smallest pad_to, k inferred per row.
    auto = pack_sparse(caches)
    assert auto.mask.shape == (2, 5) and int(auto.mask.sum()) == 8
    assert torch.allclose(auto.weights.sum(-1)[auto.mask], torch.ones(8))


def test_pack_sparse_errors():
    gen = torch.Generator().manual_seed(1)
    cache = rskd_sample(_logits(3, 10, seed=0), 4, 1.0, gen)
    with pytest.raises(ValueError, match="pad_to"):
        pack_sparse([cache], [3], 2)
    with pytest.raises(ValueError, match="length"):
        pack_sparse([cache], [4], 8)
    with pytest.raises(ValueError, match="k=5"):
        pack_sparse([cache], k=5)
    ids, counts, offsets = cache
    with pytest.raises(ValueError, match="offsets end"):
        pack_sparse([(ids[:-1], counts[:-1], offsets)])
    with pytest.raises(ValueError, match="starts"):
        pack_sparse([cache], starts=[0, 1])


@pytest.mark.parametrize("temperature", [1.0, 2.0])
def test_sparse_with_exact_weights_is_dense_ce_and_forward_kl_gradient(temperature):
    """E[count/K] = p_T: with the exact expectation the estimate is exact, value and gradient."""
    s = _logits(2, 3, 12, seed=23)
    t = _logits(2, 3, 12, seed=24)
    mask = torch.tensor([[1, 1, 0], [1, 1, 1]], dtype=torch.bool)
    ids, w = _exact_targets(t, temperature)
    s1 = s.clone().requires_grad_()
    sparse = sparse_kd_loss(s1, ids, w, mask, temperature=temperature)
    dense = dense_ce_with_soft_targets(
        s, torch.softmax(t / temperature, -1), mask, temperature=temperature
    )
    assert sparse.item() == pytest.approx(dense.item(), rel=1e-6)
    # H(p, q) = KL(p ‖ q) + H(p): same gradient as forward KL.
    p = torch.softmax(t.double() / temperature, -1)[mask]
    entropy = -(p * p.log()).sum(-1).mean().item()
    s2 = s.clone().requires_grad_()
    kl = kd_loss(s2, t, mask, temperature=temperature)
    assert sparse.item() == pytest.approx(kl.item() + temperature**2 * entropy, rel=1e-5)
    sparse.backward()
    kl.backward()
    assert torch.allclose(s1.grad, s2.grad, atol=1e-7)


def test_sparse_estimate_is_unbiased_over_draws():
    """Mean over many cached draws (K = 255) ≈ exact H(p, q) and forward-KL gradient."""
    temperature, k, draws, length = 1.5, 255, 200, 6
    s = _logits(1, length, 16, seed=25)
    t = _logits(1, length, 16, seed=26)
    p = torch.softmax(t.double() / temperature, -1)
    log_q = torch.log_softmax(s.double() / temperature, -1)
    exact = temperature**2 * -(p * log_q).sum(-1).mean()
    # Standard error of the mean estimate: Var_p(log q) / K per position, averaged.
    var = (p * log_q**2).sum(-1) - (p * log_q).sum(-1) ** 2
    se = temperature**2 * math.sqrt(var.sum().item() / (k * length**2 * draws))

    # One cache call for all draws, split into `draws` utterances of `length` positions.
    gen = torch.Generator().manual_seed(1234)
    ids, counts, offsets = rskd_sample(t[0].repeat(draws, 1), k, temperature, gen)
    items = []
    for d in range(draws):
        o = offsets[d * length : (d + 1) * length + 1]
        items.append((ids[o[0] : o[-1]], counts[o[0] : o[-1]], o - o[0]))
    packed = pack_sparse(items, k=k)
    x = s.expand(draws, -1, -1).clone().requires_grad_()
    loss = sparse_kd_loss(x, *packed, temperature=temperature)  # mean over all draws
    loss.backward()
    assert abs(loss.item() - exact.item()) < 4 * se
    assert se < 2e-3 * exact.item()  # a tight test: K·draws samples per position
    grads = x.grad * draws  # each draw's own (mean-reduced) gradient
    ref = s.clone().requires_grad_()
    kd_loss(ref, t, temperature=temperature).backward()
    g_se = grads.std(0) / math.sqrt(draws)
    assert ((grads.mean(0) - ref.grad[0]).abs() <= 5 * g_se + 1e-7).all()


def test_sparse_masking():
    s = _logits(2, 4, 10, seed=27)
    t = _logits(2, 4, 10, seed=28)
    ids, w = _exact_targets(t, 1.0)
    labels = torch.tensor([[1, 2, -100, -100], [3, 4, 5, -100]])
    mask = labels != -100
    base = sparse_kd_loss(s, ids, w, mask)
    assert base.item() == sparse_kd_loss(s, ids, w, labels).item()
    # Padded student positions may hold garbage.
    s2 = s.clone()
    s2[~mask] = float("nan")
    x = s2.requires_grad_()
    loss = sparse_kd_loss(x, ids, w, mask)
    loss.backward()
    assert loss.item() == pytest.approx(base.item())
    assert torch.equal(x.grad[~mask], torch.zeros_like(x.grad[~mask]))
    # A masked-in position without samples is excluded (and not counted in the mean).
    w3 = w.clone()
    w3[0, 1] = 0
    only = sparse_kd_loss(s, ids, w3, mask, reduction="sum")
    full = sparse_kd_loss(s, ids, w, mask, reduction="sum")
    dropped = sparse_kd_loss(s[:1, 1:2], ids[:1, 1:2], w[:1, 1:2], reduction="sum")
    assert only.item() == pytest.approx(full.item() - dropped.item(), rel=1e-6)
    assert sparse_kd_loss(s, ids, w3, mask).item() == pytest.approx(only.item() / 4, rel=1e-6)
    # Default mask: the positions with samples; a zero-weight padding slot whose student
    # logit is -inf contributes nothing.
    w4 = torch.zeros(2, 4, 11)
    ids4 = torch.zeros(2, 4, 11, dtype=torch.long)
    w4[..., :10], ids4[..., :10] = w, ids
    s4 = s.clone()
    s4[..., 0] = float("-inf")
    w4[..., 0] = 0  # no sample at id 0, which the student forbids
    w4[..., :10] /= w4.sum(-1, keepdim=True)
    assert torch.isfinite(sparse_kd_loss(s4, ids4, w4))


def test_sparse_bf16_and_errors():
    s = _logits(1, 3, 8, seed=29)
    ids, w = _exact_targets(_logits(1, 3, 8, seed=30), 1.0)
    bf = sparse_kd_loss(s.bfloat16(), ids, w)
    assert bf.dtype == torch.float32
    assert bf.item() == pytest.approx(sparse_kd_loss(s.bfloat16().float(), ids, w).item())
    with pytest.raises(ValueError, match="do not match"):
        sparse_kd_loss(s, ids[:, :2], w[:, :2])
    with pytest.raises(ValueError, match="temperature"):
        sparse_kd_loss(s, ids, w, temperature=-1.0)


# ----------------------------------------------------------------------------- DistilHuBERT


def test_layerwise_known_values():
    h = torch.tensor([[[1.0, 0.0], [0.0, 2.0]]])  # (B=1, T=2, D=2)
    same = layerwise_distill_loss([h], [h.clone()])
    assert same.l1.tolist() == [0.0]
    assert same.cos.item() == pytest.approx(math.log1p(math.exp(-1.0)), abs=1e-6)
    opposite = layerwise_distill_loss([-h], [h])
    assert opposite.l1.item() == pytest.approx((2 + 0 + 0 + 4) / 4)
    assert opposite.cos.item() == pytest.approx(math.log1p(math.e), abs=1e-6)
    orth = layerwise_distill_loss([torch.tensor([[[1.0, 0.0]]])], [torch.tensor([[[0.0, 3.0]]])])
    assert orth.l1.item() == pytest.approx(2.0)  # (|1 − 0| + |0 − 3|) / 2
    assert orth.cos.item() == pytest.approx(math.log(2), abs=1e-6)
    both = layerwise_distill_loss([h, -h], [h, h], lambda_cos=0.5)
    assert both.l1.shape == (2,) and both.cos.shape == (2,)
    want = (0 + 0.5 * math.log1p(math.exp(-1))) + (1.5 + 0.5 * math.log1p(math.e))
    assert both.loss.item() == pytest.approx(want, abs=1e-6)


def test_layerwise_masking_excludes_padded_frames():
    g = torch.Generator().manual_seed(31)
    preds = [torch.randn(2, 5, 4, generator=g) for _ in range(3)]
    targets = [torch.randn(2, 5, 4, generator=g) for _ in range(3)]
    mask = torch.tensor([[1, 1, 1, 0, 0], [1, 1, 1, 1, 1]], dtype=torch.bool)
    x = [p.clone().requires_grad_() for p in preds]
    base = layerwise_distill_loss(x, targets, mask, lambda_cos=1.0)
    base.loss.backward()
    # Changing padded frames (even to nan) leaves the loss unchanged, and they get no gradient.
    dirty_p = [p.clone() for p in preds]
    dirty_t = [t.clone() for t in targets]
    for d in (*dirty_p, *dirty_t):
        d[~mask] = float("nan")
    dirty = layerwise_distill_loss(dirty_p, dirty_t, mask)
    assert dirty.loss.item() == pytest.approx(base.loss.item())
    for xi in x:
        assert torch.equal(xi.grad[~mask], torch.zeros_like(xi.grad[~mask]))
    # Same as the loss over the valid frames alone (one "utterance", nothing padded).
    flat = layerwise_distill_loss([p[mask][None] for p in preds], [t[mask][None] for t in targets])
    assert torch.allclose(flat.l1, base.l1) and torch.allclose(flat.cos, base.cos)
    # Without padding, s3prl's mean over heads and all frames is our total / n_heads.
    full = layerwise_distill_loss(preds, targets)
    p, t = torch.stack(preds, 1), torch.stack(targets, 1)  # B x N x T x D
    s3prl = (p - t).abs().mean() + (-F.logsigmoid(F.cosine_similarity(p, t, dim=-1))).mean()
    assert full.loss.item() / 3 == pytest.approx(s3prl.item(), rel=1e-6)


def test_layerwise_bf16_and_errors():
    h = torch.randn(2, 3, 4, generator=torch.Generator().manual_seed(32))
    out = layerwise_distill_loss([h.bfloat16()], [(h + 1).bfloat16()])
    assert out.loss.dtype == torch.float32
    with pytest.raises(ValueError, match="predictions"):
        layerwise_distill_loss([h], [h, h])
    with pytest.raises(ValueError, match="predictions"):
        layerwise_distill_loss([], [])
    with pytest.raises(ValueError, match="must both be"):
        layerwise_distill_loss([h], [h[:, :2]])
    with pytest.raises(ValueError, match="mask has shape"):
        layerwise_distill_loss([h], [h], torch.ones(2, 4, dtype=torch.bool))
