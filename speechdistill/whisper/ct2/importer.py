"""CTranslate2 → transformers: :func:`import_ct2` turns a CTranslate2 Whisper model directory
(``model.bin``, ``config.json``, ``tokenizer.json``, ``vocabulary.{json,txt}``) into a
transformers one: ``WhisperForConditionalGeneration`` weights (safetensors), ``config.json``,
``generation_config.json`` and the ``WhisperProcessor`` (tokenizer + feature extractor).
"""

from __future__ import annotations

import logging
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from speechdistill.utils import PathLike, staging_dir
from speechdistill.whisper.ct2.binary import (
    ConversionError,
    CT2Model,
    read_model_bin,
)
from speechdistill.whisper.ct2.processor import (
    build_feature_extractor,
    build_tokenizer,
    language_ids,
    read_json,
    read_vocabulary,
)
from speechdistill.whisper.tokens import MAX_INITIAL_TIMESTAMP_INDEX, MULTILINGUAL_MIN_VOCAB

log = logging.getLogger(__name__)

__all__ = ["IMPORT_DTYPES", "SUPPORTED_SPECS", "import_ct2"]

#: Spec names and the highest revision whose variable layout we know.
SUPPORTED_SPECS = {"WhisperSpec": 3}
#: Weight types of the imported model (``auto``: the stored float type).
IMPORT_DTYPES = ("float32", "float16", "bfloat16", "auto")
#: ``common_spec.Activation.GELU``: the only activation Whisper uses.
_CT2_GELU = 3


def _count_layers(ct2: CT2Model, prefix: str) -> int:
    pat = re.compile(rf"^{prefix}/layer_(\d+)/")
    ids = {int(m.group(1)) for n in ct2.variables if (m := pat.match(n))}
    if not ids or ids != set(range(len(ids))):
        raise ConversionError(f"{ct2.path}: no contiguous {prefix}/layer_<i> variables found")
    return len(ids)


def _torch_dtype(dtype: str, ct2: CT2Model):
    import torch

    if dtype not in IMPORT_DTYPES:
        raise ConversionError(f"unknown dtype {dtype!r}: choose one of {', '.join(IMPORT_DTYPES)}")
    if dtype == "auto":
        dtype = ct2.float_dtype()
    return getattr(torch, dtype)


def _whisper_config(ct2: CT2Model, vocab: list[str], multilingual: bool | None):
    from transformers import WhisperConfig

    def shape(name: str) -> tuple[int, ...]:
        return ct2.variable(name).shape

    conv1 = shape("encoder/conv1/weight")
    if len(conv1) != 3:
        raise ConversionError(f"{ct2.path}: encoder/conv1/weight has shape {conv1}, expected 3-D")
    d_model, n_mels, _ = conv1
    vocab_size, emb_dim = shape("decoder/embeddings/weight")
    if emb_dim != d_model:
        raise ConversionError(
            f"{ct2.path}: decoder/embeddings/weight is {vocab_size}×{emb_dim}, but the encoder "
            f"width is {d_model}"
        )
    if len(vocab) != vocab_size:
        raise ConversionError(
            f"{ct2.path.parent}: the vocabulary has {len(vocab)} tokens but "
            f"decoder/embeddings/weight has {vocab_size} rows"
        )
    activation = (
        int(ct2.scalar("decoder/activation")) if ct2.has("decoder/activation") else _CT2_GELU
    )
    if activation != _CT2_GELU:
        raise ConversionError(f"{ct2.path}: decoder/activation is {activation}, Whisper uses GELU")
    if ct2.has("decoder/pre_norm") and not ct2.scalar("decoder/pre_norm"):
        raise ConversionError(f"{ct2.path}: decoder/pre_norm is false, Whisper is pre-norm")
    scale_embeddings = (
        bool(ct2.scalar("decoder/scale_embeddings"))
        if ct2.has("decoder/scale_embeddings")
        else False
    )
    enc_heads = int(ct2.scalar("encoder/num_heads"))
    dec_heads = int(ct2.scalar("decoder/num_heads"))
    for heads, where in ((enc_heads, "encoder"), (dec_heads, "decoder")):
        if heads <= 0 or d_model % heads:
            raise ConversionError(
                f"{ct2.path}: {where}/num_heads={heads} does not divide {d_model}"
            )
    tok = {t: i for i, t in enumerate(vocab)}
    for needed in ("<|endoftext|>", "<|startoftranscript|>", "<|notimestamps|>"):
        if needed not in tok:
            raise ConversionError(f"{ct2.path.parent}: vocabulary has no {needed} token")
    if multilingual is None:
        multilingual = vocab_size >= MULTILINGUAL_MIN_VOCAB
    eot, sot = tok["<|endoftext|>"], tok["<|startoftranscript|>"]
    return WhisperConfig(
        vocab_size=vocab_size,
        num_mel_bins=n_mels,
        d_model=d_model,
        encoder_layers=_count_layers(ct2, "encoder"),
        decoder_layers=_count_layers(ct2, "decoder"),
        encoder_attention_heads=enc_heads,
        decoder_attention_heads=dec_heads,
        encoder_ffn_dim=shape("encoder/layer_0/ffn/linear_0/weight")[0],
        decoder_ffn_dim=shape("decoder/layer_0/ffn/linear_0/weight")[0],
        max_source_positions=shape("encoder/position_encodings/encodings")[0],
        max_target_positions=shape("decoder/position_encodings/encodings")[0],
        scale_embedding=scale_embeddings,
        activation_function="gelu",
        decoder_start_token_id=sot,
        bos_token_id=sot,
        eos_token_id=eot,
        pad_token_id=eot,
        tie_word_embeddings=True,
    ), multilingual


def _generation_config(config, ct2_config: dict, vocab: list[str], multilingual: bool):
    from transformers import GenerationConfig

    tok = {t: i for i, t in enumerate(vocab)}
    kwargs: dict[str, Any] = {
        "decoder_start_token_id": tok["<|startoftranscript|>"],
        "bos_token_id": tok["<|startoftranscript|>"],
        "eos_token_id": tok["<|endoftext|>"],
        "pad_token_id": tok["<|endoftext|>"],
        "no_timestamps_token_id": tok["<|notimestamps|>"],
        "max_initial_timestamp_index": MAX_INITIAL_TIMESTAMP_INDEX,
        "max_length": config.max_target_positions,
        "return_timestamps": False,
        "is_multilingual": multilingual,
        "suppress_tokens": [int(i) for i in ct2_config.get("suppress_ids") or []],
        "begin_suppress_tokens": [int(i) for i in ct2_config.get("suppress_ids_begin") or []],
    }
    if "<|startofprev|>" in tok:
        kwargs["prev_sot_token_id"] = tok["<|startofprev|>"]
    heads = ct2_config.get("alignment_heads")
    if heads:
        kwargs["alignment_heads"] = [[int(layer), int(head)] for layer, head in heads]
    for name in ("suppress_tokens", "begin_suppress_tokens"):
        bad = [i for i in kwargs[name] if not 0 <= i < len(vocab)]
        if bad:
            raise ConversionError(f"config.json: {name} ids {bad[:5]} are outside the vocabulary")
    if multilingual:
        kwargs["lang_to_id"] = {vocab[i]: i for i in language_ids(ct2_config, vocab)}
        if not kwargs["lang_to_id"]:
            raise ConversionError(
                "config.json/vocabulary: a multilingual model needs language tokens"
            )
        missing = [t for t in ("<|transcribe|>", "<|translate|>") if t not in tok]
        if missing:
            raise ConversionError(f"vocabulary: multilingual model without {missing}")
        kwargs["task_to_id"] = {
            "transcribe": tok["<|transcribe|>"],
            "translate": tok["<|translate|>"],
        }
    return GenerationConfig(**kwargs)


class _Mapper:
    """Builds the transformers state dict from CT2 variables, remembering where each came from."""

    def __init__(self, ct2: CT2Model, dtype):
        self.ct2 = ct2
        self.dtype = dtype
        self.sd: dict[str, Any] = {}
        self.origin: dict[str, str] = {}

    def put(self, key: str, value, origin: str) -> None:
        self.sd[key] = value
        self.origin[key] = origin

    def copy(self, key: str, name: str) -> None:
        self.put(key, self.ct2.tensor(name, self.dtype), name)

    def linear(self, hf: str, name: str) -> None:
        self.copy(f"{hf}.weight", f"{name}/weight")
        self.copy(f"{hf}.bias", f"{name}/bias")

    def layer_norm(self, hf: str, name: str) -> None:
        self.copy(f"{hf}.weight", f"{name}/gamma")
        self.copy(f"{hf}.bias", f"{name}/beta")

    def fused(self, hfs: list[str], name: str) -> None:
        """Split a fused linear (rows [0:d], [d:2d], …) into ``hfs``; None drops a part's bias.

        Whisper's k_proj has no bias and CT2 stores zeros for it. Even a non-zero key bias would add
        the same q·b to every attention logit of a query, which the softmax cancels: dropping it
        never changes outputs.
        """
        weight = self.ct2.tensor(f"{name}/weight", self.dtype)
        bias = self.ct2.tensor(f"{name}/bias", self.dtype)
        parts = len(hfs)
        if weight.shape[0] % parts or bias.shape != (weight.shape[0],):
            raise ConversionError(
                f"{self.ct2.path}: {name}/weight {tuple(weight.shape)} and bias "
                f"{tuple(bias.shape)} cannot be split into {parts} equal projections"
            )
        for hf, w, b in zip(hfs, weight.chunk(parts), bias.chunk(parts), strict=True):
            self.put(f"{hf}.weight", w, f"{name}/weight")
            if not hf.endswith("k_proj"):
                self.put(f"{hf}.bias", b, f"{name}/bias")

    def attention(self, hf: str, name: str, *, cross: bool) -> None:
        if cross:
            self.linear(f"{hf}.q_proj", f"{name}/linear_0")
            self.fused([f"{hf}.k_proj", f"{hf}.v_proj"], f"{name}/linear_1")
            self.linear(f"{hf}.out_proj", f"{name}/linear_2")
        else:
            self.fused([f"{hf}.q_proj", f"{hf}.k_proj", f"{hf}.v_proj"], f"{name}/linear_0")
            self.linear(f"{hf}.out_proj", f"{name}/linear_1")


def _state_dict(ct2: CT2Model, config, dtype) -> tuple[dict, dict[str, str]]:
    m = _Mapper(ct2, dtype)
    enc, dec = "model.encoder", "model.decoder"
    m.linear(f"{enc}.conv1", "encoder/conv1")
    m.linear(f"{enc}.conv2", "encoder/conv2")
    m.copy(f"{enc}.embed_positions.weight", "encoder/position_encodings/encodings")
    for i in range(config.encoder_layers):
        hf, c = f"{enc}.layers.{i}", f"encoder/layer_{i}"
        m.attention(f"{hf}.self_attn", f"{c}/self_attention", cross=False)
        m.layer_norm(f"{hf}.self_attn_layer_norm", f"{c}/self_attention/layer_norm")
        m.linear(f"{hf}.fc1", f"{c}/ffn/linear_0")
        m.linear(f"{hf}.fc2", f"{c}/ffn/linear_1")
        m.layer_norm(f"{hf}.final_layer_norm", f"{c}/ffn/layer_norm")
    m.layer_norm(f"{enc}.layer_norm", "encoder/layer_norm")

    m.copy(f"{dec}.embed_tokens.weight", "decoder/embeddings/weight")
    m.copy(f"{dec}.embed_positions.weight", "decoder/position_encodings/encodings")
    for i in range(config.decoder_layers):
        hf, c = f"{dec}.layers.{i}", f"decoder/layer_{i}"
        m.attention(f"{hf}.self_attn", f"{c}/self_attention", cross=False)
        m.layer_norm(f"{hf}.self_attn_layer_norm", f"{c}/self_attention/layer_norm")
        m.attention(f"{hf}.encoder_attn", f"{c}/attention", cross=True)
        m.layer_norm(f"{hf}.encoder_attn_layer_norm", f"{c}/attention/layer_norm")
        m.linear(f"{hf}.fc1", f"{c}/ffn/linear_0")
        m.linear(f"{hf}.fc2", f"{c}/ffn/linear_1")
        m.layer_norm(f"{hf}.final_layer_norm", f"{c}/ffn/layer_norm")
    m.layer_norm(f"{dec}.layer_norm", "decoder/layer_norm")

    # proj_out is tied to the embeddings (CT2 stores decoder/projection/weight as an alias of them).
    embed = m.sd[f"{dec}.embed_tokens.weight"]
    if ct2.has("decoder/projection/weight"):
        proj = ct2.tensor("decoder/projection/weight", dtype)
        if proj.shape != embed.shape or not bool((proj == embed).all()):
            raise ConversionError(
                f"{ct2.path}: decoder/projection/weight differs from decoder/embeddings/weight; "
                "Whisper ties them"
            )
    if ct2.has("decoder/projection/bias") and bool(
        ct2.tensor("decoder/projection/bias", dtype).ne(0).any()
    ):
        raise ConversionError(f"{ct2.path}: decoder/projection/bias is non-zero")
    m.put("proj_out.weight", embed, "decoder/embeddings/weight")
    return m.sd, m.origin


def _check_unused(ct2: CT2Model) -> None:
    """Every non-scalar variable must have been understood (guards against layout changes)."""
    known = re.compile(
        r"^(encoder/(conv[12]/(weight|bias)(_scale)?|position_encodings/encodings|layer_norm/(gamma|beta)"
        r"|layer_\d+/(self_attention/(linear_[01]/(weight|bias)(_scale)?|layer_norm/(gamma|beta))"
        r"|ffn/(linear_[01]/(weight|bias)(_scale)?|layer_norm/(gamma|beta))))"
        r"|decoder/(embeddings/weight(_scale)?|projection/(weight|bias)(_scale)?"
        r"|position_encodings/encodings|layer_norm/(gamma|beta)"
        r"|layer_\d+/((self_attention|attention)/(linear_[012]/(weight|bias)(_scale)?"
        r"|layer_norm/(gamma|beta))|ffn/(linear_[01]/(weight|bias)(_scale)?|layer_norm/(gamma|beta)))))$"
    )
    unknown = [n for n, v in ct2.variables.items() if v.array.ndim > 0 and not known.match(n)]
    if unknown:
        raise ConversionError(
            f"{ct2.path}: variables this importer does not understand: {unknown[:5]}"
        )


def _build_model(config, generation_config, sd: dict, origin: dict[str, str], src: PathLike):
    import torch
    from transformers import WhisperForConditionalGeneration

    with torch.device("meta"):
        model = WhisperForConditionalGeneration(config)
    expected = model.state_dict()
    for key, value in sd.items():
        if key not in expected:
            raise ConversionError(f"{src}: internal mapping produced unknown parameter {key!r}")
        if tuple(value.shape) != tuple(expected[key].shape):
            raise ConversionError(
                f"{src}: shape mismatch for variable {origin[key]!r} (→ {key}): model.bin gives "
                f"{tuple(value.shape)}, the inferred config needs {tuple(expected[key].shape)}"
            )
    missing = sorted(set(expected) - set(sd))
    if missing:
        raise ConversionError(f"{src}: no weights for {missing[:5]}")
    model.load_state_dict(sd, strict=True, assign=True)
    model.tie_weights()
    model.generation_config = generation_config
    return model.eval()


def _check_out_dir(out: Path) -> None:
    """The checks of :func:`staging_dir`, as conversion errors."""
    if out.exists() and not out.is_dir():
        raise ConversionError(f"{out}: exists and is not a directory")
    if (out / "model.bin").exists():
        raise ConversionError(
            f"{out}: holds a CTranslate2 model (model.bin); write the transformers model elsewhere"
        )


def import_ct2(
    src_dir: PathLike,
    out_dir: PathLike,
    *,
    dtype: str = "float32",
    multilingual: bool | None = None,
    owner: str = "teacher import-ct2",
    legacy_record: Sequence[str] = (),
) -> Path:
    """Convert a CTranslate2 Whisper model directory into a transformers model directory.

    ``dtype``: float32 (default), float16, bfloat16, or ``auto`` (the stored float type; int8/int16
    models de-quantise to float32). ``multilingual``: None infers it like Whisper does (vocabulary
    of ≥ 51865 tokens). Writes ``model.safetensors``, ``config.json``, ``generation_config.json``,
    ``processor_config.json``, ``tokenizer.json``, ``tokenizer_config.json`` into ``out_dir``
    (replacing a previous model there, see :func:`~speechdistill.utils.staging_dir`: only a
    directory that is empty or written by the command ``owner``) and returns it.
    """
    src = Path(src_dir)
    if not src.is_dir():
        raise ConversionError(f"{src}: not a directory")
    ct2 = read_model_bin(src / "model.bin")
    if ct2.spec_name not in SUPPORTED_SPECS:
        raise ConversionError(
            f"{ct2.path}: spec {ct2.spec_name!r} is not a Whisper model (supported: "
            f"{', '.join(SUPPORTED_SPECS)})"
        )
    if ct2.spec_revision > SUPPORTED_SPECS[ct2.spec_name]:
        raise ConversionError(
            f"{ct2.path}: {ct2.spec_name} revision {ct2.spec_revision} is newer than this "
            f"importer knows ({SUPPORTED_SPECS[ct2.spec_name]})"
        )
    ct2_config = read_json(src / "config.json")
    if not isinstance(ct2_config, dict):
        raise ConversionError(f"{src / 'config.json'}: expected a JSON object")
    vocab = read_vocabulary(src)
    torch_dtype = _torch_dtype(dtype, ct2)

    _check_unused(ct2)
    config, is_multi = _whisper_config(ct2, vocab, multilingual)
    config.dtype = torch_dtype
    generation_config = _generation_config(config, ct2_config, vocab, is_multi)
    # The model config keeps copies (as Whisper checkpoints do); generation reads the generation config.
    config.suppress_tokens = list(generation_config.suppress_tokens)
    config.begin_suppress_tokens = list(generation_config.begin_suppress_tokens)
    tokenizer = build_tokenizer(src, vocab)
    feature_extractor = build_feature_extractor(src, config.num_mel_bins)
    sd, origin = _state_dict(ct2, config, torch_dtype)
    model = _build_model(config, generation_config, sd, origin, ct2.path)

    from transformers import WhisperProcessor

    processor = WhisperProcessor(feature_extractor=feature_extractor, tokenizer=tokenizer)
    _check_out_dir(Path(out_dir))
    with staging_dir(out_dir, owner, legacy_record=legacy_record) as tmp:
        model.save_pretrained(tmp)
        processor.save_pretrained(tmp)
        weights = sorted(p.name for p in tmp.glob("*.safetensors"))
        if not weights or any(tmp.glob("*.bin")):
            raise ConversionError(f"{tmp}: expected safetensors weights only, got {weights}")
    log.info(
        "imported %s (%s, %d+%d layers, d_model %d, vocab %d, %s) → %s",
        src,
        "quantised" if ct2.is_quantised() else ct2.float_dtype(),
        config.encoder_layers,
        config.decoder_layers,
        config.d_model,
        config.vocab_size,
        "multilingual" if is_multi else "English-only",
        out_dir,
    )
    return Path(out_dir)
