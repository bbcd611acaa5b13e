"""Decoding without the real teacher: length-sorted batches, the language and task in a tiny
random multilingual model's prompt. With tiny.en: integration/test_decode_tiny_en.py."""

from __future__ import annotations

import numpy as np
import pytest

from speechdistill.batching import length_sorted_batches
from speechdistill.inference.whisper import DecodeConfig, WhisperTranscriber


def test_length_sorted_batches_groups_similar_lengths():
    durs = {"a": 1.0, "b": 5.0, "c": 2.0, "d": 4.0, "e": 3.0}
    assert length_sorted_batches(durs, 2) == [["b", "d"], ["e", "c"], ["a"]]
    assert length_sorted_batches(durs, 2, longest_first=False) == [["a", "c"], ["e", "d"], ["b"]]
    with pytest.raises(ValueError, match="batch size"):
        length_sorted_batches(durs, 0)


def test_multilingual_language_and_task_reach_the_prompt(tmp_path):
    """For a multilingual model the prompt carries the asked language and task; an English-only
    model refuses another language."""
    from speechdistill.testing import english_tokenizer, multilingual_tokenizer, save_random_whisper

    model_dir = save_random_whisper(
        tmp_path / "ml",
        multilingual_tokenizer(tmp_path, n_langs=5, v3=False),
        multilingual=True,
        max_source_positions=1500,
    )
    audio = np.random.default_rng(0).standard_normal(16000).astype(np.float32) * 0.1
    for task in ("transcribe", "translate"):
        config = DecodeConfig(language="de", task=task, max_new_tokens=3)
        t = WhisperTranscriber.from_pretrained(model_dir, config)
        gen = t.model.generation_config
        seen: list[list[int]] = []  # the decoder's input at the first generation step

        def hook(_module, args, kwargs, seen=seen):
            ids = kwargs.get("input_ids", args[0] if args else None)
            if not seen:
                seen.append(ids[0].tolist())

        handle = t.model.model.decoder.register_forward_pre_hook(hook, with_kwargs=True)
        try:
            t.generate([audio])
        finally:
            handle.remove()
        assert seen[0] == [
            gen.decoder_start_token_id,
            gen.lang_to_id["<|de|>"],
            gen.task_to_id[task],
            gen.no_timestamps_token_id,
        ]
    en_dir = save_random_whisper(tmp_path / "en", english_tokenizer(), multilingual=False)
    with pytest.raises(ValueError, match="English-only"):
        WhisperTranscriber.from_pretrained(en_dir, DecodeConfig(language="pt"))
