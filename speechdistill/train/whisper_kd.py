"""Knowledge-distillation training of a Whisper student, on accelerate.

loss = α_ce · CE(labels) + α_kd · T² · D(teacher ‖ student) over the label tokens, with the
teacher in one of three modes:

- ``online``: teacher and student each run their own encoder (the student's may train);
- ``shared_encoder``: the frozen encoder (identical in both, as ``init-student`` copies it)
  runs once per step and both decoders read its output;
- ``cache``: encoder states and sparse RS-KD teacher samples are read from the pseudo-label
  caches, so no teacher runs at all (the KD term is the unbiased RS-KD estimate).

The dev set is decoded every ``eval_steps`` (real greedy decoding, WER against its ``text``, or
its ``text.teacher`` when it has no reference) and the best checkpoint on dev is kept: dev only,
never a test set. Checkpoints hold model, optimiser, scheduler, RNG states, EMA and the data
position, so a killed run resumes exactly where it stopped.
"""

from __future__ import annotations

import csv
import json
import logging
import math
import shutil
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from tqdm.auto import tqdm

from speechdistill.datadir import DataDir
from speechdistill.losses import ce_loss, distil_whisper_loss, sparse_kd_loss
from speechdistill.train.config import TrainConfig
from speechdistill.train.data import KDDataset, collate
from speechdistill.utils import PathLike, atomic_write_text

log = logging.getLogger(__name__)

CHECKPOINTS = "checkpoints"
STATE = "trainer_state.json"


class EpochSampler(torch.utils.data.Sampler[int]):
    """A seeded permutation per epoch (the same on every process; accelerate shards it)."""

    def __init__(self, n: int, seed: int):
        self.n, self.seed, self.epoch = n, seed, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __iter__(self):
        g = torch.Generator().manual_seed(self.seed * 100_003 + self.epoch)
        return iter(torch.randperm(self.n, generator=g).tolist())

    def __len__(self) -> int:
        return self.n


class EMA:
    """Exponential moving average of the trainable parameters (evaluated and saved in their stead)."""

    def __init__(self, model: torch.nn.Module, decay: float):
        self.decay = decay
        self.shadow = {n: p.detach().clone().float() for n, p in model.named_parameters()
                       if p.requires_grad}  # fmt: skip

    @torch.no_grad()
    def update(self, model: torch.nn.Module) -> None:
        for n, p in model.named_parameters():
            if n in self.shadow:
                self.shadow[n].lerp_(p.detach().float(), 1.0 - self.decay)

    @torch.no_grad()
    def swap(self, model: torch.nn.Module) -> None:
        """Exchange the model's weights with the averaged ones (call twice to undo)."""
        for n, p in model.named_parameters():
            if n in self.shadow:
                tmp = p.detach().clone()
                p.copy_(self.shadow[n].to(p.dtype))
                self.shadow[n].copy_(tmp.float())


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
    from speechdistill.teacher import load_teacher

    return load_teacher(str(model_dir), device=str(device), dtype=dtype)


def _same_encoder(a, b) -> bool:
    sa, sb = a.model.encoder.state_dict(), b.model.encoder.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k].to(sa[k].device)) for k in sa)


def _freeze(student, config: TrainConfig) -> None:
    if config.freeze_encoder:
        student.model.encoder.requires_grad_(False)
    if config.freeze_embeddings:
        student.model.decoder.embed_tokens.requires_grad_(False)
        student.model.decoder.embed_positions.requires_grad_(False)


def _param_groups(model, weight_decay: float) -> list[dict[str, Any]]:
    decay, no_decay = [], []
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        (no_decay if p.ndim < 2 or "layer_norm" in name else decay).append(p)
    return [{"params": decay, "weight_decay": weight_decay},
            {"params": no_decay, "weight_decay": 0.0}]  # fmt: skip


# --------------------------------------------------------------------------------------------
# evaluation


class DevEvaluator:
    """Greedy decoding of the dev set and its WER. With a frozen encoder its states are
    computed once and reused at every evaluation (only the decoder changes)."""

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
        if encoder is not None:
            self.states = {}
            for i in range(0, len(utts), config.eval_batch_size):
                chunk = utts[i : i + config.eval_batch_size]
                feats = self._features(chunk, encoder)
                with torch.inference_mode():
                    out = encoder(feats).last_hidden_state
                self.states.update(zip(chunk, out, strict=True))

    def _features(self, utts: list[str], model) -> torch.Tensor:
        audios = [self.reader(u) for u in utts]
        feats = self.processor.feature_extractor(audios, sampling_rate=16000, return_tensors="pt")
        p = next(model.parameters())
        return feats.input_features.to(p.device, p.dtype)

    @torch.inference_mode()
    def __call__(self, model) -> tuple[float, dict[str, str]]:
        from transformers.modeling_outputs import BaseModelOutput

        from speechdistill.scoring import score

        was_training = model.training
        model.eval()
        hyps: dict[str, str] = {}
        bs = self.config.eval_batch_size
        for i in range(0, len(self.utts), bs):
            chunk = self.utts[i : i + bs]
            if self.states is not None:
                enc = torch.stack([self.states[u] for u in chunk])
                ids = model.generate(encoder_outputs=BaseModelOutput(last_hidden_state=enc),
                                     max_new_tokens=self.config.eval_max_new_tokens)  # fmt: skip
            else:
                ids = model.generate(self._features(chunk, model),
                                     max_new_tokens=self.config.eval_max_new_tokens)  # fmt: skip
            texts = self.processor.batch_decode(ids, skip_special_tokens=True)
            hyps.update((u, " ".join(t.split())) for u, t in zip(chunk, texts, strict=True))
        model.train(was_training)
        refs = {u: self.refs[u] for u in self.utts}
        wer = score(refs, hyps, normalizer=self.config.eval_normalizer, bootstrap=0).wer
        return wer, hyps


# --------------------------------------------------------------------------------------------
# the trainer


class WhisperKDTrainer:
    """Set up models, data, optimiser and accelerate; :meth:`train` runs to ``max_steps``."""

    def __init__(
        self,
        student_dir: PathLike,
        teacher_dir: PathLike,
        train_dir: PathLike,
        dev_dir: PathLike,
        out_dir: PathLike,
        config: TrainConfig,
    ):
        from accelerate import Accelerator
        from accelerate.utils import set_seed
        from transformers import get_scheduler

        self.config = config
        self.out = Path(out_dir)
        self.out.mkdir(parents=True, exist_ok=True)
        self.acc = Accelerator(
            mixed_precision=config.mixed_precision,
            gradient_accumulation_steps=config.grad_accum,
            cpu=not torch.cuda.is_available(),
        )
        set_seed(config.seed)
        device = self.acc.device
        self.student, self.processor = _load(student_dir, device)
        self.student.train()
        _freeze(self.student, config)
        if config.gradient_checkpointing:
            self.student.gradient_checkpointing_enable()
        self.teacher = None
        cache = None
        if config.teacher_mode == "cache":
            from speechdistill.cache import CacheReader
            from speechdistill.pseudo_label import teacher_identity

            if not config.cache_dir:
                raise ValueError("teacher_mode=cache needs cache_dir (the pseudo-label caches)")
            cache = CacheReader(config.cache_dir, teacher=teacher_identity(teacher_dir))
            t = cache.index.settings.get("rskd_temperature")
            if t is not None and float(t) != config.temperature:
                raise ValueError(
                    f"the RS-KD cache was sampled at temperature {t}; train with --temperature {t}"
                )
        else:
            dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(config.mixed_precision)
            self.teacher, _ = _load(teacher_dir, device, dtype)
            self.teacher.requires_grad_(False).eval()
            if config.teacher_mode == "shared_encoder" and not _same_encoder(
                self.student, self.teacher
            ):
                raise ValueError(
                    "teacher_mode=shared_encoder needs the student's encoder to equal the "
                    "teacher's (init-student without --encoder-layers); use teacher_mode=online"
                )
        self.dataset = KDDataset(train_dir, self.processor, self.student.generation_config,
                                 config, cache=cache)  # fmt: skip
        self.sampler = EpochSampler(len(self.dataset), config.seed)
        pad = self.student.generation_config.pad_token_id
        loader = torch.utils.data.DataLoader(
            self.dataset,
            batch_size=config.batch_size,
            sampler=self.sampler,
            collate_fn=lambda items: collate(items, pad),
            num_workers=config.num_workers,
            drop_last=True,
        )
        optimizer = torch.optim.AdamW(
            _param_groups(self.student, config.weight_decay), lr=config.lr
        )
        scheduler = get_scheduler(
            config.lr_schedule,
            optimizer,
            num_warmup_steps=config.warmup_steps,
            num_training_steps=config.max_steps,
        )
        self.student, self.optimizer, self.loader, self.scheduler = self.acc.prepare(
            self.student, optimizer, loader, scheduler
        )
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
        self.state = TrainerState()
        self.csv = self.out / "train_log.csv"
        self.tb = _tensorboard(self.out / "tensorboard") if self.acc.is_main_process else None

    # ---------------------------------------------------------------------------- one step
    def compute_loss(self, batch: dict[str, Any]) -> dict[str, torch.Tensor]:
        cfg = self.config
        ce_w, kd_w = cfg.weights
        labels = batch["labels"]
        dec_in = batch["decoder_input_ids"]
        student = self.student
        if cfg.teacher_mode == "cache":
            enc = batch["encoder_states"].to(next(student.parameters()).dtype)
            logits = student(encoder_outputs=(enc,), decoder_input_ids=dec_in).logits
            ce = ce_loss(logits, labels)
            sp = batch["sparse"]
            kd = sparse_kd_loss(logits, sp.ids.to(logits.device), sp.weights.to(logits.device),
                                sp.mask.to(logits.device), temperature=cfg.temperature)  # fmt: skip
            return {"loss": ce_w * ce + kd_w * kd, "ce": ce.detach(), "kd": kd.detach()}
        feats = batch["input_features"]
        inner = self.acc.unwrap_model(student)
        if cfg.specaugment:
            feats = inner.model._mask_input_features(feats)  # transformers' SpecAugment
        with torch.no_grad():
            if cfg.teacher_mode == "shared_encoder":
                enc = inner.model.encoder(feats).last_hidden_state
                t_logits = self.teacher(encoder_outputs=(enc.to(self.teacher.dtype),),
                                        decoder_input_ids=dec_in).logits  # fmt: skip
            else:
                t_logits = self.teacher(input_features=feats.to(self.teacher.dtype),
                                        decoder_input_ids=dec_in).logits  # fmt: skip
        if cfg.teacher_mode == "shared_encoder":
            logits = student(encoder_outputs=(enc,), decoder_input_ids=dec_in).logits
        else:
            logits = student(input_features=feats, decoder_input_ids=dec_in).logits
        return distil_whisper_loss(logits, labels, t_logits, alpha_ce=ce_w, alpha_kd=kd_w,
                                   temperature=cfg.temperature, divergence=cfg.divergence,
                                   skew=cfg.skew)  # fmt: skip

    # ---------------------------------------------------------------------------- the loop
    def train(self) -> dict[str, Any]:
        cfg, acc = self.config, self.acc
        self._resume()
        bar = tqdm(total=cfg.max_steps, initial=self.state.step, desc="train", unit="step",
                   disable=not acc.is_main_process)  # fmt: skip
        running: dict[str, float] = {}
        t_last = time.perf_counter()
        steps_since = 0
        while self.state.step < cfg.max_steps:
            self.dataset.set_epoch(self.state.epoch)
            loader = self.loader
            if self.state.batch_in_epoch:
                loader = acc.skip_first_batches(self.loader, self.state.batch_in_epoch)
            # accelerate re-seeds the sampler with its own count of iterations: set it to the
            # epoch, so that a resumed run (a fresh loader) draws the same permutation
            loader.set_epoch(self.state.epoch)
            for batch in loader:
                with acc.accumulate(self.student):
                    losses = self.compute_loss(batch)
                    acc.backward(losses["loss"])
                    if acc.sync_gradients and cfg.max_grad_norm:
                        grad_norm = acc.clip_grad_norm_(
                            self.student.parameters(), cfg.max_grad_norm
                        )
                        running["grad_norm"] = running.get("grad_norm", 0.0) + float(grad_norm)
                    self.optimizer.step()
                    self.scheduler.step()
                    self.optimizer.zero_grad()
                self.state.batch_in_epoch += 1
                for k in ("loss", "ce", "kd"):
                    running[k] = running.get(k, 0.0) + float(losses[k].detach()) / cfg.grad_accum
                if not acc.sync_gradients:
                    continue
                self.state.step += 1
                steps_since += 1
                bar.update(1)
                if self.ema is not None:
                    self.ema.update(acc.unwrap_model(self.student))
                step = self.state.step
                now = time.perf_counter()
                running["sec_per_step"] = running.get("sec_per_step", 0.0) + now - t_last
                if step % cfg.log_steps == 0 or step == cfg.max_steps:
                    self._log_train(running, steps_since)
                    running, steps_since = {}, 0
                t_last = time.perf_counter()
                if step % cfg.eval_steps == 0 or step == cfg.max_steps:
                    self._evaluate()
                    t_last = time.perf_counter()  # step times exclude evaluation and saving
                if step % cfg.save_steps == 0 or step == cfg.max_steps:
                    self._checkpoint()
                    t_last = time.perf_counter()
                if step >= cfg.max_steps:
                    break
            else:
                self.state.epoch += 1
                self.state.batch_in_epoch = 0
        bar.close()
        return self._finish()

    # ---------------------------------------------------------------------------- logging
    def _log_train(self, running: dict[str, float], n: int) -> None:
        if not self.acc.is_main_process:
            return
        row = {"step": self.state.step, "epoch": self.state.epoch,
               "lr": self.scheduler.get_last_lr()[0]}  # fmt: skip
        row.update({k: round(v / n, 6) for k, v in running.items()})
        _write_csv(self.csv, [*_read_csv(self.csv), row])
        if self.tb is not None:
            for k, v in row.items():
                if k not in ("step", "epoch"):
                    self.tb.add_scalar(f"train/{k}", v, self.state.step)
        log.info("step %d: %s", self.state.step,
                 " ".join(f"{k} {v:.4g}" for k, v in row.items() if k != "step"))  # fmt: skip

    def _evaluate(self) -> None:
        if self.acc.is_main_process:
            model = self.acc.unwrap_model(self.student)
            if self.ema is not None:
                self.ema.swap(model)
            t0 = time.perf_counter()
            wer, _hyps = self.evaluator(model)
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
            plot_curves(self.out, self.state.evals)
        self.acc.wait_for_everyone()

    # ---------------------------------------------------------------------------- saving
    def _save_model(self, model, target: Path) -> None:
        tmp = target.with_name(f".{target.name}.tmp")
        shutil.rmtree(tmp, ignore_errors=True)
        model.save_pretrained(tmp, safe_serialization=True)
        self.processor.save_pretrained(tmp)
        shutil.rmtree(target, ignore_errors=True)
        tmp.rename(target)

    def _checkpoint(self) -> None:
        cfg = self.config
        root = self.out / CHECKPOINTS
        final = root / f"step_{self.state.step:07d}"
        tmp = root / f".step_{self.state.step:07d}.tmp"
        if self.acc.is_main_process:
            shutil.rmtree(tmp, ignore_errors=True)
        self.acc.wait_for_everyone()
        self.acc.save_state(str(tmp))
        if self.acc.is_main_process:
            if self.ema is not None:
                from safetensors.torch import save_file

                save_file(self.ema.shadow, str(tmp / "ema.safetensors"))
            atomic_write_text(tmp / STATE, json.dumps(asdict(self.state), indent=1) + "\n")
            shutil.rmtree(final, ignore_errors=True)
            tmp.rename(final)
            done = sorted(p for p in root.glob("step_*") if (p / STATE).is_file())
            for old in done[: -cfg.keep_checkpoints]:
                shutil.rmtree(old, ignore_errors=True)
        self.acc.wait_for_everyone()

    def _resume(self) -> None:
        root = self.out / CHECKPOINTS
        done = (
            sorted(p for p in root.glob("step_*") if (p / STATE).is_file()) if root.is_dir() else []
        )
        if not done:
            return
        latest = done[-1]
        self.acc.load_state(str(latest))
        self.state = TrainerState(**json.loads((latest / STATE).read_text(encoding="utf-8")))
        if self.ema is not None and (latest / "ema.safetensors").is_file():
            from safetensors.torch import load_file

            self.ema.shadow = load_file(str(latest / "ema.safetensors"))
        if self.acc.is_main_process:  # the log keeps no rows from after the checkpoint
            rows = [r for r in _read_csv(self.csv) if int(r["step"]) <= self.state.step]
            if rows:
                _write_csv(self.csv, rows)
        log.info("resumed from %s (step %d)", latest, self.state.step)

    def _finish(self) -> dict[str, Any]:
        if not self.acc.is_main_process:
            return {}
        best = self.out / "best"
        for f in best.iterdir():  # the best checkpoint on dev is the trained student
            shutil.copy2(f, self.out / f.name)
        rows = _read_csv(self.csv)
        times = [float(r["sec_per_step"]) for r in rows if r.get("sec_per_step")]
        summary = {
            "steps": self.state.step,
            "best_step": self.state.best_step,
            "best_dev_wer": self.state.best_wer,
            "dev_reference": self.evaluator.ref_file,
            "evals": self.state.evals,
            "sec_per_step": round(sum(times) / len(times), 4) if times else None,
            "config": asdict(self.config),
        }
        atomic_write_text(self.out / "train.json", json.dumps(summary, indent=2) + "\n")
        self.config.save(self.out / "train_config.yaml")
        plot_curves(self.out, self.state.evals)
        if self.tb is not None:
            self.tb.close()
        return summary


def _tensorboard(path: Path):
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        return None
    return SummaryWriter(str(path))


LOG_FIELDS = ("step", "epoch", "loss", "ce", "kd", "grad_norm", "lr", "sec_per_step")


def _write_csv(path: Path, rows: list[dict[str, Any]]) -> None:
    from speechdistill.utils import atomic_open

    with atomic_open(path, "w") as f:
        writer = csv.DictWriter(f, fieldnames=LOG_FIELDS, lineterminator="\n")
        writer.writeheader()
        for row in rows:
            writer.writerow({k: row.get(k, "") for k in LOG_FIELDS})


def _read_csv(path: Path) -> list[dict[str, str]]:
    if not path.is_file():
        return []
    with open(path, newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


def plot_curves(out_dir: PathLike, evals: list[dict[str, Any]]) -> Path | None:
    """``curves.png``: training losses, learning rate and dev WER against steps."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    out = Path(out_dir)
    rows = _read_csv(out / "train_log.csv")
    fig, axes = plt.subplots(1, 3, figsize=(15, 4))
    steps = [int(r["step"]) for r in rows]
    for key in ("loss", "ce", "kd"):
        vals = [float(r[key]) if r.get(key) not in ("", None) else math.nan for r in rows]
        axes[0].plot(steps, vals, label=key)
    axes[0].set(xlabel="step", title="training loss")
    axes[0].legend()
    axes[1].plot(steps, [float(r["lr"]) for r in rows])
    axes[1].set(xlabel="step", title="learning rate")
    axes[2].plot([e["step"] for e in evals], [100 * e["dev_wer"] for e in evals], marker="o")
    axes[2].set(xlabel="step", ylabel="WER %", title="dev WER (greedy)")
    fig.tight_layout()
    path = out / "curves.png"
    tmp = out / ".curves.tmp.png"
    fig.savefig(tmp, dpi=80)
    plt.close(fig)
    tmp.replace(path)
    return path


def train_whisper(
    student_dir: PathLike,
    teacher_dir: PathLike,
    train_dir: PathLike,
    dev_dir: PathLike,
    out_dir: PathLike,
    config: TrainConfig,
) -> dict[str, Any]:
    """Train (or resume) and return the summary written to ``out_dir/train.json``."""
    trainer = WhisperKDTrainer(student_dir, teacher_dir, train_dir, dev_dir, out_dir, config)
    return trainer.train()
