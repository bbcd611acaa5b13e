"""Knowledge-distillation losses: logit KD, cross-entropy, Distil-Whisper, RS-KD and DistilHuBERT.

Pure torch. Conventions shared by every loss here:

* **Valid positions.** ``mask`` is a ``(B, L)`` bool tensor, ``True`` on real (non-padded)
  positions, *or* an integer label tensor in which ``ignore_index`` (``-100``) marks padding
  (any other integer is valid: pass an HF 0/1 ``attention_mask`` as ``.bool()``, never as is).
  ``None`` means every position is valid. Padded positions are dropped *before* any arithmetic,
  so whatever they hold (even ``nan``/``inf``) affects neither the value nor the gradient.
* **Reduction.** ``"mean"`` (default) is the mean over the valid tokens (frames) of the whole
  batch, ``Σ_valid ℓ / N_valid``, pooled across utterances (not a mean of per-utterance means),
  as in Distil-Whisper and HF's cross-entropy; ``"sum"`` is ``Σ_valid ℓ``. With no valid
  position the loss is ``0``, never ``nan``.
* **Token weights.** ``token_weights`` (a ``(B, L)`` float tensor, e.g. each utterance's
  ``utt2weight`` repeated over its positions) makes ``"mean"`` the weighted mean
  ``Σ_valid w·ℓ / Σ_valid w`` and ``"sum"`` ``Σ_valid w·ℓ``; equal weights give the unweighted
  loss.
* **Precision.** Inputs may be bf16/fp16; everything is upcast to fp32 (after dropping the
  padding) and computed in log space (``log_softmax`` / ``logsumexp`` / ``logaddexp``), so the
  results are fp32.
* **Temperature.** Logit losses with a temperature ``T`` compare ``p_T = softmax(t / T)`` and
  ``q_T = softmax(s / T)`` and are multiplied by ``T²`` (Hinton et al. 2015), which keeps the
  gradient's magnitude independent of ``T`` (the gradient of ``KL(p_T ‖ q_T)`` w.r.t. the
  student logits is ``(q_T − p_T) / T``).
* Logits and labels are aligned: ``logits[b, i]`` predicts ``labels[b, i]`` (HF seq2seq
  convention, already shifted). Teacher tensors are not detached: produce them under
  ``torch.no_grad()``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Literal, NamedTuple

import torch
import torch.nn.functional as F

Divergence = Literal["forward_kl", "reverse_kl", "skew_kl", "skew_rkl", "js"]
Reduction = Literal["mean", "sum"]

DIVERGENCES: tuple[str, ...] = ("forward_kl", "reverse_kl", "skew_kl", "skew_rkl", "js")
IGNORE_INDEX = -100
DEFAULT_SKEW = 0.1
"""DistiLLM's skew λ (Ko et al. 2024 use α = 0.1 for both skew KL and skew reverse KL)."""

# Distil-Whisper's loss weights. The paper (Gandhi et al. 2023, arXiv:2311.00430) writes the
# objective as α_KL·KL + α_PL·CE with α_KL = 0.8, α_PL = 1.0 (the DistilBART setting of
# Shleifer & Rush 2020; a maintainer confirms that choice in huggingface/distil-whisper#75). The
# released PyTorch training code does the opposite: huggingface/distil-whisper,
# training/run_distillation.py @ d8c21aecd856000c09bf0fdd7884249a4f1d9c6a, in ``train_step``
# (right after the nested ``kl_divergence`` helper, section "15. Prepare everything with
# accelerate", near the end of the file) weights the student's HF cross-entropy (T = 1) by a
# hard-coded 0.8 and the T²-scaled KL by ``--kl_weight`` (``DistillationTrainingArguments``,
# default 1.0; ``--temperature`` default 2.0). Its ``kl_divergence`` sums the KL over the
# vocabulary and divides by the number of label positions != -100, i.e. our "mean" reduction.
PRESETS: dict[str, dict[str, float]] = {
    "paper": {"alpha_ce": 1.0, "alpha_kd": 0.8},
    "code": {"alpha_ce": 0.8, "alpha_kd": 1.0},
}


# ----------------------------------------------------------------------------- helpers


def valid_mask(
    mask: torch.Tensor | None, shape: Sequence[int], *, ignore_index: int = IGNORE_INDEX
) -> torch.Tensor:
    """The bool ``shape`` tensor of valid positions from a bool mask, labels or ``None``."""
    shape = tuple(shape)
    if mask is None:
        return torch.ones(shape, dtype=torch.bool)
    if mask.dtype != torch.bool:
        if mask.is_floating_point() or mask.is_complex():
            raise TypeError(f"mask must be bool or integer labels, not {mask.dtype}")
        mask = mask != ignore_index
    if tuple(mask.shape) != shape:
        raise ValueError(f"mask has shape {tuple(mask.shape)}, expected {shape}")
    return mask


def _select(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """The valid rows ``(N, ...)`` of ``x`` as fp32 (padding dropped before the upcast)."""
    return x[mask.to(x.device)].float()


def _reduce(
    per_item: torch.Tensor,
    reduction: Reduction,
    count: torch.Tensor | None = None,
    weights: torch.Tensor | None = None,
) -> torch.Tensor:
    """Sum, or sum / ``count`` (default: number of items; ``0`` when there are none); with
    ``weights`` (one per item) the weighted sum, or that over the sum of the weights."""
    if weights is not None:
        w = weights.to(per_item.device, torch.float32)
        per_item = per_item * w
        if reduction == "mean":  # a sum of weights may be under 1: no clamp to 1
            return per_item.sum() / w.sum().clamp(min=torch.finfo(torch.float32).tiny)
    total = per_item.sum()
    if reduction == "sum":
        return total
    if reduction == "mean":
        if count is None:
            return total / max(per_item.numel(), 1)
        return total / count.clamp(min=1)
    raise ValueError(f"reduction must be 'mean' or 'sum', got {reduction!r}")


def _token_weights(weights: torch.Tensor | None, mask: torch.Tensor) -> torch.Tensor | None:
    """The weights of the valid positions ``(N,)`` (None stays None)."""
    if weights is None:
        return None
    if tuple(weights.shape) != tuple(mask.shape):
        raise ValueError(f"token_weights {tuple(weights.shape)} do not match {tuple(mask.shape)}")
    return _select(weights, mask)


def _check_temperature(temperature: float) -> None:
    if not temperature > 0:
        raise ValueError(f"temperature must be > 0, got {temperature}")


def _log_softmax(logits: torch.Tensor, temperature: float) -> torch.Tensor:
    """``log softmax(logits / T)`` with ``-inf`` floored at fp32's lowest finite value.

    The floor keeps ``logaddexp`` and products with zero probabilities finite in the backward
    pass (``logaddexp(-inf, -inf)`` has a ``nan`` gradient); ``exp`` of it is still exactly 0.
    """
    logp = F.log_softmax(logits / temperature, dim=-1)
    return logp.clamp(min=torch.finfo(logp.dtype).min)


def _kl(log_a: torch.Tensor, log_b: torch.Tensor) -> torch.Tensor:
    """``KL(a ‖ b) = Σ_v a_v (log a_v − log b_v)`` over the last axis; terms with ``a_v = 0`` are 0."""
    a = log_a.exp()
    diff = torch.where(a > 0, log_a - log_b, 0.0)
    return (a * diff).sum(-1)


def _log_mix(log_a: torch.Tensor, log_b: torch.Tensor, weight: float) -> torch.Tensor:
    """``log(w·a + (1 − w)·b)`` computed from log-probabilities."""
    if weight == 0.0:
        return log_b
    if weight == 1.0:
        return log_a
    return torch.logaddexp(log_a + math.log(weight), log_b + math.log1p(-weight))


def divergence_per_token(
    log_p: torch.Tensor, log_q: torch.Tensor, divergence: Divergence, skew: float = DEFAULT_SKEW
) -> torch.Tensor:
    """``D(p ‖ q)`` over the last axis of log-probabilities: teacher ``p``, student ``q``.

    * ``forward_kl``: ``KL(p ‖ q) = Σ p log(p / q)`` (mode-covering, the classic KD loss);
    * ``reverse_kl``: ``KL(q ‖ p)`` (mode-seeking);
    * ``skew_kl``: ``KL(p ‖ λp + (1 − λ)q)`` (DistiLLM's α-skew KL, Ko et al. 2024);
    * ``skew_rkl``: ``KL(q ‖ λq + (1 − λ)p)`` (DistiLLM's α-skew reverse KL);
    * ``js``: ``½ KL(p ‖ m) + ½ KL(q ‖ m)``, ``m = (p + q) / 2`` (in nats, ``0 ≤ JS ≤ log 2``).

    ``λ = 0`` turns the skew divergences into forward / reverse KL; ``λ = 1`` makes them 0.
    Unlike DistiLLM's code, which drops the constant ``−H(p)`` (same gradient), these are true
    divergences: 0 when ``p = q``.
    """
    if divergence == "forward_kl":
        return _kl(log_p, log_q)
    if divergence == "reverse_kl":
        return _kl(log_q, log_p)
    if divergence == "skew_kl":
        return _kl(log_p, _log_mix(log_p, log_q, skew))
    if divergence == "skew_rkl":
        return _kl(log_q, _log_mix(log_q, log_p, skew))
    if divergence == "js":
        log_m = _log_mix(log_p, log_q, 0.5)
        return 0.5 * (_kl(log_p, log_m) + _kl(log_q, log_m))
    raise ValueError(f"divergence must be one of {DIVERGENCES}, got {divergence!r}")


# ----------------------------------------------------------------------------- logit KD


def kd_loss(
    student_logits: torch.Tensor,
    teacher_logits: torch.Tensor,
    mask: torch.Tensor | None = None,
    *,
    divergence: Divergence = "forward_kl",
    temperature: float = 1.0,
    skew: float = DEFAULT_SKEW,
    reduction: Reduction = "mean",
    ignore_index: int = IGNORE_INDEX,
    token_weights: torch.Tensor | None = None,
) -> torch.Tensor:
    """Token-level distillation loss ``T² · mean_valid D(p_T ‖ q_T)``.

    ``p_T = softmax(teacher_logits / T)``, ``q_T = softmax(student_logits / T)``; ``D`` is one
    of :func:`divergence_per_token`'s divergences (``skew`` is their ``λ``). Logits are
    ``(..., V)``, ``mask`` is ``(...)`` (bool or labels, see the module doc). ``reduction="sum"``
    gives ``T² · Σ_valid D``. Returns an fp32 scalar.
    """
    if student_logits.shape != teacher_logits.shape:
        raise ValueError(
            f"student logits {tuple(student_logits.shape)} and teacher logits "
            f"{tuple(teacher_logits.shape)} differ"
        )
    _check_temperature(temperature)
    if not 0.0 <= skew <= 1.0:
        raise ValueError(f"skew must be in [0, 1], got {skew}")
    if divergence not in DIVERGENCES:
        raise ValueError(f"divergence must be one of {DIVERGENCES}, got {divergence!r}")
    m = valid_mask(mask, student_logits.shape[:-1], ignore_index=ignore_index)
    log_q = _log_softmax(_select(student_logits, m), temperature)
    log_p = _log_softmax(_select(teacher_logits, m), temperature)
    per_token = divergence_per_token(log_p, log_q, divergence, skew)
    return temperature**2 * _reduce(per_token, reduction, weights=_token_weights(token_weights, m))


def ce_loss(
    student_logits: torch.Tensor,
    labels: torch.Tensor,
    ignore_index: int = IGNORE_INDEX,
    label_smoothing: float = 0.0,
    *,
    reduction: Reduction = "mean",
    token_weights: torch.Tensor | None = None,
) -> torch.Tensor:
    """Cross-entropy on hard labels: ``torch.nn.functional.cross_entropy`` over ``(..., V)``.

    ``mean`` is over the labels ``!= ignore_index`` (as HF's ``model(labels=...).loss``), ``0``
    when there are none. Logits are upcast to fp32.
    """
    vocab = student_logits.shape[-1]
    if tuple(labels.shape) != tuple(student_logits.shape[:-1]):
        raise ValueError(
            f"labels {tuple(labels.shape)} do not match logits {tuple(student_logits.shape)}"
        )
    labels = labels.reshape(-1).to(student_logits.device)
    if token_weights is not None:
        valid = labels != ignore_index
        per_token = F.cross_entropy(
            student_logits.reshape(-1, vocab)[valid].float(),
            labels[valid],
            label_smoothing=label_smoothing,
            reduction="none",
        )
        w = token_weights.reshape(-1).to(valid.device)[valid]
        return _reduce(per_token, reduction, weights=w)
    total = F.cross_entropy(
        student_logits.reshape(-1, vocab).float(),
        labels,
        ignore_index=ignore_index,
        label_smoothing=label_smoothing,
        reduction="sum",
    )
    return _reduce(total, reduction, (labels != ignore_index).sum())


def distil_whisper_loss(
    student_logits: torch.Tensor,
    labels: torch.Tensor,
    teacher_logits: torch.Tensor | None,
    *,
    alpha_ce: float = PRESETS["code"]["alpha_ce"],
    alpha_kd: float = PRESETS["code"]["alpha_kd"],
    temperature: float = 2.0,
    divergence: Divergence = "forward_kl",
    skew: float = DEFAULT_SKEW,
    ignore_index: int = IGNORE_INDEX,
    label_smoothing: float = 0.0,
    token_weights: torch.Tensor | None = None,
) -> dict[str, torch.Tensor]:
    """Distil-Whisper's objective ``α_ce · CE + α_kd · KD`` on the (pseudo-)label positions.

    ``CE = ce_loss(student_logits, labels)`` at temperature 1; ``KD = kd_loss(student_logits,
    teacher_logits, labels, divergence=…, temperature=T)`` (so ``T²``-scaled), both means over
    the labels ``!= ignore_index``. Defaults are the released code's (``PRESETS["code"]``:
    0.8·CE + 1.0·KL, T = 2); ``**PRESETS["paper"]`` gives the paper's 1.0·CE + 0.8·KL.
    ``teacher_logits`` may be ``None`` only with ``alpha_kd == 0`` (CE-only baseline).

    Returns ``{"loss": total (with grad), "ce": …, "kd": …}``; ``ce`` and ``kd`` are detached,
    for logging.
    """
    ce = ce_loss(student_logits, labels, ignore_index, label_smoothing,
                 token_weights=token_weights)  # fmt: skip
    if teacher_logits is None:
        if alpha_kd != 0:
            raise ValueError("teacher_logits is required when alpha_kd != 0")
        kd = torch.zeros((), device=ce.device)
    else:
        kd = kd_loss(
            student_logits,
            teacher_logits,
            labels,
            divergence=divergence,
            temperature=temperature,
            skew=skew,
            ignore_index=ignore_index,
            token_weights=token_weights,
        )
    loss = alpha_ce * ce + alpha_kd * kd
    return {"loss": loss, "ce": ce.detach(), "kd": kd.detach()}


# ----------------------------------------------------------------------------- RS-KD


class SparseTargets(NamedTuple):
    """A batch of sparse teacher distributions, aligned with the student's ``(B, L)`` grid.

    ``ids``: ``(B, L, U)`` int64 token ids; ``weights``: ``(B, L, U)`` fp32, ``count / K`` for
    the cached samples and 0 on padding slots (each valid position's weights sum to 1);
    ``mask``: ``(B, L)`` bool, the positions holding samples. ``U`` is the largest number of
    unique ids at one position in the batch. ``sparse_kd_loss(logits, *targets, temperature=T)``
    """

    ids: torch.Tensor
    weights: torch.Tensor
    mask: torch.Tensor


def pack_sparse(
    items: Sequence[tuple[torch.Tensor, torch.Tensor, torch.Tensor]],
    lengths: Sequence[int] | None = None,
    pad_to: int | None = None,
    *,
    starts: Sequence[int] | int = 0,
    k: int | None = None,
) -> SparseTargets:
    """Pack per-utterance RS-KD caches ``(ids, counts, offsets)`` into :class:`SparseTargets`.

    Utterance ``b``'s cached row ``j`` (``ids[offsets[j]:offsets[j+1]]``, see
    :func:`speechdistill.cache.rskd_sample`) lands at position ``starts[b] + j`` of the grid,
    for ``j < lengths[b]`` (default: every cached row; fewer truncates, as the trainer's
    ``max_label_length`` does). ``starts`` is where the pseudo-label's first token sits in the
    label sequence (the cache covers the hypothesis tokens, not the decoder prompt). ``pad_to``
    is ``L`` (default: the smallest that fits). Weights are ``counts / k``; with ``k`` given,
    every row's counts must sum to it, else each row is normalised by its own sum.
    Vectorised per utterance: cheap enough for a collate function.
    """
    batch = len(items)
    if lengths is not None and len(lengths) != batch:
        raise ValueError(f"{len(lengths)} lengths for {batch} utterances")
    start_list = [starts] * batch if isinstance(starts, int) else list(starts)
    if len(start_list) != batch:
        raise ValueError(f"{len(start_list)} starts for {batch} utterances")

    b_idx, pos_idx, slot_idx, all_ids, all_w, row_b, row_pos = [], [], [], [], [], [], []
    width, need = 1, 0
    for b, (ids, counts, offsets) in enumerate(items):
        offsets = offsets.long().cpu()
        n_rows = offsets.numel() - 1
        if n_rows < 0 or int(offsets[0]) != 0 or bool((offsets.diff() < 0).any()):
            raise ValueError(f"utterance {b}: offsets must start at 0 and not decrease")
        if not int(offsets[-1]) == ids.numel() == counts.numel():
            raise ValueError(
                f"utterance {b}: offsets end at {int(offsets[-1])}, "
                f"but {ids.numel()} ids and {counts.numel()} counts"
            )
        length = n_rows if lengths is None else int(lengths[b])
        if not 0 <= length <= n_rows:
            raise ValueError(f"utterance {b}: length {length} but {n_rows} cached positions")
        start = int(start_list[b])
        if start < 0:
            raise ValueError(f"utterance {b}: negative start {start}")
        need = max(need, start + length)
        n_per_row = offsets[1 : length + 1] - offsets[:length]
        n_entries = int(offsets[length])
        # Row of each entry (searchsorted is much cheaper than repeat_interleave on CPU).
        rows = torch.searchsorted(offsets[1 : length + 1], torch.arange(n_entries), right=True)
        cnt = counts[:n_entries].to(torch.float64).cpu()
        row_sum = torch.zeros(length, dtype=torch.float64).index_add_(0, rows, cnt)
        if k is not None:
            if bool((row_sum != k).any()):
                raise ValueError(f"utterance {b}: counts do not sum to k={k} at every position")
            denom = torch.full_like(row_sum, float(k))
        else:
            denom = row_sum.clamp(min=1.0)
        if length:
            width = max(width, int(n_per_row.max()))
        b_idx.append(torch.full((n_entries,), b, dtype=torch.long))
        pos_idx.append(rows + start)
        slot_idx.append(torch.arange(n_entries) - offsets[rows])
        all_ids.append(ids[:n_entries].long().cpu())
        all_w.append((cnt / denom[rows]).float())
        has = n_per_row > 0
        row_b.append(torch.full((int(has.sum()),), b, dtype=torch.long))
        row_pos.append(torch.arange(length)[has] + start)

    size = need if pad_to is None else int(pad_to)
    if need > size:
        raise ValueError(f"pad_to={size} is shorter than the {need} positions needed")
    out_ids = torch.zeros((batch, size, width), dtype=torch.long)
    out_w = torch.zeros((batch, size, width), dtype=torch.float32)
    out_mask = torch.zeros((batch, size), dtype=torch.bool)
    if batch:
        index = (torch.cat(b_idx), torch.cat(pos_idx), torch.cat(slot_idx))
        out_ids[index] = torch.cat(all_ids)
        out_w[index] = torch.cat(all_w)
        out_mask[torch.cat(row_b), torch.cat(row_pos)] = True
    return SparseTargets(out_ids, out_w, out_mask)


def sparse_to_dense(ids: torch.Tensor, weights: torch.Tensor, vocab_size: int) -> torch.Tensor:
    """The ``(..., V)`` distributions that sparse ``(ids, weights)`` ``(..., U)`` stand for."""
    dense = torch.zeros((*ids.shape[:-1], vocab_size), dtype=torch.float32, device=ids.device)
    return dense.scatter_add_(-1, ids.long(), weights.float())


def sparse_kd_loss(
    student_logits: torch.Tensor,
    ids: torch.Tensor,
    weights: torch.Tensor,
    mask: torch.Tensor | None = None,
    *,
    temperature: float = 1.0,
    reduction: Reduction = "mean",
    ignore_index: int = IGNORE_INDEX,
    token_weights: torch.Tensor | None = None,
) -> torch.Tensor:
    """RS-KD loss from cached teacher samples: ``T² · mean_valid −Σ_u w_u log q_T(id_u)``.

    ``q_T = softmax(student_logits / T)``; ``ids``/``weights`` ``(B, L, U)`` as in
    :class:`SparseTargets` (``w = count / K``). When the ``K`` samples were drawn from the
    teacher's ``p_T`` (the cache's ``rskd_temperature`` must equal ``T``), ``E[w] = p_T``, so
    the loss is an unbiased estimate of ``T² · H(p_T, q_T)`` (see
    :func:`dense_ce_with_soft_targets`) and its gradient an unbiased estimate of that of
    ``kd_loss(..., divergence="forward_kl", temperature=T)`` (Anshumann et al. 2025, "Sparse
    Logit Sampling"). Its *value* is not a KL: it exceeds it by ``T² · H(p_T)``, unknown from
    samples, so it does not go to 0 and is not comparable with :func:`kd_loss` in logs.

    Valid positions: ``mask`` (bool or labels; default all) and having at least one sample.
    ``log q_T`` is only computed at the sampled ids (``logsumexp`` + ``gather``), never as a
    full ``(B, L, V)`` log-softmax.
    """
    _check_temperature(temperature)
    if ids.shape != weights.shape or tuple(ids.shape[:-1]) != tuple(student_logits.shape[:-1]):
        raise ValueError(
            f"ids {tuple(ids.shape)} / weights {tuple(weights.shape)} do not match logits "
            f"{tuple(student_logits.shape)}"
        )
    has_samples = (weights > 0).any(-1)
    m = valid_mask(mask, has_samples.shape, ignore_index=ignore_index).to(has_samples.device)
    m = m & has_samples
    z = _select(student_logits, m) / temperature  # (N, V)
    device = z.device
    w = weights[m].to(device, torch.float32)  # (N, U)
    log_q = z.gather(-1, ids[m].to(device).long()) - torch.logsumexp(z, -1, keepdim=True)
    per_token = -torch.where(w > 0, w * log_q, 0.0).sum(-1)
    return temperature**2 * _reduce(per_token, reduction, weights=_token_weights(token_weights, m))


def dense_ce_with_soft_targets(
    student_logits: torch.Tensor,
    target_probs: torch.Tensor,
    mask: torch.Tensor | None = None,
    *,
    temperature: float = 1.0,
    reduction: Reduction = "mean",
    ignore_index: int = IGNORE_INDEX,
) -> torch.Tensor:
    """Soft-target cross-entropy ``T² · mean_valid H(p, q_T) = T² · mean −Σ_v p_v log q_T(v)``.

    ``target_probs`` ``(..., V)`` are probabilities (e.g. ``p_T``, or
    :func:`sparse_to_dense` of cached samples); ``q_T = softmax(student_logits / T)``. The dense
    reference for :func:`sparse_kd_loss`; ``= kd_loss(forward_kl) + T² · mean H(p)``.
    """
    _check_temperature(temperature)
    if target_probs.shape != student_logits.shape:
        raise ValueError(
            f"targets {tuple(target_probs.shape)} and logits {tuple(student_logits.shape)} differ"
        )
    m = valid_mask(mask, student_logits.shape[:-1], ignore_index=ignore_index)
    p = _select(target_probs, m)
    log_q = F.log_softmax(_select(student_logits, m) / temperature, dim=-1)
    per_token = -torch.where(p > 0, p * log_q, 0.0).sum(-1)
    return temperature**2 * _reduce(per_token, reduction)


# ----------------------------------------------------------------------------- DistilHuBERT


class LayerwiseLoss(NamedTuple):
    """:func:`layerwise_distill_loss`'s result: ``loss = Σ_l (l1[l] + λ · cos[l])``.

    ``l1`` and ``cos`` are ``(n_layers,)`` fp32: the per-layer L1 and ``−log σ(cos)`` means
    (``cos`` unweighted by ``λ``); take ``.detach()`` of them for logging.
    """

    loss: torch.Tensor
    l1: torch.Tensor
    cos: torch.Tensor


def layerwise_distill_loss(
    preds: Sequence[torch.Tensor],
    targets: Sequence[torch.Tensor],
    mask: torch.Tensor | None = None,
    *,
    lambda_cos: float = 1.0,
    eps: float = 1e-8,
) -> LayerwiseLoss:
    """DistilHuBERT's layer-to-layer loss (Chang et al. 2022), masked on padded frames.

    For each prediction head ``l`` (``preds[l]``, ``targets[l]``: ``(B, T, D)``, the student
    head's output and the teacher's hidden state it predicts), over the valid frames ``t``::

        L_l = 1/(N·D) Σ_t ‖ĥ_t − h_t‖₁  +  λ · 1/N Σ_t −log σ(cos(ĥ_t, h_t))

    and ``loss = Σ_l L_l`` (the paper's sum over the predicted layers). ``N`` is the number of
    valid frames in the batch (``mask`` ``(B, T)`` bool, ``True`` = real frame; ``None`` = all).
    s3prl's ``DistillerForPretrain.compute_loss`` instead averages over every frame including
    padding, and over the heads (its total is this one divided by the number of heads when
    nothing is padded). ``eps`` is ``cosine_similarity``'s.
    """
    if len(preds) != len(targets) or not preds:
        raise ValueError(f"{len(preds)} predictions for {len(targets)} targets (need ≥ 1 each)")
    l1_parts, cos_parts = [], []
    for i, (pred, target) in enumerate(zip(preds, targets, strict=True)):
        if pred.shape != target.shape or pred.dim() != 3:
            raise ValueError(
                f"layer {i}: prediction {tuple(pred.shape)} and target {tuple(target.shape)} "
                "must both be (B, T, D)"
            )
        m = valid_mask(mask, pred.shape[:2])
        x = _select(pred, m)  # (N, D)
        y = _select(target, m).to(x.device)
        n, dim = x.shape
        l1_parts.append((x - y).abs().sum() / max(n * dim, 1))
        cos = F.cosine_similarity(x, y, dim=-1, eps=eps)
        cos_parts.append(-F.logsigmoid(cos).sum() / max(n, 1))
    l1 = torch.stack(l1_parts)
    cos = torch.stack(cos_parts)
    return LayerwiseLoss((l1 + lambda_cos * cos).sum(), l1, cos)
