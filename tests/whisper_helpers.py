"""Helpers shared by the Whisper tests of both tiers: checks of an initialised student against
its teacher, CTranslate2 labelers that share a loaded model, greedy transcripts compared with
CTranslate2's own, and espeak-ng clips in any voice."""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file
from transformers import GenerationConfig

from speechdistill.pseudo_label import PseudoLabelConfig
from speechdistill.pseudo_label.ct2 import CT2Labeler

LAYER = re.compile(r"^model\.(encoder|decoder)\.layers\.(\d+)\.(.+)$")


def check_student_tensors(
    teacher: Path, student: Path, enc_map: list[int], dec_map: list[int]
) -> None:
    """Every student tensor is its mapped teacher tensor; nothing else is there."""
    t, s = load_file(teacher / "model.safetensors"), load_file(student / "model.safetensors")
    maps = {"encoder": enc_map, "decoder": dec_map}
    suffixes: dict[str, set[str]] = {"encoder": set(), "decoder": set()}
    n_layers = {"encoder": 0, "decoder": 0}
    for key in t:
        if m := LAYER.match(key):
            suffixes[m[1]].add(m[3])
            n_layers[m[1]] = max(n_layers[m[1]], int(m[2]) + 1)
    expected_keys = {k for k in t if not LAYER.match(k)}
    for stack, mp in maps.items():
        expected_keys |= {
            f"model.{stack}.layers.{i}.{r}" for i in range(len(mp)) for r in suffixes[stack]
        }
    assert set(s) == expected_keys
    for key, value in s.items():
        m = LAYER.match(key)
        tkey = key if m is None else f"model.{m[1]}.layers.{maps[m[1]][int(m[2])]}.{m[3]}"
        assert value.dtype == t[tkey].dtype and torch.equal(value, t[tkey]), key
    # The dropped teacher layers' tensors appear nowhere in the student.
    for stack, mp in maps.items():
        for layer in sorted(set(range(n_layers[stack])) - set(mp)):
            for r in suffixes[stack]:
                dropped = t[f"model.{stack}.layers.{layer}.{r}"]
                assert not any(
                    torch.equal(dropped, s[f"model.{stack}.layers.{i}.{r}"]) for i in range(len(mp))
                )


def generation_dict(path: Path) -> dict:
    """A model dir's generation config as a dict, without the transformers version."""
    d = GenerationConfig.from_pretrained(path).to_dict()
    d.pop("transformers_version", None)
    return d


def ct2_like(labeler: CT2Labeler, config: PseudoLabelConfig) -> CT2Labeler:
    """A CT2Labeler with another config, sharing ``labeler``'s loaded model and tokenizer."""
    return CT2Labeler(
        labeler.model,
        labeler.tokenizer,
        labeler.feature_extractor,
        config,
        lang_to_id=labeler.lang_to_id,
        max_length=labeler.max_length,
    )


def greedy_matches_ct2(
    model,
    processor,
    ct2_model,
    audios: Sequence[np.ndarray],
    prompt: list[int],
    max_new_tokens: int | None = None,
    **generate,
) -> tuple[int, torch.Tensor]:
    """How many of ``audios`` get the same greedy transcript from the transformers ``model``
    (``generate``: its prompt options, e.g. ``language="pt"``) as from ``ct2_model``
    (``ctranslate2.models.Whisper``) given ``prompt``, on the same features; and the features.
    ``max_new_tokens``: compare the first that many tokens (a teacher stuck repeating itself
    takes long to reach Whisper's 448)."""
    import ctranslate2

    feats = processor.feature_extractor(
        list(audios), sampling_rate=16000, return_tensors="pt"
    ).input_features
    limit = {} if max_new_tokens is None else {"max_new_tokens": max_new_tokens}
    with torch.inference_mode():
        out = model.generate(
            feats, do_sample=False, num_beams=1, return_dict_in_generate=True, **limit, **generate
        )
    refs = ct2_model.generate(
        ctranslate2.StorageView.from_array(feats.numpy()),
        [prompt] * len(audios),
        beam_size=1,
        max_length=448 if max_new_tokens is None else len(prompt) + max_new_tokens + 2,
    )
    gen = model.generation_config
    matched = 0
    for seq, ref in zip(out.sequences.tolist(), refs, strict=True):
        assert seq[: len(prompt)] == prompt
        ours = [t for t in seq[len(prompt) :] if t not in (gen.eos_token_id, gen.pad_token_id)]
        matched += ours == ref.sequences_ids[0][:max_new_tokens]
    return matched, feats


def espeak_clips(texts: Sequence[str], voice: str, speed: int = 160) -> list[np.ndarray]:
    """``texts`` spoken by espeak-ng's ``voice``: 16 kHz float32 clips (mini_en's synthesis)."""
    from data_prep.mini_en.plan import Utterance
    from data_prep.mini_en.synthesis import find_espeak, synthesize

    espeak = find_espeak()
    clips = []
    for i, text in enumerate(texts):
        utt = Utterance(f"u{i}", "test", "s", voice, text, speed, 50, 100, 1, voice)
        clips.append(synthesize(utt, espeak).astype(np.float32) / 32768.0)
    return clips
