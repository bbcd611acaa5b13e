"""Structured pruning with distillation (DPHuBERT, Peng et al. 2023) of a HuBERT-like model or a
Whisper encoder, and the final distillation of the pruned model, on accelerate.

``prune`` (:func:`prune_distill`): the student starts as a copy of the teacher (a HuBERT / wav2vec2
model's ``HubertModel``, a Whisper model's ``WhisperEncoder``), with Hard-Concrete gates on the
chosen units (:class:`~speechdistill.prune.gates.PruningGates`). Its hidden states at the
distilled layers are mapped (:class:`~speechdistill.prune.distill.LayerMaps`, identity at the start)
to the teacher's at the same layers; the loss is the layer-wise L1 + cosine loss, masked on padded
frames (:func:`~speechdistill.train.losses.layerwise_distill_loss`), plus the sparsity loss
``λ₁(ŝ − t) + λ₂(ŝ − t)²`` with the target ``t`` warmed up linearly and the λs learnt by
gradient ascent (DPHuBERT's ``lightning.py``): the model and maps at ``lr``, the gates and λs at
``reg_lr``, one schedule for all. At the end the masked units are removed
(:func:`~speechdistill.prune.remove.prune_model`) and the pruned model is written as
``model.safetensors`` + ``config.json`` + ``prune.json`` (+ the feature extractor and the layer
maps, ``distill_maps.safetensors``). The checkpoints hold the gates and λs, so a killed run resumes.

``final-distill`` (:func:`final_distill`): the pruned model (:func:`~speechdistill.prune.io.
load_pruned`) distilled again from the teacher, without gates or regulariser (DPHuBERT's
``final_distill.py``), starting from the saved maps; the best checkpoint on the dev loss is kept
and written the same way.

A Whisper student reads the teacher's 30 s window (``student_input: window``, what a Whisper
decoder reads), or only its clips' frames (``clip``: positions ``0 … T − 1`` of the batch's
longest clip, :func:`~speechdistill.inference.ctc.whisper_clip_input`; about a tenth of the
compute for 3 s clips, the route to CTC fine-tuning). The teacher always reads the window; with
``teacher_cache`` it runs once per training utterance, before the first step, instead of at
every step.

Same conventions as the other trainers (:mod:`speechdistill.train.common`): a YAML config with
command-line overrides, ``train_log.csv`` (here also the distillation loss, ŝ, t, λ₁, λ₂),
TensorBoard, ``curves.png``, a run record that refuses a resume with other settings.
"""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path
from typing import Any

import torch
from torch import nn

from speechdistill.batching import pad_waveforms
from speechdistill.datadir import check_stage_input
from speechdistill.inference.ctc import whisper_clip_input
from speechdistill.prune.distill import LayerMaps
from speechdistill.prune.gates import (
    UNIT_KINDS,
    PruningGates,
    calibrate_sparsity,
    expected_params,
)
from speechdistill.prune.io import PRUNE_JSON, load_pruned, save_pruned
from speechdistill.prune.remove import prune_model
from speechdistill.prune.sparsity import (
    Lagrangian,
    expected_sparsity,
    param_groups,
    target_sparsity,
)
from speechdistill.teachers.hubert import (
    Teacher,
    default_target_layers,
    hubert_num_frames,
    load_ssl_teacher,
    whisper_num_frames,
)
from speechdistill.train.common import (
    AcceleratedTrainer,
    MetricState,
    make_accelerator,
    plot_curves,
    tensorboard_writer,
    warn_weights_ignored,
)
from speechdistill.train.config import PruneTrainConfig
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

__all__ = [
    "MAPS_FILE",
    "PruneKDTrainer",
    "PruneStudent",
    "distill_layers",
    "final_distill",
    "prune_distill",
    "prune_units",
]

#: The layer maps saved beside a pruned model (the final distillation starts from them).
MAPS_FILE = "distill_maps.safetensors"


# --------------------------------------------------------------------------------------------
# options


def distill_layers(value: str | None, teacher: Teacher) -> list[int]:
    """The distilled layers from ``"0,4,8,12"``, or the default (1/3, 2/3 and all of the depth,
    and 0 for HuBERT-like teachers)."""
    n = teacher.num_layers
    if not value:
        deep = default_target_layers(n)
        return deep if teacher.kind == "whisper" else [0, *deep]
    try:
        layers = [int(x) for x in value.replace(",", " ").split()]
    except ValueError:
        raise ValueError(f"distill_layers must be integers, got {value!r}") from None
    if not layers or layers != sorted(set(layers)) or not all(0 <= x <= n for x in layers):
        raise ValueError(
            f"distill_layers {value!r}: need sorted, unique layers in 0..{n} (the teacher's)"
        )
    return layers


def prune_units(value: str | None, teacher: Teacher) -> tuple[str, ...]:
    """The pruned unit kinds from ``"conv,head,interm"`` (any of
    :data:`~speechdistill.prune.gates.UNIT_KINDS`, whole blocks ``attlayer`` / ``ffnlayer``
    too), or the default (DPHuBERT's ``conv,head,interm``; ``head,interm`` for Whisper and for
    CNNs with per-frame layer norm)."""
    if not value:
        conv_ok = teacher.kind != "whisper" and teacher.config.feat_extract_norm == "group"
        return ("conv", "head", "interm") if conv_ok else ("head", "interm")
    units = tuple(u for u in value.replace(",", " ").split())
    bad = [u for u in units if u not in UNIT_KINDS]
    if bad or not units or len(set(units)) != len(units):
        raise ValueError(
            f"prune_units {value!r}: give distinct units among {', '.join(UNIT_KINDS)}"
        )
    return units


# --------------------------------------------------------------------------------------------
# the student and its batches


class PruneStudent(nn.Module):
    """The student encoder, its layer maps and (while pruning) its gates and λs: one module, so
    that the optimiser, the checkpoints and DDP see them together."""

    def __init__(self, model: nn.Module, maps: LayerMaps, gates: PruningGates | None = None):
        super().__init__()
        self.model = model
        self.maps = maps
        self.gates = gates
        self.lagrangian = Lagrangian() if gates is not None else None

    def forward(
        self, inputs: dict[str, torch.Tensor], target: float | None = None
    ) -> tuple[list[torch.Tensor], torch.Tensor | None, torch.Tensor | None]:
        """The mapped hidden states of the distilled layers; with gates, the expected sparsity ŝ
        and the sparsity loss at ``target``."""
        feats = inputs.get("input_features")
        window = getattr(self.model.config, "max_source_positions", 0)
        if feats is not None and feats.shape[-1] < 2 * window:  # a Whisper student on clips
            with whisper_clip_input(self.model, (feats.shape[-1] + 1) // 2):
                out = self.model(**inputs, output_hidden_states=True)
        else:
            out = self.model(**inputs, output_hidden_states=True)
        preds = self.maps(out.hidden_states)
        if self.gates is None:
            return preds, None, None
        s_hat = self.expected_sparsity()
        return preds, s_hat, self.lagrangian(s_hat, target).float()

    def expected_sparsity(self, kept: dict[str, float] | None = None) -> torch.Tensor:
        """ŝ under the gates (``kept``: the deterministic masks' counts, the pruned model's)."""
        expected = expected_params(self.model, self.gates, kept)
        return expected_sparsity(expected, self.gates.original_params)


class PruneCollator:
    """The student's input for a batch (the teacher's too, but for a Whisper student on clips:
    ``teacher_features``), the frame mask of the hidden states (``True`` = a frame of the
    utterance's own audio) and, with ``targets`` (utterance → per-layer ``(T_u, D)``), the
    teacher's cached targets, padded."""

    def __init__(
        self,
        teacher: Teacher,
        *,
        clip: bool = False,
        targets: dict[str, list[torch.Tensor]] | None = None,
    ):
        self.kind = teacher.kind
        self.fe = teacher.feature_extractor
        self.clip = clip
        self.targets = targets
        c = teacher.config
        if self.kind == "whisper":
            self.frames = c.max_source_positions
        else:
            self.conv = (tuple(c.conv_kernel), tuple(c.conv_stride))

    def __call__(self, items: list[dict[str, Any]]) -> dict[str, Any]:
        batch = self._inputs([it["audio"] for it in items])
        batch["utts"] = [it["utt"] for it in items]
        if self.targets is not None:
            total = batch["frame_mask"].shape[1]
            batch["targets"] = stack_targets([self.targets[u] for u in batch["utts"]], total)
            batch.pop("teacher_features", None)
        return batch

    def _inputs(self, audios: list) -> dict[str, Any]:
        extra: dict[str, Any] = {}
        if self.kind == "whisper":
            feats = self.fe(audios, sampling_rate=16000, return_tensors="pt")
            frames = torch.tensor([min(whisper_num_frames(len(a)), self.frames) for a in audios])
            total = int(frames.max()) if self.clip else self.frames
            inputs = {"input_features": feats.input_features[..., : 2 * total]}
            if self.clip:
                extra["teacher_features"] = feats.input_features
            mask = None
        else:
            padded = pad_waveforms(audios, self.fe)
            inputs = {"input_values": padded["input_values"]}
            mask = padded["attention_mask"]
            if self.fe.return_attention_mask:
                inputs["attention_mask"] = mask
            frames = hubert_num_frames(padded["num_samples"], *self.conv)
            total = int(hubert_num_frames(padded["input_values"].shape[1], *self.conv))
        return {
            "inputs": inputs,
            "attention_mask": mask,
            "frame_mask": torch.arange(total)[None, :] < frames[:, None],
            **extra,
        }


def teacher_targets(teacher: Teacher, layers: list[int], batch: dict[str, Any]):
    """The teacher's hidden states at ``layers`` for a collated batch, ``(B, T, D)`` each (the
    cached ones when the batch has them)."""
    if "targets" in batch:
        return batch["targets"]
    return teacher.layer_states(
        layers,
        batch["frame_mask"].shape[1],
        input_values=batch["inputs"].get("input_values"),
        attention_mask=batch["attention_mask"],
        input_features=batch.get("teacher_features", batch["inputs"].get("input_features")),
    )


def _student_from_teacher(teacher: Teacher) -> nn.Module:
    """A trainable copy of the teacher encoder (a fresh module: no hook or shared tensor)."""
    model = type(teacher.model)(teacher.model.config)
    model.load_state_dict(teacher.model.state_dict())
    model.requires_grad_(True)
    if teacher.kind == "whisper":
        model.embed_positions.requires_grad_(False)  # fixed sinusoids, as in Whisper
    return model.train()


# --------------------------------------------------------------------------------------------
# the trainer


class PruneKDTrainer(AcceleratedTrainer):
    """Set up teacher, student (a copy of the teacher with gates, or a pruned model), data and
    accelerate; :meth:`train` runs to ``max_steps``."""

    owner = "prune"

    def __init__(
        self,
        teacher_dir: PathLike,
        train_dir: PathLike,
        dev_dir: PathLike,
        out_dir: PathLike,
        config: PruneTrainConfig,
        student: PathLike | None = None,
        *,
        force: bool = False,
    ):
        from accelerate.utils import set_seed

        self.pruning = student is None
        command = "prune" if self.pruning else "final-distill"
        self.owner = command
        check_stage_input(train_dir, command)  # before any model
        check_stage_input(dev_dir, f"{command} (dev set)")
        warn_weights_ignored(train_dir, command)
        self.config = config
        self.out = Path(out_dir)
        self._claim_out()
        self.acc = make_accelerator(config.mixed_precision)
        inputs = {"teacher": teacher_input(teacher_dir), "train": data_input(train_dir),
                  "dev": data_input(dev_dir)}  # fmt: skip
        if not self.pruning:
            inputs["student"] = model_input(student)
        check_run(self.out, run_identity(config, inputs), force=force,
                  main_process=self.acc.is_main_process)  # fmt: skip
        self.acc.wait_for_everyone()
        set_seed(config.seed)
        self.teacher = load_ssl_teacher(teacher_dir, device=self.acc.device)
        self.layers = distill_layers(config.distill_layers, self.teacher)
        self.warmup = config.target_warmup_steps or max(1, config.max_steps // 2)
        self.info: dict[str, Any] = {
            "mode": command,
            "teacher_dir": str(teacher_dir),
            "teacher_kind": self.teacher.kind,
            "distill_layers": self.layers,
        }
        model = self._student(student)
        dim = self.teacher.hidden_size
        maps = LayerMaps(self.layers, dim, dim)
        if not self.pruning:
            self._load_maps(Path(student), maps)
        gates = None
        if self.pruning:
            self.units = prune_units(config.prune_units, self.teacher)
            gates = PruningGates(model, self.units)
            self.info.update(prune_units=list(self.units), target_sparsity=config.target_sparsity,
                             original_params=gates.original_params)  # fmt: skip
        self.info["start_params"] = sum(p.numel() for p in model.parameters())
        wrapper = PruneStudent(model, maps, gates)
        wrapper.train()
        self.loss_keys = ("loss", "distill", "l1", "cos")
        if self.pruning:
            self.loss_keys += ("reg", "sparsity", "target", "lambda1", "lambda2")
        self.log_fields = ("step", "epoch", *self.loss_keys, "grad_norm", "lr", "sec_per_step")
        max_duration = config.max_duration
        if self.teacher.kind == "whisper":
            max_duration = min(max_duration or 30.0, 30.0)
        clip = config.student_input == "clip"
        if clip and self.teacher.kind != "whisper":
            raise ValueError("student_input clip is for Whisper teachers (HuBERT reads its clips)")
        self.info["student_input"] = (
            config.student_input if self.teacher.kind == "whisper" else None
        )
        self.collator = PruneCollator(self.teacher, clip=clip)
        dataset = WaveformDataset(train_dir, max_duration=max_duration)
        collate = self.collator
        if config.teacher_cache:  # the same targets at every step: the teacher is frozen
            t0 = time.perf_counter()
            targets = cache_targets(dataset, self.collator, config.eval_batch_size,
                                    lambda b: teacher_targets(self.teacher, self.layers, b))  # fmt: skip
            log.info("teacher targets of %d utterances in %.1f s", len(targets),
                     time.perf_counter() - t0)  # fmt: skip
            collate = PruneCollator(self.teacher, clip=clip, targets=targets)
        self._prepare(wrapper, dataset, collate, train_dir)
        self.ema = None
        self.dev_batches: list[dict[str, Any]] = []
        if self.acc.is_main_process:
            dev = WaveformDataset(dev_dir, max_duration=max_duration, max_utts=config.eval_max_utts)
            for idx in length_batches(dev, config.eval_batch_size):
                batch = self.collator([dev[i] for i in idx])
                batch["targets"] = [t.cpu() for t in teacher_targets(self.teacher, self.layers,
                                                                     batch)]  # fmt: skip
                batch.pop("teacher_features", None)
                self.dev_batches.append(batch)
        self.state = MetricState()
        self.csv = self.out / "train_log.csv"
        self.tb = tensorboard_writer(self.out / "tensorboard") if self.acc.is_main_process else None

    def _student(self, student: PathLike | None) -> nn.Module:
        if student is None:
            return _student_from_teacher(self.teacher)
        model = load_pruned(student).train()
        kind = "whisper" if type(model).__name__.endswith("WhisperEncoder") else "hubert"
        want = "whisper" if self.teacher.kind == "whisper" else "hubert"
        width = model.config.d_model if kind == "whisper" else model.config.hidden_size
        if kind != want or width != self.teacher.hidden_size:
            raise ValueError(
                f"{student}: a {kind} model of width {width} cannot be distilled from this "
                f"{self.teacher.kind} teacher of width {self.teacher.hidden_size}"
            )
        info = Path(student) / PRUNE_JSON
        if info.is_file():
            self.info["pruned"] = json.loads(info.read_text(encoding="utf-8"))
        return model

    def _load_maps(self, student: Path, maps: LayerMaps) -> None:
        """Start from the maps the pruning run saved, when they map the same layers."""
        from safetensors.torch import load_file

        path = student / MAPS_FILE
        saved = self.info.get("pruned", {}).get("distill_layers")
        if path.is_file() and saved == self.layers:
            maps.load_state_dict(load_file(str(path)))
            log.info("layer maps from %s", path)
        else:
            log.info("layer maps start at the identity (%s)",
                     "no saved maps" if not path.is_file() else f"saved for layers {saved}")  # fmt: skip

    def make_optimizer(self, model: PruneStudent) -> torch.optim.Optimizer:
        cfg = self.config
        if model.gates is None:
            return super().make_optimizer(model)
        main = [p for n, p in model.named_parameters()
                if p.requires_grad and not n.startswith(("gates.", "lagrangian."))]  # fmt: skip
        groups = param_groups(main, model.gates.parameters(), model.lagrangian, lr=cfg.lr,
                              reg_lr=cfg.reg_lr, weight_decay=cfg.weight_decay)  # fmt: skip
        return torch.optim.AdamW(groups)

    # ---------------------------------------------------------------------------- one step
    def target(self) -> float:
        """The target sparsity at the current step."""
        return target_sparsity(self.state.step, self.config.target_sparsity, self.warmup)

    def compute_loss(self, batch: dict[str, Any]) -> dict[str, torch.Tensor]:
        targets = teacher_targets(self.teacher, self.layers, batch)
        t = self.target() if self.pruning else None
        preds, s_hat, reg = self.student(batch["inputs"], t)
        out = layerwise_distill_loss(
            preds, targets, batch["frame_mask"], lambda_cos=self.config.lambda_cos
        )
        losses = {"loss": out.loss, "distill": out.loss.detach(), "l1": out.l1.sum().detach(),
                  "cos": out.cos.sum().detach()}  # fmt: skip
        if reg is not None:
            lag = self.acc.unwrap_model(self.student).lagrangian
            losses.update(loss=out.loss + reg, reg=reg.detach(), sparsity=s_hat.detach(),
                          target=torch.tensor(t), lambda1=lag.lambda1.detach(),
                          lambda2=lag.lambda2.detach())  # fmt: skip
        return losses

    # ---------------------------------------------------------------------------- evaluation
    @torch.inference_mode()
    def dev_loss(self, wrapper: PruneStudent) -> dict[str, Any]:
        """The distillation loss on dev (deterministic masks), pooled over its frames."""
        was_training = wrapper.training
        wrapper.eval()
        device = next(wrapper.parameters()).device
        total = n_total = 0.0
        for batch in self.dev_batches:
            inputs = {k: v.to(device) for k, v in batch["inputs"].items()}
            preds, _, _ = wrapper(inputs, 0.0)
            out = layerwise_distill_loss(preds, batch["targets"], batch["frame_mask"],
                                         lambda_cos=self.config.lambda_cos)  # fmt: skip
            n = float(batch["frame_mask"].sum())
            total, n_total = total + float(out.loss) * n, n_total + n
        res: dict[str, Any] = {"dev_loss": round(total / n_total, 6)}
        if wrapper.gates is not None:
            kept = {k: float(v) for k, v in wrapper.gates.kept_counts().items()}
            res["sparsity"] = round(float(wrapper.expected_sparsity()), 5)
            res["pruned_sparsity"] = round(float(wrapper.expected_sparsity(kept)), 5)
        wrapper.train(was_training)
        return res

    def _evaluate(self) -> None:
        if self.acc.is_main_process:
            wrapper = self.acc.unwrap_model(self.student)
            last = self.state.step >= self.config.max_steps
            if self.pruning and last and self.config.exact_sparsity:
                self._calibrate(wrapper)  # the last evaluation is of the model written
            t0 = time.perf_counter()
            res = self.dev_loss(wrapper)
            row = {"step": self.state.step, **res,
                   "eval_seconds": round(time.perf_counter() - t0, 2)}  # fmt: skip
            self.state.evals.append(row)
            log.info("step %d: %s", self.state.step,
                     " ".join(f"{k} {v}" for k, v in res.items()))  # fmt: skip
            if self.tb is not None:
                for k, v in res.items():
                    self.tb.add_scalar(f"dev/{k}", v, self.state.step)
            if self.pruning:  # the structure changes while pruning: the last model is the result
                if last:
                    self.state.best_metric, self.state.best_step = res["dev_loss"], self.state.step
                    self._save_model(wrapper, self.out / "best")
            elif self.state.best_metric is None or res["dev_loss"] < self.state.best_metric:
                self.state.best_metric, self.state.best_step = res["dev_loss"], self.state.step
                self._save_model(wrapper, self.out / "best")
            self._plot()
        self.acc.wait_for_everyone()

    def _plot(self) -> None:
        plot_curves(self.out, self.state.evals, loss_keys=("loss", "distill"),
                    metric="dev_loss", metric_title="dev distillation loss")  # fmt: skip

    # ---------------------------------------------------------------------------- outputs
    def _write_model(self, wrapper: PruneStudent, directory: Path) -> None:
        from safetensors.torch import save_file

        info = dict(self.info)
        model = wrapper.model
        if wrapper.gates is not None:
            model, info = self._pruned_copy(wrapper, info)
        save_pruned(model, directory, info, owner=self.owner)
        self.teacher.feature_extractor.save_pretrained(directory)
        maps = {k: v.detach().cpu().contiguous() for k, v in wrapper.maps.state_dict().items()}
        save_file(maps, str(directory / MAPS_FILE))

    def _calibrate(self, wrapper: PruneStudent) -> None:
        """Shift the deterministic masks to the target sparsity
        (:func:`~speechdistill.prune.gates.calibrate_sparsity`), recording what they gave."""
        gates = wrapper.gates
        gates.set_count_offset(0.0)
        kept = {k: float(v) for k, v in gates.kept_counts().items()}
        before = float(wrapper.expected_sparsity(kept))
        offset, after = calibrate_sparsity(wrapper.model, gates, self.config.target_sparsity)
        log.info("the deterministic masks give sparsity %.4f; counting each gate's zeros with "
                 "log_alpha %+.3f gives %.4f (target %.4f)", before, offset, after,
                 self.config.target_sparsity)  # fmt: skip
        self.info.update(masks_sparsity=round(before, 5), count_offset=offset)

    def _pruned_copy(self, wrapper: PruneStudent, info: dict[str, Any]):
        """A copy of the student with the masked units removed (the training model keeps its
        gates), and the record of what was pruned."""
        with torch.random.fork_rng(devices=[]):  # building modules draws random numbers
            model = type(wrapper.model)(wrapper.model.config)
            model.load_state_dict(wrapper.model.state_dict())
            gates = PruningGates(model, self.units)
            gates.load_state_dict(wrapper.gates.state_dict())
        model.eval()
        gates.eval()
        if "count_offset" in self.info:
            gates.set_count_offset(self.info["count_offset"])
        kept = {k: float(v) for k, v in gates.kept_counts().items()}
        want = round(float(expected_params(model, gates, kept)))
        expected = float(wrapper.expected_sparsity().detach())
        structure = prune_model(model, gates)
        params = sum(p.numel() for p in model.parameters())
        if params != want:
            raise RuntimeError(f"the pruned model has {params} parameters, {want} expected")
        achieved = 1.0 - params / gates.original_params
        log.info("pruned to %d of %d parameters: sparsity %.4f (expected %.4f, target %.4f)",
                 params, gates.original_params, achieved, expected,
                 self.config.target_sparsity)  # fmt: skip
        info.update(expected_sparsity=round(expected, 5), sparsity=round(achieved, 5),
                    structure=structure, lambda1=float(wrapper.lagrangian.lambda1.detach()),
                    lambda2=float(wrapper.lagrangian.lambda2.detach()))  # fmt: skip
        self.info.update({k: info[k] for k in ("expected_sparsity", "sparsity")})
        return model, info

    def _summary(self) -> dict[str, Any]:
        keys = ("mode", "distill_layers", "prune_units", "target_sparsity", "expected_sparsity",
                "masks_sparsity", "sparsity", "original_params", "start_params")  # fmt: skip
        summary = {k: self.info[k] for k in keys if k in self.info}
        summary["best_dev_loss"] = self.state.best_metric
        best = self.out / "best" / PRUNE_JSON
        if best.is_file():
            summary["num_params"] = json.loads(best.read_text(encoding="utf-8"))["num_params"]
        return summary


def prune_distill(
    teacher_dir: PathLike,
    train_dir: PathLike,
    dev_dir: PathLike,
    out_dir: PathLike,
    config: PruneTrainConfig,
    *,
    force: bool = False,
) -> dict[str, Any]:
    """Prune a copy of the teacher while distilling it (or resume the same run; ``force`` starts
    over) and return the summary written to ``out_dir/train.json``."""
    with training_lock(out_dir):
        trainer = PruneKDTrainer(teacher_dir, train_dir, dev_dir, out_dir, config, force=force)
        return trainer.train()


def final_distill(
    teacher_dir: PathLike,
    student_dir: PathLike,
    train_dir: PathLike,
    dev_dir: PathLike,
    out_dir: PathLike,
    config: PruneTrainConfig,
    *,
    force: bool = False,
) -> dict[str, Any]:
    """Distil a pruned model (``prune``'s output) from the teacher without the regulariser,
    keeping the best checkpoint on the dev loss; returns the summary (``out_dir/train.json``)."""
    with training_lock(out_dir):
        trainer = PruneKDTrainer(teacher_dir, train_dir, dev_dir, out_dir, config, student_dir,
                                 force=force)  # fmt: skip
        return trainer.train()
