"""Settings of the pseudo-label stage and the label of one utterance."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import torch

from speechdistill.whisper.heuristics import text_stats
from speechdistill.whisper.tokens import WINDOW_SECONDS

__all__ = ["WORK_DIR", "PseudoLabelConfig", "UttLabel", "check_window", "plain_labels"]

#: The stage's resumable work (plan and per-shard results) inside the output dir.
WORK_DIR = ".pseudo_label"


@dataclass
class PseudoLabelConfig:
    """Settings of the stage. All but ``device`` decide the output, and are checked on resume."""

    batch_size: int = 16
    num_beams: int = 1
    language: str | None = None
    task: str = "transcribe"
    return_timestamps: bool = False
    max_new_tokens: int | None = None
    dtype: str | None = None
    backend: str = "hf"
    #: Encoder input in seconds: 30 = Whisper's window (exact). Shorter windows (used only when
    #: every clip of the batch is at least 2 s shorter) are faster but change the labels.
    encoder_window: float = WINDOW_SECONDS
    cache_encoder: bool = False
    rskd_k: int = 0
    rskd_temperature: float = 1.0
    seed: int = 0
    #: Longer utterances are skipped (counted, listed in ``bad_utts``), never truncated: at most
    #: Whisper's 30 s window, which the teacher sees whole.
    max_duration: float = WINDOW_SECONDS
    device: str = "cpu"

    def identity(self) -> dict[str, Any]:
        d = asdict(self)
        d.pop("device")
        return d


def check_window(utt_ids: Sequence[str], durations: Sequence[float]) -> None:
    """Refuse audio longer than Whisper's window: the feature extractor would cut it silently."""
    for utt, dur in zip(utt_ids, durations, strict=True):
        if dur > WINDOW_SECONDS:
            raise ValueError(
                f"{utt}: {dur:.1f} s is longer than the teacher's {WINDOW_SECONDS:g} s window "
                "(its label would be truncated); skip or segment it"
            )


def plain_labels(
    timestamped: Sequence[list[int]], timestamp_begin: int, eos: int
) -> list[list[int] | None]:
    """The plain label of each timestamped decode (its tokens without the timestamp tokens), or
    None where the decode is incomplete: it does not end with ``text <|t|> EOS`` (a lone
    timestamp after a closed segment hands the rest of the window to the next one; no EOS is the
    length limit), so its text would miss the window's tail."""
    out: list[list[int] | None] = []
    for h in timestamped:
        body = h[:-1] if h and h[-1] == eos else None
        complete = (
            body is not None
            and len(body) >= 2
            and body[-1] >= timestamp_begin
            and body[-2] < timestamp_begin
        )
        out.append([t for t in h if t < timestamp_begin] if complete else None)
    return out


@dataclass
class UttLabel:
    """The teacher's label of one utterance and what came with it.

    ``tokens`` is the plain label (trained on after ``<|notimestamps|>``); with timestamps,
    ``tokens_ts`` is the decode with timestamp tokens (it may stop early with a lone timestamp,
    handing the rest to the next window, as Whisper does; the plain label is then decoded on
    its own, see :func:`plain_labels`). ``rskd``/``rskd_ts`` are the RS-KD samples of each,
    teacher-forced after its own prompt. ``lang``: a multilingual teacher's most likely
    language (``pt``), with ``stats["lang_prob"]`` the probability of the prompt's language.
    """

    utt: str
    text: str
    stats: dict[str, float]
    tokens: list[int] = field(default_factory=list)
    lang: str | None = None
    text_ts: str | None = None
    tokens_ts: list[int] | None = None
    encoder: torch.Tensor | None = None
    rskd: tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None = None
    rskd_ts: tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None = None

    @classmethod
    def from_tokens(
        cls,
        utt: str,
        tokens: list[int],
        stats: dict[str, float],
        decode: Callable[..., str],
        duration: float,
    ) -> UttLabel:
        """The plain label of ``tokens`` (the teacher's output), decoded with the tokenizer's
        ``decode``: its text, and ``stats`` completed with the text heuristics."""
        text = " ".join(decode(tokens, skip_special_tokens=True).split())
        stats.update(text_stats(text, duration))
        return cls(utt, text, stats, tokens=tokens)

    def add_timestamps(self, tokens: list[int], decode: Callable[..., str]) -> None:
        """Add the timestamped label: ``tokens`` from a decode with timestamps."""
        ts = decode(tokens, skip_special_tokens=True, decode_with_timestamps=True)
        self.tokens_ts = tokens
        self.text_ts = " ".join(ts.split())
