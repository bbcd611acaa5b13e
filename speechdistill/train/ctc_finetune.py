"""CTC fine-tuning of a speech encoder (a DistilHuBERT student, or any HuBERT / wav2vec2 / WavLM
model) for character-level ASR, on accelerate.

The character vocabulary is built from the training transcripts after normalisation
(``normalizer``, by default Whisper's English normaliser, so the model writes what scoring
compares); spaces become the word delimiter ``|`` and ``<pad>`` is the CTC blank
(:mod:`speechdistill.inference.ctc`). The model is ``HubertForCTC`` (``WavLMForCTC``,
``Wav2Vec2ForCTC``; a Whisper encoder's:
:class:`~speechdistill.inference.ctc.WhisperEncoderForCTC`) on the encoder's weights with a new
output layer (a pruned HuBERT from ``speechdistill prune`` / ``final-distill`` whose layers differ:
:class:`~speechdistill.prune.io.PrunedHubertForCTC`), or, with ``from_scratch``,
the same architecture randomly initialised (the baseline that tells whether distillation
transferred anything). Same conventions as the other trainers (:mod:`speechdistill.train.common`):
YAML config + overrides, greedy dev decoding every ``eval_steps`` with the best dev checkpoint kept
(CER or WER), exact resume, ``train_log.csv``, TensorBoard, ``curves.png``. The output directory
is a transformers model with its processor (``vocab.json``, tokenizer and feature extractor).
"""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path
from typing import Any

import torch

from speechdistill.datadir import DataDir, check_stage_input
from speechdistill.inference.ctc import (
    CTCTranscriber,
    build_vocab,
    ctc_class,
    encoder_batch,
    make_processor,
    model_inputs,
)
from speechdistill.prune.io import PrunedHubertForCTC, is_pruned
from speechdistill.train.common import (
    AcceleratedTrainer,
    MetricState,
    make_accelerator,
    plot_curves,
    tensorboard_writer,
    warn_weights_ignored,
)
from speechdistill.train.config import CTCTrainConfig
from speechdistill.train.losses import IGNORE_INDEX
from speechdistill.train.run import check_run, data_input, model_input, run_identity, training_lock
from speechdistill.train.waveform import WaveformDataset, length_batches
from speechdistill.utils import PathLike, atomic_write_text

log = logging.getLogger(__name__)


class CTCCollator:
    """The model's input (:func:`~speechdistill.inference.ctc.encoder_batch`) and padded label
    ids (``-100`` beyond each label)."""

    def __init__(self, feature_extractor):
        self.fe = feature_extractor

    def __call__(self, items: list[dict[str, Any]]) -> dict[str, Any]:
        batch: dict[str, Any] = encoder_batch([it["audio"] for it in items], self.fe)
        longest = max(len(it["label"]) for it in items)
        labels = torch.full((len(items), longest), IGNORE_INDEX, dtype=torch.long)
        for b, it in enumerate(items):
            labels[b, : len(it["label"])] = torch.tensor(it["label"], dtype=torch.long)
        batch["labels"] = labels
        return batch


class DevDecoder:
    """Greedy decoding of the dev set (length-sorted batches) and its CER/WER."""

    def __init__(self, dataset: WaveformDataset, refs: dict[str, str], config: CTCTrainConfig):
        self.dataset, self.refs, self.config = dataset, refs, config
        self.batches = length_batches(dataset, config.eval_batch_size)

    def __call__(self, model, processor) -> dict[str, Any]:
        from speechdistill.scoring import score

        was_training = model.training
        model.eval()
        transcriber = CTCTranscriber(model, processor)
        hyps: dict[str, str] = {}
        for idx in self.batches:
            items = [self.dataset[i] for i in idx]
            texts = transcriber.transcribe([it["audio"] for it in items])
            hyps.update((it["utt"], t) for it, t in zip(items, texts, strict=True))
        model.train(was_training)
        refs = {u: self.refs[u] for u in hyps}
        res = score(refs, hyps, normalizer=self.config.eval_normalizer, bootstrap=0)
        return {"dev_cer": round(res.cer, 5), "dev_wer": round(res.wer, 5)}


def _labels(data_dir: PathLike, config: CTCTrainConfig) -> dict[str, str]:
    from speechdistill.text import get_normalizer

    d = DataDir(data_dir)
    if not d.exists(config.label_file):
        raise FileNotFoundError(f"{data_dir}: no {config.label_file} (CTC needs transcripts)")
    norm = get_normalizer(config.normalizer)
    return {u: norm(t) for u, t in d.read(config.label_file).items()}


def _dev_refs(dev_dir: PathLike) -> tuple[dict[str, str], str]:
    d = DataDir(dev_dir)
    for name in ("text", "text.teacher"):
        if d.exists(name):
            return d.read(name), name
    raise FileNotFoundError(f"{dev_dir}: the dev set needs text (or text.teacher)")


class CTCTrainer(AcceleratedTrainer):
    """Set up model, vocabulary, data and accelerate; :meth:`train` runs to ``max_steps``."""

    loss_keys = ("loss",)
    owner = "ctc-finetune"
    log_fields = ("step", "epoch", "loss", "grad_norm", "lr", "sec_per_step")

    def __init__(
        self,
        model_dir: PathLike,
        train_dir: PathLike,
        dev_dir: PathLike,
        out_dir: PathLike,
        config: CTCTrainConfig,
        *,
        force: bool = False,
    ):
        from accelerate.utils import set_seed
        from transformers import AutoConfig, AutoFeatureExtractor

        check_stage_input(train_dir, "ctc-finetune", needs=("text",))  # before any model
        check_stage_input(dev_dir, "ctc-finetune (dev set)", needs=("text",))
        warn_weights_ignored(train_dir, "ctc-finetune")
        self.config = config
        self.out = Path(out_dir)
        self._claim_out()
        self.acc = make_accelerator(config.mixed_precision)
        inputs = {"model": model_input(model_dir), "train": data_input(train_dir),
                  "dev": data_input(dev_dir)}  # fmt: skip
        check_run(self.out, run_identity(config, inputs), force=force,
                  main_process=self.acc.is_main_process)  # fmt: skip
        self.acc.wait_for_everyone()
        set_seed(config.seed)
        texts = _labels(train_dir, config)
        vocab = build_vocab(texts.values())
        fe = AutoFeatureExtractor.from_pretrained(str(model_dir), trust_remote_code=False)
        self.processor = make_processor(vocab, fe)
        tok = self.processor.tokenizer
        labels = {u: tok(t).input_ids for u, t in texts.items() if t}
        overrides = dict(
            vocab_size=len(vocab),
            pad_token_id=tok.pad_token_id,
            ctc_loss_reduction="mean",
            ctc_zero_infinity=True,
            mask_time_prob=config.mask_time_prob,
            mask_time_length=config.mask_time_length,
            layerdrop=config.layerdrop,
            final_dropout=config.final_dropout,
        )
        enc_config = AutoConfig.from_pretrained(str(model_dir), trust_remote_code=False)
        cls = ctc_class(enc_config.model_type)
        if is_pruned(enc_config) and enc_config.model_type != "whisper":  # speechdistill prune
            if enc_config.model_type != "hubert":
                raise ValueError(
                    f"{model_dir}: a pruned {enc_config.model_type} model has no CTC class "
                    "(pruned HuBERT and Whisper encoders only)"
                )
            cls = PrunedHubertForCTC
        for k, v in overrides.items():  # on the config: Whisper's has no CTC fields to override
            setattr(enc_config, k, v)
        if config.from_scratch:
            torch.manual_seed(config.seed)
            model = cls(enc_config)
            log.info("CTC model %s from scratch (random initialisation)", cls.__name__)
        else:
            model = cls.from_pretrained(
                str(model_dir),
                use_safetensors=True,
                trust_remote_code=False,
                dtype=torch.float32,
                config=enc_config,
            )
            log.info("CTC model %s on the encoder of %s", cls.__name__, model_dir)
        model.config.architectures = [cls.__name__]
        if (
            enc_config.model_type == "whisper"
        ):  # fixed sinusoids, as in Whisper (loading unfroze them)
            model.encoder.embed_positions.requires_grad_(False)
        if config.freeze_feature_encoder:
            model.freeze_feature_encoder()
        model.train()
        # trained after freeze_encoder_steps (the optimiser holds them from the start; they get
        # no gradient, hence no update, while frozen)
        self._encoder_params = [p for p in model.base_model.parameters() if p.requires_grad]
        self._encoder_frozen = False
        self.info = {
            "encoder": str(model_dir),
            "from_scratch": config.from_scratch,
            "vocab_size": len(vocab),
            "num_params": sum(p.numel() for p in model.parameters()),
        }
        dataset = WaveformDataset(train_dir, max_duration=config.max_duration, labels=labels)
        self._prepare(model, dataset, CTCCollator(fe), train_dir)
        self.ema = None
        self.evaluator = None
        if self.acc.is_main_process:
            refs, self.dev_reference = _dev_refs(dev_dir)
            dev = WaveformDataset(
                dev_dir,
                max_duration=config.max_duration,
                labels=refs,
                max_utts=config.eval_max_utts,
            )
            self.evaluator = DevDecoder(dev, refs, config)
        self.state = MetricState()
        self.csv = self.out / "train_log.csv"
        self.tb = tensorboard_writer(self.out / "tensorboard") if self.acc.is_main_process else None

    def compute_loss(self, batch: dict[str, Any]) -> dict[str, torch.Tensor]:
        frozen = self.state.step < self.config.freeze_encoder_steps
        if frozen != self._encoder_frozen:
            for p in self._encoder_params:
                p.requires_grad_(not frozen)
            self._encoder_frozen = frozen
            log.info("step %d: encoder %s", self.state.step, "frozen" if frozen else "trained")
        out = self.student(**model_inputs(batch), labels=batch["labels"])
        return {"loss": out.loss}

    def _evaluate(self) -> None:
        if self.acc.is_main_process:
            model = self.acc.unwrap_model(self.student)
            t0 = time.perf_counter()
            res = self.evaluator(model, self.processor)
            row = {
                "step": self.state.step,
                **res,
                "eval_seconds": round(time.perf_counter() - t0, 2),
            }
            self.state.evals.append(row)
            log.info(
                "step %d: dev CER %.2f %%, WER %.2f %% (%s)",
                self.state.step,
                100 * res["dev_cer"],
                100 * res["dev_wer"],
                self.dev_reference,
            )
            if self.tb is not None:
                self.tb.add_scalar("dev/cer", res["dev_cer"], self.state.step)
                self.tb.add_scalar("dev/wer", res["dev_wer"], self.state.step)
            metric = res[f"dev_{self.config.select_metric}"]
            if self.state.best_metric is None or metric < self.state.best_metric:
                self.state.best_metric, self.state.best_step = metric, self.state.step
                self._save_model(model, self.out / "best")
            self._plot()
        self.acc.wait_for_everyone()

    def _plot(self) -> None:
        m = self.config.select_metric
        plot_curves(
            self.out,
            self.state.evals,
            loss_keys=self.loss_keys,
            metric=f"dev_{m}",
            metric_title=f"dev {m.upper()} (greedy CTC)",
            ylabel=f"{m.upper()} %",
            percent=True,
        )

    def _write_model(self, model, directory: Path) -> None:
        model.save_pretrained(directory, safe_serialization=True)
        self.processor.save_pretrained(directory)
        atomic_write_text(directory / "ctc.json", json.dumps(self.info, indent=2) + "\n")

    def _summary(self) -> dict[str, Any]:
        m = self.config.select_metric
        return {
            f"best_dev_{m}": self.state.best_metric,
            "dev_reference": self.dev_reference,
            **self.info,
        }


def ctc_finetune(
    model_dir: PathLike,
    train_dir: PathLike,
    dev_dir: PathLike,
    out_dir: PathLike,
    config: CTCTrainConfig,
    *,
    force: bool = False,
) -> dict[str, Any]:
    """Fine-tune (or resume the same run: see :mod:`~speechdistill.train.run`; ``force`` starts
    over) and return the summary written to ``out_dir/train.json``."""
    with training_lock(out_dir):
        return CTCTrainer(model_dir, train_dir, dev_dir, out_dir, config, force=force).train()
