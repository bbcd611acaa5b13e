"""Per-utterance statistics of a pseudo-label: from the teacher's raw logits
(:func:`token_stats`) and from the text (:mod:`speechdistill.whisper.heuristics`).

Higher/lower conventions are those of the quantities themselves (log-probabilities ≤ 0, entropies
in nats); :mod:`speechdistill.filter` turns them into "higher = better" scores.
"""

from __future__ import annotations

import torch

from speechdistill.whisper.heuristics import TEXT_STATS

__all__ = ["LANGUAGE_STAT", "STATS", "TOKEN_STATS", "language_probs", "token_stats"]

#: Statistics written by the pseudo-label stage, one ``utt2<name>`` file each.
TOKEN_STATS = ("avg_logprob", "entropy_mean", "entropy_max", "min_token_prob", "num_tokens")
STATS = (*TOKEN_STATS, "no_speech_prob", *TEXT_STATS)
#: A multilingual teacher's probability of the prompt's language (``utt2lang_prob``; the most
#: likely language is ``utt2lang``).
LANGUAGE_STAT = "lang_prob"


def language_probs(sot_logits: torch.Tensor, lang_ids: list[int]) -> torch.Tensor:
    """The probability of each language token at the first decoder step: a softmax over the
    language tokens only (``lang_ids``) of the raw logits after ``<|startoftranscript|>``, as
    Whisper's language detection computes it."""
    return torch.softmax(sot_logits.float()[..., lang_ids], dim=-1)


def token_stats(logits: torch.Tensor, tokens: torch.Tensor) -> dict[str, float]:
    """Statistics of generated ``tokens`` (T,) under the raw ``logits`` (T, V) that predicted them.

    ``avg_logprob``: mean log-probability of the tokens (EOS included, as Whisper does);
    ``entropy_mean``/``entropy_max``: entropy of each step's distribution over the full
    vocabulary (nats); ``min_token_prob``: probability of the least likely token.
    """
    if logits.ndim != 2 or tokens.ndim != 1 or logits.shape[0] != tokens.shape[0]:
        raise ValueError(f"logits {tuple(logits.shape)} and tokens {tuple(tokens.shape)} disagree")
    if tokens.numel() == 0:
        nan = float("nan")
        return {"avg_logprob": nan, "entropy_mean": nan, "entropy_max": nan,
                "min_token_prob": nan, "num_tokens": 0}  # fmt: skip
    logp = torch.log_softmax(logits.float(), dim=-1)
    chosen = logp.gather(1, tokens.long().unsqueeze(1)).squeeze(1)
    entropy = -(logp.exp() * logp).sum(-1)
    return {
        "avg_logprob": chosen.mean().item(),
        "entropy_mean": entropy.mean().item(),
        "entropy_max": entropy.max().item(),
        "min_token_prob": chosen.min().exp().item(),
        "num_tokens": int(tokens.numel()),
    }
