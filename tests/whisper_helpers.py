"""Helpers shared by the Whisper tests of both tiers: checks of an initialised student against
its teacher, and CTranslate2 labelers that share a loaded model."""

from __future__ import annotations

import re
from pathlib import Path

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
