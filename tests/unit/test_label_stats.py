"""Label statistics on hand-checkable cases."""

from __future__ import annotations

import math
import zlib

import pytest
import torch

from speechdistill.pseudo_label.stats import token_stats
from speechdistill.whisper.heuristics import compression_ratio, max_ngram_repeat, text_stats


def test_token_stats_of_known_distributions():
    v = 8
    uniform = torch.zeros(1, v)
    peaked = torch.full((1, v), -1e4)
    peaked[0, 3] = 0.0
    logits = torch.cat([uniform, peaked])
    tokens = torch.tensor([5, 3])
    s = token_stats(logits, tokens)
    assert s["entropy_max"] == pytest.approx(math.log(v), abs=1e-5)  # uniform over 8 tokens
    assert s["entropy_mean"] == pytest.approx(math.log(v) / 2, abs=1e-5)  # and a one-hot
    assert s["avg_logprob"] == pytest.approx((math.log(1 / v) + 0.0) / 2, abs=1e-5)
    assert s["min_token_prob"] == pytest.approx(1 / v, abs=1e-6)
    assert s["num_tokens"] == 2


def test_token_stats_two_token_distribution():
    logits = torch.log(torch.tensor([[0.25, 0.75]]))
    s = token_stats(logits, torch.tensor([0]))
    h = -(0.25 * math.log(0.25) + 0.75 * math.log(0.75))
    assert s["entropy_mean"] == pytest.approx(h, abs=1e-6)
    assert s["avg_logprob"] == pytest.approx(math.log(0.25), abs=1e-6)
    with pytest.raises(ValueError, match="disagree"):
        token_stats(logits, torch.tensor([0, 1]))
    assert math.isnan(token_stats(torch.zeros(0, 2), torch.zeros(0))["avg_logprob"])


def test_compression_ratio_flags_repetition():
    normal = "we stayed in a farmhouse surrounded by old trees near the river"
    loop = "thank you " * 30
    assert compression_ratio(loop) > 2.4 > compression_ratio(normal)  # Whisper's threshold
    data = normal.encode()
    assert compression_ratio(normal) == len(data) / len(zlib.compress(data))
    assert compression_ratio("") == 0.0


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("", 0),
        ("the cat sat on the mat", 1),
        ("no no no", 3),
        ("I said the cat the cat the cat the cat sat", 4),
        ("a b c a b c", 2),
        ("a b c d a b c d a b c d", 3),
        ("a b c d e a b c d e", 1),  # 5-grams are beyond max_n=4
        ("Yes YES yes", 3),
        ("no, no, no.", 3),
        ("... !!", 0),
    ],
)
def test_max_ngram_repeat(text, expected):
    assert max_ngram_repeat(text) == expected


def test_text_stats_chars_per_second():
    s = text_stats("hello world", 2.0)
    assert s["chars_per_sec"] == pytest.approx(11 / 2)
    assert text_stats("x", 0.0)["chars_per_sec"] == 0.0
