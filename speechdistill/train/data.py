"""Training examples for Whisper KD: log-mel features (or cached encoder states) and token ids.

Targets follow Whisper's decoder format. With ``P`` the prompt after ``<|startoftranscript|>``
(``<|lang|><|task|>`` for multilingual models, then ``<|notimestamps|>`` unless the example
uses timestamps):

    decoder input  <|sot|> P  w1 … wn
    labels         P  w1 … wn <|eot|>

An example drawn with timestamps (``timestamp_prob``) has no ``<|notimestamps|>`` and its words
are the timestamped label (``<|0.00|> w1 … <|1.24|>``). With previous-context conditioning (as
in distil-whisper), ``<|startofprev|> c1 … cm`` (the previous utterance's plain label) comes
first and its positions get label -100 (no loss, no KD). Token ids are the teacher's own
(``utt2teacher_tokens``, ``utt2teacher_tokens_ts``) when the targets are the pseudo-labels, so
that training and the RS-KD cache see exactly what the teacher generated (re-tokenising
``text.teacher_ts`` would not give the timestamp tokens back: it is parsed, only for data dirs
without ``utt2teacher_tokens_ts``); other texts are tokenised with a leading space, as Whisper's
transcripts start.

With ``utt2weight`` in the data dir (``sample_weights``), each example carries its utterance's
weight, by which the trainer multiplies every token loss of the example.

In cache mode the RS-KD samples of the label drawn (``rskd`` or ``rskd_ts``) are placed on its
positions, after the prompt and any context. They were drawn with the teacher forced on the
label alone, without the context: an approximation (the online modes give the teacher the
context too); CE uses the label as in every mode.
"""

from __future__ import annotations

import hashlib
import logging
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import torch

from speechdistill.audio import SAMPLE_RATE, AudioReader
from speechdistill.cache import CacheReader
from speechdistill.datadir import DataDir
from speechdistill.datadir.weights import UTT2WEIGHT, read_weights
from speechdistill.train.config import TrainConfig
from speechdistill.train.losses import IGNORE_INDEX, pack_sparse
from speechdistill.whisper.language import resolve_language
from speechdistill.whisper.tokens import is_multilingual

log = logging.getLogger(__name__)

_TIMESTAMP = re.compile(r"<\|(\d+\.\d+)\|>")
_TIME_PRECISION = 0.02  # seconds per timestamp token


class Targets(NamedTuple):
    """An example's decoder inputs and labels; ``start``: the label index of the first word
    token (where the RS-KD samples begin); ``timestamps``: drawn with the timestamped label."""

    inputs: list[int]
    labels: list[int]
    start: int
    timestamps: bool


@dataclass
class Prompt:
    """The special tokens of a model's decoder prompt."""

    sot: int
    eot: int
    prev: int | None
    no_timestamps: int
    prefix: list[int]  # between <|sot|> and <|notimestamps|>: language and task, or nothing

    @classmethod
    def from_model(cls, generation_config, tokenizer, language: str | None, task: str) -> Prompt:
        gen = generation_config
        prefix: list[int] = []
        if is_multilingual(gen):
            token = resolve_language(language, gen.lang_to_id, "the student")
            if token is None:
                raise ValueError("a multilingual student needs --language (the prompt's language)")
            prefix = [gen.lang_to_id[token], gen.task_to_id[task]]
        else:
            resolve_language(language, None, "the student")  # English, or refused
        prev = tokenizer.convert_tokens_to_ids("<|startofprev|>")
        return cls(
            sot=gen.decoder_start_token_id,
            eot=gen.eos_token_id,
            prev=prev if isinstance(prev, int) and prev != tokenizer.unk_token_id else None,
            no_timestamps=gen.no_timestamps_token_id,
            prefix=prefix,
        )


def sample_weights_file(data_dir: str | Path, mode: str) -> Path | None:
    """The data dir's ``utt2weight`` when training uses it (``sample_weights``: ``auto`` when it
    exists, ``true`` required, ``false`` never), else None."""
    path = Path(data_dir) / UTT2WEIGHT
    if mode == "false":
        if path.is_file():
            log.info("%s: ignored (sample_weights=false)", path)
        return None
    if not path.is_file():
        if mode == "true":
            raise FileNotFoundError(
                f"{path}: no such file (sample_weights=true needs it; `speechdistill filter "
                "--mode weight` or `--weight SCORE` writes it)"
            )
        return None
    return path


def _rng(seed: int, epoch: int, utt: str) -> np.random.Generator:
    digest = hashlib.sha256(f"{seed}:{epoch}:{utt}".encode()).digest()
    return np.random.default_rng(int.from_bytes(digest[:8], "little"))


class KDDataset(torch.utils.data.Dataset):
    """The utterances of a (pseudo-labelled, filtered) data dir as Whisper KD examples.

    Each item: ``utt``, ``input_features`` (80/128 × 3000, float32) or ``encoder_states``
    (cache, ``cached_states``), ``decoder_input_ids`` and ``labels`` (lists of ints), ``rskd``
    + ``rskd_start`` with the cache, and ``weight`` with ``weights_file`` (``utt2weight``: every
    training utterance needs one). Random choices (timestamps, previous context) depend on
    (seed, epoch, utterance) only, so a resumed run makes the same ones. ``cached_states=False``:
    the cache gives the RS-KD samples only and each item has ``input_features`` (a student whose
    encoder is not the teacher's runs its own).
    """

    def __init__(
        self,
        data_dir: str | Path,
        processor,
        generation_config,
        config: TrainConfig,
        *,
        cache: CacheReader | None = None,
        weights_file: str | Path | None = None,
        cached_states: bool = True,
    ):
        self.dir = DataDir(data_dir)
        self.processor = processor
        self.tokenizer = processor.tokenizer
        self.config = config
        self.cache = cache
        self.cached_states = cache is not None and cached_states
        self.prompt = Prompt.from_model(generation_config, self.tokenizer, config.language,
                                        config.task)  # fmt: skip
        self.epoch = 0
        self.audio = AudioReader(self.dir)  # wav.scp, with segments where the dir has them
        if not self.dir.exists(config.label_file):
            raise FileNotFoundError(f"{self.dir.file(config.label_file)}: no targets to train on")
        texts = self.dir.read(config.label_file)
        teacher_ids = {}
        if config.label_file == "text.teacher" and self.dir.exists("utt2teacher_tokens"):
            teacher_ids = {u: [int(t) for t in v.split()]
                           for u, v in self.dir.read("utt2teacher_tokens").items()}  # fmt: skip
        ts_ids = self._timestamped_ids() if config.timestamp_prob > 0 else {}
        self.ids: dict[str, list[int]] = {}
        self.ids_ts: dict[str, list[int]] = {}
        skipped: list[str] = []
        no_audio: list[str] = []
        for utt in sorted(texts):
            if utt not in self.audio:
                no_audio.append(utt)
                continue
            ids = teacher_ids.get(utt)
            if ids is not None:
                if not ids or ids[-1] != self.prompt.eot:  # cut at max_new_tokens: incomplete
                    skipped.append(utt)
                    continue
                # without timestamp tokens (older releases kept them there with --timestamps)
                ids = [t for t in ids[:-1] if t <= self.prompt.no_timestamps]
            else:
                ids = self._encode(texts[utt])
            if not self._fits(ids):
                skipped.append(utt)
                continue
            if cache is not None and not (
                cache.has("rskd", utt) and (cache.has("encoder", utt) or not self.cached_states)
            ):
                skipped.append(utt)
                continue
            self.ids[utt] = ids
            ts = ts_ids.get(utt)
            if (
                ts
                and ts[-1] == self.prompt.eot
                and self._fits(ts[:-1], timestamps=True)
                and (cache is None or cache.has("rskd_ts", utt))
            ):
                self.ids_ts[utt] = ts[:-1]
        if ts_ids and len(self.ids_ts) < len(self.ids):
            log.warning(
                "%s: %d of %d utterances have no usable timestamped label (cut short, over %d "
                "tokens, or not in the cache): trained without timestamps",
                self.dir.path, len(self.ids) - len(self.ids_ts), len(self.ids),
                config.max_label_tokens,
            )  # fmt: skip
        if no_audio:
            log.warning(
                "%s: %d utterances of %s skipped: not in %s: %s",
                self.dir.path, len(no_audio), config.label_file,
                "segments" if self.dir.has_segments else "wav.scp", " ".join(no_audio[:10]),
            )  # fmt: skip
        if skipped:
            log.warning(
                "%s: %d utterances skipped (labels over %d tokens, cut short, or not in the "
                "cache): %s",
                self.dir.path, len(skipped), config.max_label_tokens, " ".join(skipped[:10]),
            )  # fmt: skip
        if not self.ids:
            raise ValueError(f"{self.dir.path}: no utterance to train on")
        self.utts = list(self.ids)
        self.weights = None if weights_file is None else self._weights(Path(weights_file))
        self.utt2spk = self.dir.utt2spk()
        self._prev = self._previous_utterances()

    def __len__(self) -> int:
        return len(self.utts)

    def _weights(self, path: Path) -> dict[str, float]:
        weights = read_weights(path)
        missing = [u for u in self.utts if u not in weights]
        if missing:
            raise ValueError(
                f"{path}: no weight for {len(missing)} of the {len(self.utts)} training "
                f"utterances (e.g. {missing[0]!r})"
            )
        return {u: weights[u] for u in self.utts}

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def _fits(self, words: list[int], timestamps: bool = False) -> bool:
        head = len(self.prompt.prefix) + (1 if timestamps else 2)  # <|sot|> P (<|notimestamps|>)
        return len(words) + head <= self.config.max_label_tokens

    def _encode(self, text: str) -> list[int]:
        text = " ".join(text.split())
        return self.tokenizer(" " + text, add_special_tokens=False).input_ids if text else []

    def _timestamped_ids(self) -> dict[str, list[int]]:
        """The timestamped labels' ids, EOS included: ``utt2teacher_tokens_ts`` as generated, or
        (older pseudo-labels) parsed from ``text.teacher_ts``. Refused if the cache has none."""
        cache, d = self.cache, self.dir
        if cache is not None and "rskd_ts" not in cache.index.shards:
            raise ValueError(
                f"cache {cache.dir} has no RS-KD samples of timestamped labels (timestamp_prob > "
                "0): pseudo-label with --timestamps --cache-encoder --rskd-k K"
            )
        if self.config.label_file == "text.teacher" and d.exists("utt2teacher_tokens_ts"):
            return {u: [int(t) for t in v.split()]
                    for u, v in d.read("utt2teacher_tokens_ts").items()}  # fmt: skip
        if not d.exists("text.teacher_ts"):
            raise FileNotFoundError(
                f"timestamp_prob > 0 needs {d.file('text.teacher_ts')} "
                "(pseudo-label with --timestamps)"
            )
        return {
            u: [*self._encode_ts(v), self.prompt.eot] for u, v in d.read("text.teacher_ts").items()
        }

    def _encode_ts(self, text: str) -> list[int]:
        """Token ids of ``<|0.00|> w1 … <|1.24|>`` text: timestamp tokens by their time (the
        tokenizer may not know them), the text between them as it reads."""
        ids: list[int] = []
        pieces = _TIMESTAMP.split(text)
        for i, piece in enumerate(pieces):
            if i % 2:
                step = round(float(piece) / _TIME_PRECISION)
                ids.append(self.prompt.no_timestamps + 1 + step)
            elif piece:
                ids += self.tokenizer(piece, add_special_tokens=False).input_ids
        return ids

    def _previous_utterances(self) -> dict[str, str]:
        """Each utterance's predecessor of the same speaker (in id order), for context."""
        prev: dict[str, str] = {}
        last: dict[str, str] = {}
        for utt in self.utts:
            spk = self.utt2spk.get(utt)
            if spk in last:
                prev[utt] = last[spk]
            last[spk] = utt
        return prev

    def targets(self, utt: str, rng: np.random.Generator) -> Targets:
        """The decoder inputs and labels of ``utt``, with timestamps and context as drawn."""
        p, cfg = self.prompt, self.config
        use_ts = cfg.timestamp_prob > 0 and rng.random() < cfg.timestamp_prob and utt in self.ids_ts
        if use_ts:
            words = self.ids_ts[utt]
            head = list(p.prefix)
        else:
            words = self.ids[utt]
            head = [*p.prefix, p.no_timestamps]
        labels = [*head, *words, p.eot]
        inputs = [p.sot, *labels[:-1]]
        start = len(head)
        prev = self._prev.get(utt)
        draw = rng.random()  # drawn always, so that the stream does not depend on prev
        if (
            cfg.prev_context_prob > 0
            and prev
            and p.prev is not None
            and draw < cfg.prev_context_prob
        ):
            # a timestamped example is prompted with the previous label's timestamped ids, as
            # sequential long-form decoding prompts with the previous window's tokens
            source = self.ids_ts if use_ts and prev in self.ids_ts else self.ids
            context = source[prev][-(cfg.max_label_tokens // 2) :]
            inputs = [p.prev, *context, *inputs]
            labels = [IGNORE_INDEX] * (1 + len(context)) + labels
            start += 1 + len(context)
        return Targets(inputs, labels, start, use_ts)

    def __getitem__(self, index: int) -> dict[str, Any]:
        utt = self.utts[index]
        rng = _rng(self.config.seed, self.epoch, utt)
        t = self.targets(utt, rng)
        item: dict[str, Any] = {"utt": utt, "decoder_input_ids": t.inputs, "labels": t.labels}
        if self.weights is not None:
            item["weight"] = self.weights[utt]
        if self.cache is not None:
            kind, words = ("rskd_ts", self.ids_ts[utt]) if t.timestamps else ("rskd", self.ids[utt])
            rskd = self.cache.rskd(utt, kind)
            if rskd[2].numel() - 1 != len(words) + 1:
                raise ValueError(
                    f"{utt}: the RS-KD cache ({kind}) has {rskd[2].numel() - 1} positions but the "
                    f"label {len(words) + 1} tokens: train on the pseudo-labels of that cache "
                    "(text.teacher with its utt2teacher_tokens and utt2teacher_tokens_ts)"
                )
            item["rskd"] = rskd
            item["rskd_start"] = t.start
        if self.cached_states:
            item["encoder_states"] = self.cache.encoder(utt)
        else:
            audio = self.audio(utt)
            feats = self.processor.feature_extractor(
                audio, sampling_rate=SAMPLE_RATE, return_tensors="np"
            ).input_features[0]
            item["input_features"] = torch.from_numpy(feats)
        return item


def collate(items: Sequence[dict[str, Any]], pad_id: int) -> dict[str, Any]:
    """Pad a batch: decoder inputs with ``pad_id``, labels with -100; stack features/states."""
    width = max(len(it["decoder_input_ids"]) for it in items)
    inputs = torch.full((len(items), width), pad_id, dtype=torch.long)
    labels = torch.full((len(items), width), IGNORE_INDEX, dtype=torch.long)
    for i, it in enumerate(items):
        inputs[i, : len(it["decoder_input_ids"])] = torch.tensor(it["decoder_input_ids"])
        labels[i, : len(it["labels"])] = torch.tensor(it["labels"])
    batch: dict[str, Any] = {
        "utts": [it["utt"] for it in items],
        "decoder_input_ids": inputs,
        "labels": labels,
    }
    if "weight" in items[0]:
        batch["utt_weights"] = torch.tensor([it["weight"] for it in items], dtype=torch.float32)
    if "input_features" in items[0]:
        batch["input_features"] = torch.stack([it["input_features"] for it in items])
    if "encoder_states" in items[0]:
        batch["encoder_states"] = torch.stack([it["encoder_states"] for it in items])
    if "rskd" in items[0]:
        batch["sparse"] = pack_sparse(
            [it["rskd"] for it in items], pad_to=width, starts=[it["rskd_start"] for it in items]
        )
    return batch
