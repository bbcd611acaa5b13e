"""Knowledge-distillation training of a Whisper student, on accelerate.

loss = α_ce · CE(labels) + α_kd · T² · D(teacher ‖ student) over the label tokens, with the
teacher in one of three modes:

- ``online``: teacher and student each run their own encoder (the student's may train);
- ``shared_encoder``: the frozen encoder (identical in both, as ``init-student`` copies it)
  runs once per step and both decoders read its output;
- ``cache``: encoder states and sparse RS-KD teacher samples (of the plain or the timestamped
  label, as the example was drawn) are read from the pseudo-label caches, so no teacher runs at
  all (the KD term is the unbiased RS-KD estimate; with previous context, of the teacher's
  distribution without it: :mod:`~speechdistill.train.data`). A student whose encoder is not
  the teacher's (fewer layers, or a pruned encoder: ``init-student --encoder``) runs its own
  encoder on the audio and takes only the RS-KD samples from the cache.

In every mode the context positions and padding are masked out of CE and KD alike (label -100;
the sparse targets cover the label's tokens only).

With per-utterance weights (the train dir's ``utt2weight``, ``sample_weights``) every token
term of an example (CE, KD, RS-KD, on-policy KD) is multiplied by its utterance's weight and
each term is the weighted mean ``Σ w·ℓ / Σ w`` over its positions of the step (the weighted
counts of :meth:`WhisperKDTrainer.count_items`). The weights file's digest is an input of the
run: a resume with other weights is refused.

With ``on_policy_weight`` (on-policy KD, as in GKD, Agarwal et al. 2024, and DistiLLM) the
student also decodes every batch itself, greedily or by sampling, and
``α_op · T² · D(teacher ‖ student)`` over the positions of its own decode (up to its
``<|endoftext|>``) is added: the pseudo-labels only show it the teacher's prefixes, never its own
errors, so nothing teaches it to leave a repetition loop it has started. The teacher's decoder
runs on those decodes in every mode (from the cached encoder states in ``cache`` mode; in
``online`` mode the student's encoder runs on the batch three times: to decode, then once each
for labels and decodes in the trained forward).

The dev set is decoded every ``eval_steps`` (real greedy decoding, WER against its ``text``, or
its ``text.teacher`` when it has no reference) and the best checkpoint on dev is kept: dev only,
never a test set; each evaluation's hypotheses are kept in ``dev_decode/step_<N>.text``.
Checkpoints hold model, optimiser, scheduler, RNG states, EMA and the data
position, so a killed run resumes exactly where it stopped.
"""

from __future__ import annotations

import copy
import functools
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from speechdistill.datadir import DataDir, check_stage_input
from speechdistill.datadir.core import write_kv
from speechdistill.datadir.weights import weights_sha256
from speechdistill.inference.whisper import DecodeConfig, WhisperTranscriber, whisper_features
from speechdistill.train import common
from speechdistill.train.common import (  # noqa: F401  (re-exported)
    CHECKPOINTS,
    EMA,
    STATE,
    AcceleratedTrainer,
    EpochSampler,
    make_accelerator,
    make_scheduler,
)
from speechdistill.train.common import tensorboard_writer as _tensorboard
from speechdistill.train.config import TrainConfig
from speechdistill.train.data import KDDataset, collate, sample_weights_file
from speechdistill.train.losses import (
    IGNORE_INDEX,
    ce_loss,
    distil_whisper_loss,
    kd_loss,
    sparse_kd_loss,
)
from speechdistill.train.run import (
    check_run,
    data_input,
    model_input,
    run_identity,
    teacher_input,
    training_lock,
)
from speechdistill.utils import PathLike
from speechdistill.whisper.language import check_model_language

log = logging.getLogger(__name__)

#: where each evaluation writes its dev hypotheses (Kaldi text, one file per step)
DEV_DECODE = "dev_decode"


@dataclass
class TrainerState:
    """What a checkpoint needs besides the accelerate state."""

    step: int = 0
    epoch: int = 0
    batch_in_epoch: int = 0
    best_wer: float | None = None
    best_step: int | None = None
    evals: list[dict[str, Any]] = field(default_factory=list)


# --------------------------------------------------------------------------------------------
# models


def _load(model_dir: PathLike, device, dtype=None):
    from speechdistill.teachers.whisper import load_teacher

    return load_teacher(str(model_dir), device=str(device), dtype=dtype)


class _NoEncoder(torch.nn.Module):
    """Stands in for the teacher's encoder where its states come from the cache, so that its
    weights (0.6 GB for large-v3 in bf16) are not kept for nothing."""

    def forward(self, *args, **kwargs):
        raise RuntimeError("teacher_mode=cache reads the teacher's encoder states from the cache")


def _same_weights(own: dict[str, torch.Tensor], theirs: dict[str, torch.Tensor]) -> bool:
    """Whether two state dicts hold the same weights, ``own`` seen at ``theirs``' precision (a
    teacher loaded in bf16/fp16 for mixed-precision training still shares its encoder)."""
    return own.keys() == theirs.keys() and all(
        torch.equal(own[k].to(theirs[k].device, theirs[k].dtype), theirs[k]) for k in own
    )


def _same_encoder(student, teacher) -> bool:
    """Whether the student's encoder holds the (loaded) teacher's weights."""
    return _same_weights(student.model.encoder.state_dict(), teacher.model.encoder.state_dict())


def _shares_teacher_encoder(student, teacher_dir: PathLike) -> bool:
    """Whether the student's encoder holds the teacher's weights, read from the teacher's
    safetensors (in cache mode the teacher is not loaded). A teacher that is no local directory
    is trusted to be the student's when ``student.json`` says so or there is none."""
    from safetensors import safe_open

    from speechdistill.init_student import read_student_info

    files = sorted(Path(teacher_dir).glob("*.safetensors")) if Path(teacher_dir).is_dir() else []
    if not files:
        info = read_student_info(student.name_or_path)
        return info is None or info.shares_teacher_encoder
    prefix, theirs = "model.encoder.", {}
    for f in files:
        with safe_open(str(f), framework="pt") as st:
            theirs.update({k[len(prefix) :]: st.get_tensor(k) for k in st.keys()  # noqa: SIM118
                           if k.startswith(prefix)})  # fmt: skip
    return _same_weights(student.model.encoder.state_dict(), theirs)


def _spec_augment(model, feats: torch.Tensor) -> torch.Tensor:
    """transformers' Whisper SpecAugment (the model config's ``mask_time_prob``, … ; numpy's
    seeded RNG), applied once here so that teacher and student see the same masked features in
    every teacher mode. ``apply_spec_augment`` stays off in the config: the student's own
    forward would mask a second time, and the saved student would carry it."""
    config = model.config
    config.apply_spec_augment = True
    try:
        return model.model._mask_input_features(feats)
    finally:
        config.apply_spec_augment = False


def _freeze(student, config: TrainConfig) -> None:
    if config.freeze_encoder:
        student.model.encoder.requires_grad_(False)
    if config.freeze_embeddings:
        student.model.decoder.embed_tokens.requires_grad_(False)
        student.model.decoder.embed_positions.requires_grad_(False)


# --------------------------------------------------------------------------------------------
# evaluation


class DevEvaluator:
    """Greedy decoding of the dev set (:class:`~speechdistill.inference.whisper.WhisperTranscriber`,
    each utterance cut to the 30 s window) and its WER. With a frozen encoder its states are
    computed once and reused at every evaluation (only the decoder changes). With
    ``eval_temperature_fallback`` the dev set is decoded as ``decode --temperature-fallback``
    does, so that the checkpoint is chosen with the decoding used at test."""

    def __init__(self, dev_dir: PathLike, processor, config: TrainConfig, encoder=None):
        from speechdistill.audio import AudioReader

        d = DataDir(dev_dir)
        self.ref_file = "text" if d.exists("text") else "text.teacher"
        if not d.exists(self.ref_file):
            raise FileNotFoundError(f"{dev_dir}: the dev set needs text (or text.teacher)")
        self.refs = d.read(self.ref_file)
        reader = AudioReader(dev_dir)
        utts = [u for u in reader.utt_ids if u in self.refs]
        if config.eval_max_utts:
            utts = utts[: config.eval_max_utts]
        self.utts = utts
        self.processor = processor
        self.config = config
        self.reader = reader
        self.states: dict[str, torch.Tensor] | None = None
        if encoder is not None and not config.eval_temperature_fallback:  # fallback: features
            self.states = {}
            p = next(encoder.parameters())
            for i in range(0, len(utts), config.eval_batch_size):
                chunk = utts[i : i + config.eval_batch_size]
                audios = [reader(u) for u in chunk]
                feats = whisper_features(processor.feature_extractor, audios, long_form=False)
                with torch.inference_mode():
                    out = encoder(feats["input_features"].to(p.device, p.dtype)).last_hidden_state
                self.states.update(zip(chunk, out, strict=True))

    def transcriber(self, model) -> WhisperTranscriber:
        """``model``'s dev decoding: greedy, or as ``decode --temperature-fallback`` (long-form
        beyond 30 s included)."""
        fallback = self.config.eval_temperature_fallback
        config = DecodeConfig(language=self.config.language, task=self.config.task,
                              max_new_tokens=self.config.eval_max_new_tokens,
                              temperature_fallback=fallback)  # fmt: skip
        return WhisperTranscriber(model, self.processor, config, long_form=fallback)

    @torch.inference_mode()
    def __call__(self, model) -> tuple[float, dict[str, str]]:
        from speechdistill.scoring import score

        was_training = model.training
        transcriber = self.transcriber(model)  # in eval mode
        hyps: dict[str, str] = {}
        bs = self.config.eval_batch_size
        for i in range(0, len(self.utts), bs):
            chunk = self.utts[i : i + bs]
            if self.config.eval_temperature_fallback:
                cuda = [torch.cuda.current_device()] if model.device.type == "cuda" else []
                with torch.random.fork_rng(devices=cuda):  # training's RNG stream stays as is
                    ids = transcriber.generate([self.reader(u) for u in chunk])
            elif self.states is not None:
                ids = transcriber.generate_from_states(torch.stack([self.states[u] for u in chunk]))
            else:
                ids = transcriber.generate([self.reader(u) for u in chunk])
            hyps.update(zip(chunk, transcriber.decode(ids), strict=True))
        model.train(was_training)
        refs = {u: self.refs[u] for u in self.utts}
        wer = score(refs, hyps, normalizer=self.config.eval_normalizer, bootstrap=0).wer
        return wer, hyps


# --------------------------------------------------------------------------------------------
# the trainer


class WhisperKDTrainer(AcceleratedTrainer):
    """Set up models, data, optimiser and accelerate; :meth:`train` runs to ``max_steps``."""

    loss_keys = ("loss", "ce", "kd")
    log_fields = ("step", "epoch", "loss", "ce", "kd", "grad_norm", "lr", "sec_per_step")

    def __init__(
        self,
        student_dir: PathLike,
        teacher_dir: PathLike,
        train_dir: PathLike,
        dev_dir: PathLike,
        out_dir: PathLike,
        config: TrainConfig,
        *,
        force: bool = False,
    ):
        from accelerate.utils import set_seed

        check_stage_input(train_dir, "train", needs=(config.label_file,))  # before any model
        if dev_dir is not None:
            check_stage_input(dev_dir, "train (dev set)")
        weights_file = sample_weights_file(train_dir, config.sample_weights)
        self.config = config
        self.out = Path(out_dir)
        self._claim_out()
        self.acc = make_accelerator(config.mixed_precision)
        inputs = {"student": model_input(student_dir), "teacher": teacher_input(teacher_dir),
                  "train": data_input(train_dir), "dev": data_input(dev_dir)}  # fmt: skip
        if weights_file is not None:  # only then: runs without weights keep their record
            inputs["sample_weights"] = {"path": str(weights_file),
                                        "sha256": weights_sha256(weights_file)}  # fmt: skip
        check_run(self.out, run_identity(config, inputs), force=force,
                  main_process=self.acc.is_main_process, extra_files=[DEV_DECODE])  # fmt: skip
        self.acc.wait_for_everyone()
        set_seed(config.seed)
        device = self.acc.device
        # float32 master weights whatever the device (mixed precision autocasts the compute)
        self.student, self.processor = _load(student_dir, device, torch.float32)
        self.student.config.apply_spec_augment = False  # masking is ours (config.specaugment)
        self.student.train()
        _freeze(self.student, config)
        if config.gradient_checkpointing:
            # the new name in recent transformers (the old one is deprecated there)
            enable = getattr(self.student, "activation_checkpointing_enable", None)
            (enable or self.student.gradient_checkpointing_enable)()
        self.teacher = None
        cache = None
        if config.teacher_mode == "cache":
            from speechdistill.cache import CacheReader
            from speechdistill.teachers.identity import teacher_identity

            if not config.cache_dir:
                raise ValueError("teacher_mode=cache needs cache_dir (the pseudo-label caches)")
            cache = CacheReader(config.cache_dir, teacher=teacher_identity(teacher_dir))
            t = cache.index.settings.get("rskd_temperature")
            if t is not None and float(t) != config.temperature:
                raise ValueError(
                    f"the RS-KD cache was sampled at temperature {t}; train with --temperature {t}"
                )
        if config.teacher_mode != "cache" or config.on_policy_weight:
            precision = self.acc.mixed_precision  # "no" where fp16 was asked for on the CPU
            dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(precision)
            self.teacher, _ = _load(teacher_dir, device, dtype)
            self.teacher.requires_grad_(False).eval()
            if config.teacher_mode == "cache":  # on-policy KD runs the teacher's decoder only
                self.teacher.model.encoder = _NoEncoder()
            if config.teacher_mode == "shared_encoder" and not _same_encoder(
                self.student, self.teacher
            ):
                raise ValueError(
                    "teacher_mode=shared_encoder needs the student's encoder to equal the "
                    "teacher's (init-student without --encoder-layers); use teacher_mode=online"
                )
        cached_states = cache is not None and _shares_teacher_encoder(self.student, teacher_dir)
        if cached_states and not config.freeze_encoder:
            raise ValueError(
                "the student's encoder is the teacher's, whose states the cache holds: it cannot "
                "train from the cache (freeze_encoder=true, or teacher_mode=online)"
            )
        if cache is not None and not cached_states:
            if config.on_policy_weight:
                raise ValueError(
                    "on-policy KD from the cache needs the teacher's encoder states: this "
                    "student's encoder is not the teacher's; use teacher_mode=online"
                )
            if self.acc.is_main_process:
                log.info("the student's encoder is not the teacher's: it runs on the audio; "
                         "the cache gives the teacher's RS-KD samples")  # fmt: skip
        dataset = KDDataset(train_dir, self.processor, self.student.generation_config, config,
                            cache=cache, weights_file=weights_file,
                            cached_states=cached_states)  # fmt: skip
        if dataset.weights is not None and self.acc.is_main_process:
            w = list(dataset.weights.values())
            log.info("training with per-utterance weights from %s: %d utterances, mean %.3f",
                     weights_file, len(w), sum(w) / len(w))  # fmt: skip
        self.pad_id = self.student.generation_config.pad_token_id
        self._prepare(self.student, dataset, functools.partial(collate, pad_id=self.pad_id),
                      train_dir)  # fmt: skip
        self.ema = (
            EMA(self.acc.unwrap_model(self.student), config.ema_decay) if config.ema_decay else None
        )
        frozen = config.freeze_encoder and self.acc.is_main_process
        encoder = self.acc.unwrap_model(self.student).model.encoder if frozen else None
        self.evaluator = (
            DevEvaluator(dev_dir, self.processor, config, encoder)
            if self.acc.is_main_process
            else None
        )
        if config.on_policy_weight:
            self.loss_keys = (*self.loss_keys, "on_policy")
            at = self.log_fields.index("kd") + 1
            self.log_fields = (*self.log_fields[:at], "on_policy", *self.log_fields[at:])
        self.state = TrainerState()
        self.csv = self.out / "train_log.csv"
        self.tb = _tensorboard(self.out / "tensorboard") if self.acc.is_main_process else None

    # ---------------------------------------------------------------------------- one step
    def prepare_batch(self, batch: dict[str, Any]) -> dict[str, Any]:
        """SpecAugment, the shared encoder's pass and the student's own decode (on-policy KD),
        before the window's items are counted: the decoded tokens are items of their own."""
        cfg = self.config
        inner = self.acc.unwrap_model(self.student)
        if "input_features" in batch and cfg.specaugment:
            batch["input_features"] = _spec_augment(inner, batch["input_features"])
        if cfg.teacher_mode == "shared_encoder":
            with torch.no_grad(), self.acc.autocast():
                out = inner.model.encoder(batch["input_features"])
            batch["encoder_states"] = out.last_hidden_state
        if cfg.on_policy_weight:
            batch["policy_ids"], batch["policy_mask"] = self._student_decode(batch, inner)
        return batch

    @torch.no_grad()
    def _student_decode(self, batch: dict[str, Any], model) -> tuple[torch.Tensor, torch.Tensor]:
        """The student's transcript of each utterance of ``batch``: greedy, or sampled at
        ``on_policy_temperature``, after the plain prompt ``<|sot|> P <|notimestamps|>``.
        Returns the token ids, prompt included, and the positions of ``ids[:, 1:]`` to distil:
        each decoded token up to the first ``<|endoftext|>`` (included), at most 1.5 × the
        row's own label length (so a row's terms do not depend on the rest of its batch)."""
        from transformers import GenerationMixin
        from transformers.modeling_outputs import BaseModelOutput

        cfg, prompt = self.config, self.dataset.prompt
        head = [prompt.sot, *prompt.prefix, prompt.no_timestamps]
        lengths = (batch["labels"] != IGNORE_INDEX).sum(1)
        caps = torch.clamp(lengths + lengths // 2, max=cfg.max_label_tokens)
        gen = copy.deepcopy(model.generation_config)
        sample = cfg.on_policy_temperature > 0
        gen.max_new_tokens = None  # max_length, prompt included (no warning about both)
        gen.max_length = len(head) + int(caps.max())
        gen.do_sample = sample
        gen.temperature = cfg.on_policy_temperature if sample else None
        gen.top_k, gen.top_p = (0, 1.0) if sample else (None, None)  # the full distribution
        if "encoder_states" not in batch:  # the student's own encoder
            inputs: dict[str, Any] = {"input_features": batch["input_features"]}
        else:
            enc = batch["encoder_states"].to(model.dtype)
            inputs = {"encoder_outputs": BaseModelOutput(last_hidden_state=enc)}
        start = torch.tensor([head] * len(caps), device=caps.device)
        was_training = model.training
        model.eval()
        try:
            with self.acc.autocast():
                # plain autoregressive decoding from the prompt (Whisper's generate strips it)
                ids = GenerationMixin.generate(model, **inputs, decoder_input_ids=start,
                                               generation_config=gen)  # fmt: skip
        finally:
            model.train(was_training)
        targets = ids[:, 1:]
        index = torch.arange(targets.shape[1], device=ids.device) - (len(head) - 1)
        decoded = (index >= 0) & (index < caps.to(ids.device)[:, None])  # each row's own cap
        eot = (targets == prompt.eot) & decoded
        after_eot = (eot.cumsum(1) - eot.long()) > 0
        return ids, decoded & ~after_eot

    def count_items(self, batch: dict[str, Any]) -> dict[str, torch.Tensor]:
        """Label tokens (CE, and KD on the full distributions), cached positions (RS-KD) and
        the student's decoded tokens (on-policy KD); with utterance weights, the sums of their
        weights."""
        w = batch.get("utt_weights")

        def count(mask: torch.Tensor) -> torch.Tensor:
            return mask.sum() if w is None else (mask.float() * w.to(mask.device)[:, None]).sum()

        counts = {"labels": count(batch["labels"] != IGNORE_INDEX)}
        if self.config.teacher_mode == "cache":
            counts["cache"] = count(batch["sparse"].mask)
        if "policy_mask" in batch:
            counts["policy"] = count(batch["policy_mask"])
        return counts

    @staticmethod
    def _token_weights(batch: dict[str, Any], shape: torch.Size, device) -> torch.Tensor | None:
        """Each position's utterance weight, ``shape`` ``(B, L)``; None without weights."""
        w = batch.get("utt_weights")
        return None if w is None else w.to(device)[:, None].expand(shape)

    def _teacher_states(self, batch: dict[str, Any]) -> torch.Tensor:
        """The teacher's encoder output: shared, cached, or its own pass (online)."""
        dtype = self.teacher.dtype
        if self.config.teacher_mode == "online":
            return self.teacher.model.encoder(batch["input_features"].to(dtype)).last_hidden_state
        return batch["encoder_states"].to(dtype)

    def compute_loss(self, batch: dict[str, Any]) -> dict[str, torch.Tensor]:
        cfg = self.config
        ce_w, kd_w = cfg.weights
        labels = batch["labels"]
        dec_in = batch["decoder_input_ids"]
        n, width = dec_in.shape
        policy = batch.get("policy_ids")
        if policy is not None:  # one student forward over the labels and its own decodes
            policy = policy[:, :-1]  # decoder inputs: the decode's tokens but the last
            # right-padded: a causal decoder's logits at the real positions do not see padding
            rows = [*dec_in, *policy.to(dec_in.device)]
            dec_in = torch.nn.utils.rnn.pad_sequence(rows, batch_first=True,
                                                     padding_value=self.pad_id)  # fmt: skip
        student = self.student
        if "encoder_states" not in batch:  # the student's own encoder
            feats = batch["input_features"]
            feats = feats if policy is None else torch.cat([feats, feats])
            logits = student(input_features=feats, decoder_input_ids=dec_in).logits
        else:
            enc = batch["encoder_states"].to(next(student.parameters()).dtype)
            enc = enc if policy is None else torch.cat([enc, enc])
            logits = student(encoder_outputs=(enc,), decoder_input_ids=dec_in).logits
        t_enc = None
        if self.teacher is not None:
            with torch.no_grad():
                t_enc = self._teacher_states(batch)
        label_logits = logits[:n, :width]
        tw = self._token_weights(batch, labels.shape, logits.device)
        if cfg.teacher_mode == "cache":
            sp = batch["sparse"]
            # each term is a mean over its own positions (the cache covers the hypothesis only)
            ce = ce_loss(label_logits, labels, token_weights=tw)
            ce = ce * self.item_scale("labels").to(logits.device)
            kd = sparse_kd_loss(label_logits, sp.ids.to(logits.device),
                                sp.weights.to(logits.device), sp.mask.to(logits.device),
                                temperature=cfg.temperature, token_weights=tw)  # fmt: skip
            kd = kd * self.item_scale("cache").to(kd.device)
            losses = {"loss": ce_w * ce + kd_w * kd, "ce": ce.detach(), "kd": kd.detach()}
        else:
            with torch.no_grad():
                t_logits = self.teacher(
                    encoder_outputs=(t_enc,), decoder_input_ids=dec_in[:n, :width]
                ).logits
            losses = distil_whisper_loss(label_logits, labels, t_logits, alpha_ce=ce_w,
                                         alpha_kd=kd_w, temperature=cfg.temperature,
                                         divergence=cfg.divergence, skew=cfg.skew,
                                         token_weights=tw)  # fmt: skip
            scale = self.item_scale("labels").to(labels.device)
            losses = {k: v * scale for k, v in losses.items()}
        if policy is not None:
            with torch.no_grad():
                t_policy = self.teacher(encoder_outputs=(t_enc,), decoder_input_ids=policy).logits
            pw = self._token_weights(batch, batch["policy_mask"].shape, logits.device)
            op = kd_loss(logits[n:, : policy.shape[1]], t_policy, batch["policy_mask"],
                         divergence=cfg.divergence, temperature=cfg.temperature,
                         skew=cfg.skew, token_weights=pw)  # fmt: skip
            op = op * self.item_scale("policy").to(op.device)
            losses["loss"] = losses["loss"] + cfg.on_policy_weight * op
            losses["on_policy"] = op.detach()
        return losses

    # ---------------------------------------------------------------------------- evaluation
    def _evaluate(self) -> None:
        if self.acc.is_main_process:
            model = self.acc.unwrap_model(self.student)
            if self.ema is not None:
                self.ema.swap(model)
            t0 = time.perf_counter()
            wer, hyps = self.evaluator(model)
            # the hypotheses of every evaluation, to find what moved the dev WER (a loop, …)
            write_kv(self.out / DEV_DECODE / f"step_{self.state.step:07d}.text", hyps)
            row = {"step": self.state.step, "dev_wer": round(wer, 5),
                   "eval_seconds": round(time.perf_counter() - t0, 2)}  # fmt: skip
            self.state.evals.append(row)
            log.info("step %d: dev WER %.2f %% (%s)", self.state.step, 100 * wer,
                     self.evaluator.ref_file)  # fmt: skip
            if self.tb is not None:
                self.tb.add_scalar("dev/wer", wer, self.state.step)
            if self.state.best_wer is None or wer < self.state.best_wer:
                self.state.best_wer, self.state.best_step = wer, self.state.step
                self._save_model(model, self.out / "best")
            if self.ema is not None:
                self.ema.swap(model)
            self._plot()
        self.acc.wait_for_everyone()

    # ---------------------------------------------------------------------------- saving
    def _write_model(self, model, directory: Path) -> None:
        model.save_pretrained(directory, safe_serialization=True)
        self.processor.save_pretrained(directory)

    def _summary(self) -> dict[str, Any]:
        return {"best_dev_wer": self.state.best_wer, "dev_reference": self.evaluator.ref_file}

    def _plot(self) -> None:
        plot_curves(self.out, self.state.evals, self.loss_keys)


LOG_FIELDS = WhisperKDTrainer.log_fields


def plot_curves(
    out_dir: PathLike,
    evals: list[dict[str, Any]],
    loss_keys: tuple[str, ...] = ("loss", "ce", "kd"),
) -> Path | None:
    """``curves.png``: training losses, learning rate and dev WER against steps."""
    return common.plot_curves(out_dir, evals, loss_keys=loss_keys, metric="dev_wer",
                              metric_title="dev WER (greedy)", ylabel="WER %", percent=True)  # fmt: skip


def train_whisper(
    student_dir: PathLike,
    teacher_dir: PathLike,
    train_dir: PathLike,
    dev_dir: PathLike,
    out_dir: PathLike,
    config: TrainConfig,
    *,
    force: bool = False,
) -> dict[str, Any]:
    """Train (or resume the same run: see :mod:`~speechdistill.train.run`; ``force`` starts
    over) and return the summary written to ``out_dir/train.json``."""
    # the language and the weights file before the output dir is made
    check_model_language(student_dir, config.language, "the student", required=True)
    check_model_language(teacher_dir, config.language, "the teacher")
    sample_weights_file(train_dir, config.sample_weights)  # sample_weights=true: the file
    with training_lock(out_dir):
        trainer = WhisperKDTrainer(student_dir, teacher_dir, train_dir, dev_dir, out_dir, config,
                                   force=force)  # fmt: skip
        return trainer.train()
