"""DistilHuBERT: layer-wise distillation of a speech encoder into a shallow student, on accelerate.

For each predicted teacher layer ``l`` the student's head ``l`` (an MLP on its last layer) is
trained with ``L1 + λ·(−log σ(cos))`` against the teacher's ``hidden_states[l]``, masked on padded
frames and summed over the layers (:func:`speechdistill.train.losses.layerwise_distill_loss`);
``target_norm=utterance`` first standardises each target dimension over the utterance's frames
(:func:`normalize_targets`; the paper uses raw targets, the default). The
teacher is frozen, in fp32, in eval mode with layerdrop 0; it runs on every batch, or once per
training utterance with ``teacher_cache`` (the same targets, since it is frozen, when its
frames do not depend on batch padding: Whisper's fixed window, layer-norm CNNs with attention
masks; group-norm CNNs without masks see less padding in the cache's length-sorted batches). Teachers: HuBERT / wav2vec2 / WavLM,
or a Whisper encoder (frames paired by index at 50 Hz; see :mod:`speechdistill.teachers.hubert`).

The same conventions as the Whisper trainer (:mod:`speechdistill.train.common`): a YAML config
with command-line overrides, dev loss every ``eval_steps`` with the best dev checkpoint kept,
checkpoints with exact resume, ``train_log.csv``, TensorBoard and ``curves.png``. The output
directory holds the best student as a plain transformers encoder (``config.json``,
``model.safetensors``, ``preprocessor_config.json``) with its heads beside it
(``heads.safetensors``, ``heads.json``).
"""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path
from typing import Any

import torch

from speechdistill.batching import pad_waveforms
from speechdistill.datadir import check_stage_input
from speechdistill.teachers.hubert import (
    WHISPER_FRAMES,
    Teacher,
    hubert_num_frames,
    load_ssl_teacher,
    parse_layers,
)
from speechdistill.train.common import (
    AcceleratedTrainer,
    MetricState,
    make_accelerator,
    plot_curves,
    tensorboard_writer,
    warn_weights_ignored,
)
from speechdistill.train.config import HubertTrainConfig
from speechdistill.train.hubert_student import (
    DistilHubert,
    init_hubert_student,
    load_hubert_student,
)
from speechdistill.train.losses import layerwise_distill_loss
from speechdistill.train.run import (
    check_run,
    data_input,
    model_input,
    run_identity,
    teacher_input,
    training_lock,
)
from speechdistill.train.waveform import (
    WaveformDataset,
    cache_targets,
    length_batches,
    stack_targets,
)
from speechdistill.utils import PathLike

log = logging.getLogger(__name__)

#: ``speechdistill train --student hubert``: initialise the student from the teacher.
NEW_STUDENT = "hubert"
#: The teacher's cached targets (``teacher_cache``), kept in the output dir until training ends.
TARGETS_FILE = "teacher_targets.safetensors"


def normalize_targets(
    targets: list[torch.Tensor], frame_mask: torch.Tensor, how: str, eps: float = 1e-5
) -> list[torch.Tensor]:
    """The targets as the loss sees them. ``utterance``: each dimension of each utterance
    standardised over its valid frames, ``(h − μ) / sqrt(σ² + eps)`` (padded frames: 0)."""
    if how == "none":
        return targets
    if how != "utterance":
        raise ValueError(f"unknown target normalisation {how!r}")
    m = frame_mask.to(targets[0].device)[..., None].float()
    n = m.sum(1, keepdim=True).clamp(min=1.0)
    out = []
    for h in targets:
        h = h.float()
        mu = (h * m).sum(1, keepdim=True) / n
        var = ((h - mu) ** 2 * m).sum(1, keepdim=True) / n
        out.append((h - mu) / torch.sqrt(var + eps) * m)
    return out


def _cache_matches(path: Path, key: dict[str, Any]) -> bool:
    """Whether ``path`` holds the targets described by ``key`` (teacher, layers, utterances)."""
    if not path.is_file():
        return False
    from safetensors import safe_open

    with safe_open(str(path), "pt") as f:
        meta = f.metadata() or {}
    return meta.get("key") == json.dumps(key, sort_keys=True)


# --------------------------------------------------------------------------------------------
# batches


class DistilCollator:
    """Pads waveforms; adds the frame mask, and the teacher's input (Whisper log-mel) or its
    cached targets (``targets``: utterance → per-layer ``(T_u, D)`` tensors)."""

    def __init__(
        self,
        feature_extractor,
        conv_kernel,
        conv_stride,
        *,
        whisper_features=None,
        targets: dict[str, list[torch.Tensor]] | None = None,
    ):
        self.fe = feature_extractor
        self.conv = (tuple(conv_kernel), tuple(conv_stride))
        self.whisper_features = whisper_features
        self.targets = targets

    def __call__(self, items: list[dict[str, Any]]) -> dict[str, Any]:
        audios = [it["audio"] for it in items]
        batch: dict[str, Any] = pad_waveforms(audios, self.fe)
        frames = hubert_num_frames(batch["num_samples"], *self.conv)
        total = int(hubert_num_frames(batch["input_values"].shape[1], *self.conv))
        batch["frame_mask"] = torch.arange(total)[None, :] < frames[:, None]
        batch["utts"] = [it["utt"] for it in items]
        if self.targets is not None:
            batch["targets"] = stack_targets([self.targets[it["utt"]] for it in items], total)
        elif self.whisper_features is not None:
            feats = self.whisper_features(audios, sampling_rate=16000, return_tensors="pt")
            batch["input_features"] = feats.input_features
        return batch


def _model_mask(feature_extractor, batch: dict[str, Any]) -> torch.Tensor | None:
    """The attention mask to give the model: only when its feature extractor returns one (HF's
    convention: models with a group-norm CNN were trained on zero-padded input without)."""
    return batch["attention_mask"] if feature_extractor.return_attention_mask else None


def teacher_states(
    teacher: Teacher, layers: list[int], batch: dict[str, Any]
) -> list[torch.Tensor]:
    """The teacher's targets for a collated batch, ``(B, T, D)`` per layer, on its device."""
    total = batch["frame_mask"].shape[1]
    if total > WHISPER_FRAMES and teacher.kind == "whisper":
        raise ValueError("a Whisper teacher covers at most 30 s of audio")
    return teacher.layer_states(
        layers,
        total,
        input_values=batch["input_values"],
        attention_mask=batch["attention_mask"],
        input_features=batch.get("input_features"),
    )


def cache_teacher_states(
    teacher: Teacher,
    layers: list[int],
    dataset: WaveformDataset,
    collator: DistilCollator,
    batch_size: int,
    desc: str = "teacher targets",
) -> dict[str, list[torch.Tensor]]:
    """The teacher's targets for every utterance of ``dataset``, cut to its own frames (fp32, CPU),
    computed in length-sorted batches."""
    return cache_targets(dataset, collator, batch_size,
                         lambda batch: teacher_states(teacher, layers, batch), desc)  # fmt: skip


# --------------------------------------------------------------------------------------------
# evaluation


class DevLoss:
    """The distillation loss on the dev set, pooled over its frames (targets computed once)."""

    def __init__(
        self,
        dataset: WaveformDataset,
        collator: DistilCollator,
        teacher: Teacher,
        layers: list[int],
        config: HubertTrainConfig,
    ):
        self.config = config
        self.batches = []
        for idx in length_batches(dataset, config.eval_batch_size):
            batch = collator([dataset[i] for i in idx])
            targets = [t.cpu() for t in teacher_states(teacher, layers, batch)]
            batch["targets"] = normalize_targets(targets, batch["frame_mask"], config.target_norm)
            batch.pop("input_features", None)
            self.batches.append(batch)
        self.num_utts = len(dataset)

    @torch.inference_mode()
    def __call__(self, model: DistilHubert, feature_extractor) -> dict[str, Any]:
        was_training = model.training
        model.eval()
        device = next(model.parameters()).device
        n_total = 0
        l1 = cos = None
        for batch in self.batches:
            mask = _model_mask(feature_extractor, batch)
            _, preds = model(
                batch["input_values"].to(device),
                attention_mask=None if mask is None else mask.to(device),
            )
            out = layerwise_distill_loss(
                preds, batch["targets"], batch["frame_mask"], lambda_cos=self.config.lambda_cos
            )
            n = int(batch["frame_mask"].sum())
            l1 = out.l1.cpu() * n if l1 is None else l1 + out.l1.cpu() * n
            cos = out.cos.cpu() * n if cos is None else cos + out.cos.cpu() * n
            n_total += n
        model.train(was_training)
        l1, cos = l1 / n_total, cos / n_total
        loss = float((l1 + self.config.lambda_cos * cos).sum())
        return {
            "dev_loss": round(loss, 6),
            "dev_l1": round(float(l1.sum()), 6),
            "dev_cos": round(float(cos.sum()), 6),
            "dev_l1_layers": [round(float(x), 6) for x in l1],
            "dev_cos_layers": [round(float(x), 6) for x in cos],
        }


# --------------------------------------------------------------------------------------------
# the trainer


class HubertKDTrainer(AcceleratedTrainer):
    """Set up teacher, student, data and accelerate; :meth:`train` runs to ``max_steps``."""

    loss_keys = ("loss", "l1", "cos")
    log_fields = ("step", "epoch", "loss", "l1", "cos", "grad_norm", "lr", "sec_per_step")

    def __init__(
        self,
        teacher_dir: PathLike,
        train_dir: PathLike,
        dev_dir: PathLike,
        out_dir: PathLike,
        config: HubertTrainConfig,
        student: PathLike = NEW_STUDENT,
        *,
        force: bool = False,
    ):
        from accelerate.utils import set_seed

        check_stage_input(train_dir, "train")  # before any model
        check_stage_input(dev_dir, "train (dev set)")
        warn_weights_ignored(train_dir, "DistilHuBERT training")
        self.config = config
        self.out = Path(out_dir)
        self._claim_out()
        self.acc = make_accelerator(config.mixed_precision)
        new = str(student) == NEW_STUDENT
        inputs = {"student": {"path": NEW_STUDENT} if new else model_input(student),
                  "teacher": teacher_input(teacher_dir), "train": data_input(train_dir),
                  "dev": data_input(dev_dir)}  # fmt: skip
        check_run(self.out, run_identity(config, inputs), force=force,
                  main_process=self.acc.is_main_process, extra_files=[TARGETS_FILE])  # fmt: skip
        self.acc.wait_for_everyone()
        set_seed(config.seed)
        self.teacher = load_ssl_teacher(teacher_dir, device=self.acc.device)
        if str(student) == NEW_STUDENT:
            model, fe, info = init_hubert_student(
                self.teacher,
                arch=config.arch(),
                target_layers=config.target_layers,
                seed=config.seed,
            )
        else:
            model, fe, info = load_hubert_student(student)
            wanted = parse_layers(config.target_layers, self.teacher.num_layers)
            if config.target_layers and wanted != model.target_layers:
                raise ValueError(f"{student} predicts layers {model.target_layers}, not {wanted}")
            if model.teacher_hidden_size != self.teacher.hidden_size:
                raise ValueError(
                    f"{student}'s heads predict width {model.teacher_hidden_size}, "
                    f"the teacher's is {self.teacher.hidden_size}"
                )
        self.layers = model.target_layers
        self.feature_extractor = fe
        self.info = {**info, "teacher_dir": str(teacher_dir)}
        from speechdistill.teachers.identity import teacher_identity

        self.info["teacher"] = teacher_identity(teacher_dir)
        if config.freeze_feature_encoder:
            model.encoder.feature_extractor._freeze_parameters()
        model.train()

        whisper = self.teacher.kind == "whisper"
        max_duration = config.max_duration
        if whisper:
            max_duration = min(max_duration or 30.0, 30.0)
        c = model.encoder.config
        self.collator = DistilCollator(
            fe,
            c.conv_kernel,
            c.conv_stride,
            whisper_features=self.teacher.feature_extractor if whisper else None,
        )
        self.dataset = WaveformDataset(train_dir, max_duration=max_duration)
        collate = self.collator
        if config.teacher_cache:
            targets = self._cached_targets(model)
            collate = DistilCollator(fe, c.conv_kernel, c.conv_stride, targets=targets)
        self._prepare(model, self.dataset, collate, train_dir)
        self.ema = None
        self.evaluator = None
        if self.acc.is_main_process:
            dev = WaveformDataset(dev_dir, max_duration=max_duration, max_utts=config.eval_max_utts)
            self.evaluator = DevLoss(dev, self.collator, self.teacher, self.layers, config)
        if config.teacher_cache:  # every target is computed: free the teacher's memory
            self.teacher = None
        self.state = MetricState()
        self.csv = self.out / "train_log.csv"
        self.tb = tensorboard_writer(self.out / "tensorboard") if self.acc.is_main_process else None

    def _cached_targets(self, model: DistilHubert) -> dict[str, list[torch.Tensor]]:
        """The teacher's targets for the training set: computed once (main process), kept in
        ``OUT/teacher_targets.safetensors`` until training ends, so that a resumed run reads
        them instead of running the teacher again."""
        from safetensors.torch import load_file, save_file

        path = self.out / TARGETS_FILE
        c = model.encoder.config
        key = {
            "teacher": self.info["teacher"],
            "layers": self.layers,
            "utts": self.dataset.utts,
            "conv": [list(c.conv_kernel), list(c.conv_stride)],
        }
        if self.acc.is_main_process and not _cache_matches(path, key):
            t0 = time.perf_counter()
            targets = cache_teacher_states(
                self.teacher, self.layers, self.dataset, self.collator, self.config.eval_batch_size
            )
            log.info(
                "teacher targets of %d utterances computed in %.1f s",
                len(targets),
                time.perf_counter() - t0,
            )
            flat = {
                f"{u}/{i}": t.contiguous() for u, ts in targets.items() for i, t in enumerate(ts)
            }
            save_file(flat, str(path), metadata={"key": json.dumps(key, sort_keys=True)})
        self.acc.wait_for_everyone()
        flat = load_file(str(path))
        n = len(self.layers)
        return {u: [flat[f"{u}/{i}"] for i in range(n)] for u in self.dataset.utts}

    # ---------------------------------------------------------------------------- one step
    def compute_loss(self, batch: dict[str, Any]) -> dict[str, torch.Tensor]:
        _, preds = self.student(
            batch["input_values"], attention_mask=_model_mask(self.feature_extractor, batch)
        )
        if "targets" in batch:
            targets = batch["targets"]
        else:
            targets = teacher_states(self.teacher, self.layers, batch)
        if preds[0].shape[1] != batch["frame_mask"].shape[1]:
            raise RuntimeError(
                f"student gave {preds[0].shape[1]} frames, expected {batch['frame_mask'].shape[1]}"
            )
        targets = normalize_targets(targets, batch["frame_mask"], self.config.target_norm)
        out = layerwise_distill_loss(
            preds, targets, batch["frame_mask"], lambda_cos=self.config.lambda_cos
        )
        return {"loss": out.loss, "l1": out.l1.sum().detach(), "cos": out.cos.sum().detach()}

    # ---------------------------------------------------------------------------- evaluation
    def _evaluate(self) -> None:
        if self.acc.is_main_process:
            model = self.acc.unwrap_model(self.student)
            t0 = time.perf_counter()
            res = self.evaluator(model, self.feature_extractor)
            row = {
                "step": self.state.step,
                **res,
                "eval_seconds": round(time.perf_counter() - t0, 2),
            }
            self.state.evals.append(row)
            log.info(
                "step %d: dev loss %.4f (L1 %.4f, cos %.4f)",
                self.state.step,
                res["dev_loss"],
                res["dev_l1"],
                res["dev_cos"],
            )
            if self.tb is not None:
                for k in ("dev_loss", "dev_l1", "dev_cos"):
                    self.tb.add_scalar(f"dev/{k[4:]}", res[k], self.state.step)
            if self.state.best_metric is None or res["dev_loss"] < self.state.best_metric:
                self.state.best_metric, self.state.best_step = res["dev_loss"], self.state.step
                self._save_model(model, self.out / "best")
            self._plot()
        self.acc.wait_for_everyone()

    def _plot(self) -> None:
        plot_curves(
            self.out,
            self.state.evals,
            loss_keys=self.loss_keys,
            metric="dev_loss",
            metric_title="dev distillation loss",
            ylabel="loss",
        )

    def _write_model(self, model: DistilHubert, directory: Path) -> None:
        model.save(directory, self.feature_extractor, extra=self.info)

    def _summary(self) -> dict[str, Any]:
        return {
            "best_dev_loss": self.state.best_metric,
            "target_layers": self.layers,
            "teacher_kind": self.info["teacher_kind"],
            "params": self.info.get("params"),
        }

    def _finish(self) -> dict[str, Any]:
        summary = super()._finish()
        if self.acc.is_main_process:
            (self.out / TARGETS_FILE).unlink(missing_ok=True)  # only resumed runs need it
        return summary


def train_hubert(
    teacher_dir: PathLike,
    train_dir: PathLike,
    dev_dir: PathLike,
    out_dir: PathLike,
    config: HubertTrainConfig,
    student: PathLike = NEW_STUDENT,
    *,
    force: bool = False,
) -> dict[str, Any]:
    """Distil (or resume the same run: see :mod:`~speechdistill.train.run`; ``force`` starts
    over) and return the summary written to ``out_dir/train.json``."""
    with training_lock(out_dir):
        trainer = HubertKDTrainer(teacher_dir, train_dir, dev_dir, out_dir, config, student,
                                  force=force)  # fmt: skip
        return trainer.train()
