"""Whisper transcription with CTranslate2 (``ctranslate2.models.Whisper``): greedy, in the 30 s
window, after the plain prompt ``<|startoftranscript|> [<|lang|> <|transcribe|>]
<|notimestamps|>``. Needs the optional ``ctranslate2`` (``pip install 'speechdistill[ct2]'``)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from speechdistill.utils import PathLike
from speechdistill.whisper.language import model_languages, resolve_language
from speechdistill.whisper.tokens import SAMPLE_RATE

__all__ = ["CT2Transcriber"]


class CT2Transcriber:
    """Greedy decoding with a CTranslate2 Whisper model directory (``model.bin`` with the
    ``tokenizer.json`` beside it); ``language`` is required for a multilingual model."""

    def __init__(
        self,
        model_dir: PathLike,
        device: str = "cpu",
        language: str | None = None,
        max_new_tokens: int | None = None,
    ):
        try:
            import ctranslate2
        except ImportError:
            raise RuntimeError(
                f"{model_dir} is a CTranslate2 model, which needs ctranslate2: "
                "pip install 'speechdistill[ct2]'"
            ) from None
        from tokenizers import Tokenizer
        from transformers import WhisperFeatureExtractor

        path = Path(model_dir)
        lang_to_id = model_languages(path)  # the importer's rule (not CTranslate2's flag)
        token = resolve_language(language, lang_to_id, f"the model ({path})")
        self._ct2 = ctranslate2
        self.max_length = 448 if max_new_tokens is None else max_new_tokens
        self.model = ctranslate2.models.Whisper(str(path), device=device, compute_type="default")
        if (path / "preprocessor_config.json").is_file():
            self.features = WhisperFeatureExtractor.from_pretrained(str(path))
        else:
            self.features = WhisperFeatureExtractor(feature_size=self.model.n_mels)
        if not (path / "tokenizer.json").is_file():
            raise ValueError(f"{path}: no tokenizer.json beside the CTranslate2 model")
        self.tokenizer = Tokenizer.from_file(str(path / "tokenizer.json"))
        prompt = ["<|startoftranscript|>"]
        if lang_to_id:
            if token is None:
                raise ValueError(
                    f"{path} is multilingual: give its language (a filter proxy's: "
                    "--proxy-language)"
                )
            prompt += [token, "<|transcribe|>"]
        prompt.append("<|notimestamps|>")
        self.prompt = [self.tokenizer.token_to_id(t) for t in prompt]
        if None in self.prompt:
            raise ValueError(f"{path}: the tokenizer lacks one of {prompt}")

    def transcribe(self, audios: Sequence[np.ndarray]) -> list[str]:
        """One text per waveform."""
        feats = self.features(list(audios), sampling_rate=SAMPLE_RATE, return_tensors="np")
        storage = self._ct2.StorageView.from_array(
            np.ascontiguousarray(feats.input_features, dtype=np.float32)
        )
        results = self.model.generate(
            storage, [self.prompt] * len(audios), beam_size=1, max_length=self.max_length
        )
        texts = [
            self.tokenizer.decode(r.sequences_ids[0], skip_special_tokens=True) for r in results
        ]
        return [" ".join(t.split()) for t in texts]
