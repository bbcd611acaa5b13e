"""Per-utterance statistics of a transcript: from the teacher's raw logits and from the text.

Higher/lower conventions are those of the quantities themselves (log-probabilities ≤ 0, entropies
in nats); :mod:`speechdistill.filter` turns them into "higher = better" scores.
"""

from __future__ import annotations

import zlib

import torch

__all__ = [
    "STATS",
    "TEXT_STATS",
    "TOKEN_STATS",
    "compression_ratio",
    "max_ngram_repeat",
    "text_stats",
    "token_stats",
]

#: Statistics written by the pseudo-label stage, one ``utt2<name>`` file each.
TOKEN_STATS = ("avg_logprob", "entropy_mean", "entropy_max", "min_token_prob", "num_tokens")
TEXT_STATS = ("compression_ratio", "max_ngram_repeat", "chars_per_sec")
STATS = (*TOKEN_STATS, "no_speech_prob", *TEXT_STATS)


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


def compression_ratio(text: str) -> float:
    """Bytes of the UTF-8 text over bytes of its zlib compression (Whisper's repetition check).

    Repetitive text compresses well, so loops score high (Whisper's threshold is 2.4);
    0.0 for an empty text.
    """
    data = text.encode("utf-8")
    return len(data) / len(zlib.compress(data)) if data else 0.0


def max_ngram_repeat(text: str, max_n: int = 4) -> int:
    """Largest number of consecutive repetitions of any word n-gram (n = 1..max_n).

    1 means no n-gram is immediately repeated; "a b a b a b" gives 3, and so does "no, no, no."
    (punctuation at the ends of words is ignored); 0 for an empty text.
    """
    words = [w.strip(".,;:!?\"'()[]") for w in text.lower().split()]
    words = [w for w in words if w]
    if not words:
        return 0
    best = 1
    for n in range(1, max_n + 1):
        for start in range(len(words) - n + 1):
            gram = words[start : start + n]
            count = 1
            pos = start + n
            while words[pos : pos + n] == gram:
                count += 1
                pos += n
            best = max(best, count)
    return best


def text_stats(text: str, duration: float) -> dict[str, float]:
    """``compression_ratio``, ``max_ngram_repeat`` and ``chars_per_sec`` of a transcript."""
    return {
        "compression_ratio": compression_ratio(text),
        "max_ngram_repeat": max_ngram_repeat(text),
        "chars_per_sec": len(text) / duration if duration > 0 else 0.0,
    }
