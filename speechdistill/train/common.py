"""What every training loop here shares: the accelerate loop, checkpoints and exact resume, logs.

:class:`AcceleratedTrainer` runs ``max_steps`` optimiser steps (gradient accumulation,
token-exact when the trainer counts its items; clipping; EMA), logs averaged training figures to
``train_log.csv`` (and TensorBoard), calls the subclass's ``_evaluate`` every ``eval_steps`` and
checkpoints every ``save_steps``. A checkpoint holds the accelerate state (model, optimiser,
scheduler, RNG states), the EMA weights and a JSON trainer state with the data position, so a
killed run resumes exactly where it stopped: a fresh loader draws the same per-epoch permutation
(:class:`EpochSampler`) and skips the batches already seen. Subclasses set up models, data and
optimiser in ``__init__`` and implement ``compute_loss``, ``_evaluate`` and ``_finish``.
"""

from __future__ import annotations

import contextlib
import csv
import itertools
import json
import logging
import math
import os
import shutil
import tempfile
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from tqdm.auto import tqdm

from speechdistill.datadir.weights import UTT2WEIGHT
from speechdistill.utils import (
    CLAIM_IGNORED,
    OWNER_FILE,
    PathLike,
    atomic_open,
    atomic_write_text,
    claim_dir,
    replace_dir,
)

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
    """Exponential moving average of the trainable parameters (evaluated and saved in their stead).

    The decay warms up as min(decay, (1 + step) / (10 + step)), so that early averages are not
    dominated by the initial weights (0.995 would keep 60 % of them after 100 steps).
    """

    def __init__(self, model: torch.nn.Module, decay: float):
        self.decay = decay
        self.shadow = {n: p.detach().clone().float() for n, p in model.named_parameters()
                       if p.requires_grad}  # fmt: skip

    def decay_at(self, step: int) -> float:
        """The decay used by the update after optimiser step ``step`` (1-based)."""
        return min(self.decay, (1 + step) / (10 + step))

    @torch.no_grad()
    def update(self, model: torch.nn.Module, step: int) -> None:
        decay = self.decay_at(step)
        for n, p in model.named_parameters():
            if n in self.shadow:
                self.shadow[n].lerp_(p.detach().float(), 1.0 - decay)

    @torch.no_grad()
    def swap(self, model: torch.nn.Module) -> None:
        """Exchange the model's weights with the averaged ones (call twice to undo)."""
        for n, p in model.named_parameters():
            if n in self.shadow:
                tmp = p.detach().clone()
                p.copy_(self.shadow[n].to(p.dtype))
                self.shadow[n].copy_(tmp.float())


@dataclass
class MetricState:
    """Trainer state of a loop that keeps the checkpoint with the lowest dev ``metric``."""

    step: int = 0
    epoch: int = 0
    batch_in_epoch: int = 0
    best_metric: float | None = None
    best_step: int | None = None
    evals: list[dict[str, Any]] = field(default_factory=list)


def param_groups(model: torch.nn.Module, weight_decay: float) -> list[dict[str, Any]]:
    """AdamW groups: no weight decay on biases, norms and other 1-d parameters."""
    decay, no_decay = [], []
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        (no_decay if p.ndim < 2 or "layer_norm" in name else decay).append(p)
    return [{"params": decay, "weight_decay": weight_decay},
            {"params": no_decay, "weight_decay": 0.0}]  # fmt: skip


def make_scheduler(acc, optimizer: torch.optim.Optimizer, config: Any):
    """The LR schedule (``lr_schedule``, ``warmup_steps``, ``max_steps``), to be passed through
    ``acc.prepare``.

    accelerate's prepared scheduler steps once per process at every optimiser step (it counts
    samples, not steps, when batches are not split), so the schedule is laid out over
    ``steps · processes``: the learning rate at step s is the same for 1 and N processes.
    """
    from transformers import get_scheduler

    n = acc.num_processes
    return get_scheduler(config.lr_schedule, optimizer,
                         num_warmup_steps=config.warmup_steps * n,
                         num_training_steps=config.max_steps * n)  # fmt: skip


def make_accelerator(mixed_precision: str):
    """accelerate's ``Accelerator``: on the GPU when there is one, else on the CPU.

    fp16 autocast needs CUDA: on the CPU accelerate would report fp16 and run in float32, so
    fp16 is turned off there, with a warning (bf16 autocast does run on the CPU).
    """
    from accelerate import Accelerator

    cpu = not torch.cuda.is_available()
    if cpu and mixed_precision == "fp16":
        log.warning("mixed_precision fp16 needs a CUDA GPU: training in float32 on the CPU "
                    "(bf16 runs on the CPU)")  # fmt: skip
        mixed_precision = "no"
    return Accelerator(mixed_precision=mixed_precision, cpu=cpu)


def tensorboard_writer(path: Path):
    """A TensorBoard ``SummaryWriter``, or None (logged) when tensorboard is not installed."""
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        log.info("tensorboard is not installed (pip install 'speechdistill[logs]'): CSV log only")
        return None
    return SummaryWriter(str(path))


def warn_weights_ignored(train_dir: PathLike, command: str) -> None:
    """A trainer without per-utterance weights warns that the train dir's ``utt2weight`` is
    not used (only Whisper KD training weighs its losses by it)."""
    path = Path(train_dir) / UTT2WEIGHT
    if path.is_file():
        log.warning("%s: ignored by %s (per-utterance weights are used by Whisper KD training "
                    "only): every utterance counts alike", path, command)  # fmt: skip


def _window_totals(acc, counts: list[dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
    """Each kind's item count summed over the window's batches and (one collective) processes."""
    if not counts[0]:
        return {}
    kinds = sorted(counts[0])
    totals = torch.stack([sum(c[k].detach().float().cpu() for c in counts) for k in kinds])
    if acc.num_processes > 1:
        totals = acc.reduce(totals.to(acc.device), "sum").cpu()
    return dict(zip(kinds, totals, strict=True))


def write_log_csv(path: Path, rows: list[dict[str, Any]], fields: Sequence[str]) -> None:
    """Write the training log (atomically) with the columns ``fields``."""
    with atomic_open(path, "w") as f:
        writer = csv.DictWriter(f, fieldnames=list(fields), lineterminator="\n")
        writer.writeheader()
        for row in rows:
            writer.writerow({k: row.get(k, "") for k in fields})


def read_log_csv(path: Path) -> list[dict[str, str]]:
    if not path.is_file():
        return []
    with open(path, newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


def plot_curves(
    out_dir: PathLike,
    evals: list[dict[str, Any]],
    *,
    loss_keys: Sequence[str] = ("loss",),
    metric: str = "dev_loss",
    metric_title: str = "dev loss",
    ylabel: str = "loss",
    percent: bool = False,
) -> Path | None:
    """``curves.png``: training losses, learning rate and the dev ``metric`` against steps."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    out = Path(out_dir)
    rows = read_log_csv(out / "train_log.csv")
    fig, axes = plt.subplots(1, 3, figsize=(15, 4))
    steps = [int(r["step"]) for r in rows]
    for key in loss_keys:
        vals = [float(r[key]) if r.get(key) not in ("", None) else math.nan for r in rows]
        axes[0].plot(steps, vals, label=key)
    axes[0].set(xlabel="step", title="training loss")
    axes[0].legend()
    axes[1].plot(steps, [float(r["lr"]) for r in rows])
    axes[1].set(xlabel="step", title="learning rate")
    scale = 100 if percent else 1
    axes[2].plot([e["step"] for e in evals], [scale * e[metric] for e in evals], marker="o")
    axes[2].set(xlabel="step", ylabel=ylabel, title=metric_title)
    fig.tight_layout()
    path = out / "curves.png"
    tmp = out / ".curves.tmp.png"
    fig.savefig(tmp, dpi=80)
    plt.close(fig)
    tmp.replace(path)
    return path


#: The files of an accelerate checkpoint, in the order ``load_state`` reads them.
CHECKPOINT_FILES = ("model*.safetensors", "model*.bin", "optimizer*.bin", "scheduler*.bin", "sampler*.bin",
                    "dl_state_dict*.bin", "scaler.pt")  # fmt: skip


def _bad_file(directory: Path) -> tuple[Path, Exception] | None:
    """The first file of a checkpoint that ``torch.load(weights_only=True)`` refuses."""
    from accelerate.utils import load
    from safetensors.torch import load_file

    for pattern in CHECKPOINT_FILES:
        for path in sorted(directory.glob(pattern)):
            try:
                if path.suffix == ".safetensors":
                    load_file(path)
                else:
                    load(path, map_location="cpu", weights_only=True)
            except Exception as e:
                return path, e
    return None


def load_checkpoint(acc, directory: Path) -> None:
    """``acc.load_state`` (pickles only with ``weights_only=True``), with one-line errors.

    A file it cannot load (corrupt, or a pickle the safe loader refuses) is a
    :class:`ValueError` naming it. RNG states it cannot load are a warning: the model,
    optimiser, schedule and data position are restored, but random draws (dropout, masks) no
    longer follow the uninterrupted run, so the resume is not bit-exact.
    """
    from accelerate.utils import load

    try:
        acc.load_state(str(directory), load_kwargs={"weights_only": True})
    except Exception as e:
        bad = _bad_file(directory)
        path, err = bad if bad is not None else (directory, e)
        kind = "optimizer state" if "optimizer" in path.name else "checkpoint file"
        reason = " ".join(f"{type(err).__name__}: {err}".split())[:200]
        raise ValueError(
            f"{path}: not a valid {kind} ({reason}); remove that checkpoint to "
            "resume from an earlier one, or --force"
        ) from e
    rng = directory / f"random_states_{acc.process_index}.pkl"
    try:
        states = load(rng, weights_only=True)
        if "torch_manual_seed" not in states:
            raise KeyError("torch_manual_seed")
    except Exception as e:
        log.warning(
            "%s: the RNG states could not be restored (%s): resuming, but the run will not "
            "be bit-exact (dropout and sampling draws differ from an uninterrupted run)",
            rng, " ".join(f"{type(e).__name__}: {e}".split())[:200],
        )  # fmt: skip


class AcceleratedTrainer:
    """The shared loop. A subclass's ``__init__`` sets ``config`` (``max_steps``, ``grad_accum``,
    ``max_grad_norm``, ``log_steps``, ``eval_steps``, ``save_steps``, ``keep_checkpoints``),
    ``acc``, ``student``, ``optimizer``, ``scheduler``, ``loader`` (over an
    :class:`EpochSampler`), ``dataset``, ``ema`` (or None), ``state`` (a dataclass with
    ``step``, ``epoch`` and ``batch_in_epoch``), ``out``, ``csv`` and ``tb``."""

    _window_items: dict[str, torch.Tensor]  # this step's item counts, see item_scale
    _batch_items: dict[str, torch.Tensor]  # the current batch's
    #: the entries of ``compute_loss``'s result averaged into the training log
    loss_keys: tuple[str, ...] = ("loss",)
    #: the columns of ``train_log.csv``
    log_fields: tuple[str, ...] = ("step", "epoch", "loss", "grad_norm", "lr", "sec_per_step")

    config: Any
    state: Any
    #: the command whose output directory this is (:data:`~speechdistill.utils.OWNER_FILE`)
    owner: str = "train"

    def compute_loss(self, batch: dict[str, Any]) -> dict[str, torch.Tensor]:
        """The batch's losses (``loss`` is minimised). A trainer that counts items
        (:meth:`count_items`) returns each term as its share of the step's mean, through
        :meth:`item_scale`; otherwise the batch means, which the loop averages."""
        raise NotImplementedError

    def prepare_batch(self, batch: dict[str, Any]) -> dict[str, Any]:
        """Work done on a batch before its window's items are counted (e.g. decoding it, when
        the items are decoded tokens). Default: none."""
        return batch

    def count_items(self, batch: dict[str, Any]) -> dict[str, torch.Tensor]:
        """The items each loss term is a mean over (e.g. ``{"tokens": n}``), so that a step's
        loss is the mean over all the items of its accumulated batches and processes, not a
        mean of batch means. Empty (the default): batch means, averaged."""
        return {}

    def _evaluate(self) -> None:
        raise NotImplementedError

    def _write_model(self, model: torch.nn.Module, directory: Path) -> None:
        """Write ``model`` and what loading it needs (processor, …) into ``directory``."""
        raise NotImplementedError

    def _summary(self) -> dict[str, Any]:
        """This trainer's own entries of ``train.json`` (best dev figure, …)."""
        return {}

    def _plot(self) -> None:
        raise NotImplementedError

    # ---------------------------------------------------------------------------- set-up
    def make_optimizer(self, model: torch.nn.Module) -> torch.optim.Optimizer:
        """AdamW at ``lr``, no weight decay on 1-d parameters (a trainer may group otherwise)."""
        return torch.optim.AdamW(param_groups(model, self.config.weight_decay), lr=self.config.lr)

    def _prepare(self, model: torch.nn.Module, dataset, collate_fn, train_dir: PathLike) -> None:
        """Set ``dataset``, ``sampler`` and, through ``acc.prepare``, ``student``, ``optimizer``
        (:meth:`make_optimizer`), ``loader`` and ``scheduler``.

        The loader has its own generator: starting an epoch draws no number from the global RNG,
        so dropout masks after a resume equal those of an uninterrupted run.
        """
        cfg = self.config
        if len(dataset) < cfg.batch_size * self.acc.num_processes:
            raise ValueError(f"{train_dir}: {len(dataset)} utterances, fewer than one batch")
        self.dataset = dataset
        self.sampler = EpochSampler(len(dataset), cfg.seed)
        loader = torch.utils.data.DataLoader(
            dataset,
            batch_size=cfg.batch_size,
            sampler=self.sampler,
            collate_fn=collate_fn,
            num_workers=cfg.num_workers,
            drop_last=True,
            generator=torch.Generator(),
        )
        optimizer = self.make_optimizer(model)
        scheduler = make_scheduler(self.acc, optimizer, cfg)
        self.student, self.optimizer, self.loader, self.scheduler = self.acc.prepare(
            model, optimizer, loader, scheduler
        )

    # ---------------------------------------------------------------------------- outputs
    def _claim_out(self) -> None:
        """Create ``out``, refusing a non-empty one that is not this command's earlier output
        (one of an older release holds a training log, checkpoints or train.json)."""
        claim_dir(
            self.out,
            self.owner,
            legacy_record=("train_log.csv", CHECKPOINTS, "train.json"),
            ignore=CLAIM_IGNORED,
            hint="choose another output directory or remove it yourself",
        )

    def _save_model(self, model: torch.nn.Module, target: Path) -> None:
        """:meth:`_write_model` into a temporary directory, then swap it in for ``target``."""
        tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.tmp-", dir=target.parent))
        try:
            self._write_model(model, tmp)
            replace_dir(tmp, target, self.owner, legacy_record=("config.json",))
        finally:
            shutil.rmtree(tmp, ignore_errors=True)

    def _finish(self) -> dict[str, Any]:
        """Copy the best checkpoint on dev into the output directory (it is the trained
        model); write ``train.json``, ``train_config.yaml`` and the curves."""
        if not self.acc.is_main_process:
            return {}
        # train.json, written last, marks a finished run; each file is swapped in whole
        (self.out / "train.json").unlink(missing_ok=True)
        best = sorted(
            (self.out / "best").iterdir(), key=lambda p: (p.suffix != ".safetensors", p.name)
        )
        for f in best:
            if f.name != OWNER_FILE:
                tmp = self.out / f".{f.name}.tmp"
                shutil.copy2(f, tmp)
                os.replace(tmp, self.out / f.name)
        times = [float(r["sec_per_step"]) for r in read_log_csv(self.csv) if r.get("sec_per_step")]
        summary = {
            "steps": self.state.step,
            "best_step": self.state.best_step,
            **self._summary(),
            "evals": self.state.evals,
            "sec_per_step": round(sum(times) / len(times), 4) if times else None,
            "config": asdict(self.config),
        }
        atomic_write_text(self.out / "train.json", json.dumps(summary, indent=2) + "\n")
        self.config.save(self.out / "train_config.yaml")
        self._plot()
        if self.tb is not None:
            self.tb.close()
        return summary

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
            if hasattr(self.dataset, "set_epoch"):
                self.dataset.set_epoch(self.state.epoch)
            loader = self.loader
            if self.state.batch_in_epoch:
                loader = acc.skip_first_batches(self.loader, self.state.batch_in_epoch)
            # accelerate re-seeds the sampler with its own count of iterations: set it to the
            # epoch, so that a resumed run (a fresh loader) draws the same permutation
            loader.set_epoch(self.state.epoch)
            batches = iter(loader)
            while window := list(itertools.islice(batches, cfg.grad_accum)):
                self._accumulate(window, running)
                self.state.step += 1
                steps_since += 1
                bar.update(1)
                if self.ema is not None:
                    self.ema.update(acc.unwrap_model(self.student), self.state.step)
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
            else:  # the epoch's last window may be short: accumulation restarts with each epoch
                self.state.epoch += 1
                self.state.batch_in_epoch = 0
        bar.close()
        return self._finish()

    def _accumulate(self, window: list[dict[str, Any]], running: dict[str, float]) -> None:
        """One optimiser step over the ``window`` of batches (``grad_accum`` of them, fewer at
        the end of an epoch): backward each, clip, step, and add the losses to ``running``.

        Accumulation is ours, not accelerate's: the window is read (and each batch passed
        through :meth:`prepare_batch`) first, so that with :meth:`count_items` every batch's
        terms are weighed by their share of the window's items on all processes (token-exact:
        batches of 1 accumulated twice equal a batch of 2, whatever the label lengths). DDP
        synchronises gradients on the window's last backward only.
        """
        acc = self.acc
        window = [self.prepare_batch(batch) for batch in window]
        counts = [self.count_items(batch) for batch in window]
        self._window_items = _window_totals(acc, counts)
        weight = 1.0 if counts[0] else 1.0 / len(window)  # batch means are averaged
        for i, (batch, self._batch_items) in enumerate(zip(window, counts, strict=True)):
            last = i == len(window) - 1
            with contextlib.nullcontext() if last else acc.no_sync(self.student):
                losses = self.compute_loss(batch)
                acc.backward(losses["loss"] * weight)
            self.state.batch_in_epoch += 1
            for k in self.loss_keys:
                value = losses[k].detach()
                if acc.num_processes > 1:  # the log shows the global figure
                    value = acc.reduce(value.clone(), "mean")
                running[k] = running.get(k, 0.0) + float(value) * weight
        if self.config.max_grad_norm:
            grad_norm = acc.clip_grad_norm_(self.student.parameters(), self.config.max_grad_norm)
            running["grad_norm"] = running.get("grad_norm", 0.0) + float(grad_norm)
        self.optimizer.step()
        self.scheduler.step()
        self.optimizer.zero_grad()

    def item_scale(self, kind: str) -> torch.Tensor:
        """The factor that turns the current batch's mean over its items of ``kind`` (as
        :meth:`count_items` counted them) into its share of the mean over all the items of the
        step: every batch of the accumulation window, on every process.

        DDP averages the processes' gradients, weighing every process alike; hence
        ``n · processes / N``, with ``N`` the window's total on all processes: once summed over
        the window and averaged over processes, the step's mean over every item, as one process
        with the whole batch computes it.
        """
        n = self._batch_items[kind].detach().float().cpu()
        # counts may be sums of weights under 1 (utt2weight): no clamp to 1; N = 0 means n = 0
        total = self._window_items[kind].clamp(min=torch.finfo(torch.float32).tiny)
        return n * self.acc.num_processes / total

    # ---------------------------------------------------------------------------- logging
    def _log_train(self, running: dict[str, float], n: int) -> None:
        if not self.acc.is_main_process:
            return
        row = {"step": self.state.step, "epoch": self.state.epoch,
               "lr": self.scheduler.get_last_lr()[0]}  # fmt: skip
        row.update({k: round(v / n, 6) for k, v in running.items()})
        write_log_csv(self.csv, [*read_log_csv(self.csv), row], self.log_fields)
        if self.tb is not None:
            for k, v in row.items():
                if k not in ("step", "epoch"):
                    self.tb.add_scalar(f"train/{k}", v, self.state.step)
        log.info("step %d: %s", self.state.step,
                 " ".join(f"{k} {v:.4g}" for k, v in row.items() if k != "step"))  # fmt: skip

    # ---------------------------------------------------------------------------- checkpoints
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
        load_checkpoint(self.acc, latest)
        state = json.loads((latest / STATE).read_text(encoding="utf-8"))
        self.state = type(self.state)(**state)
        if self.state.step > self.config.max_steps:
            raise ValueError(
                f"{latest}: the run is at step {self.state.step}, past max_steps "
                f"{self.config.max_steps}: use --force to start over, or another --out"
            )
        if self.ema is not None and (latest / "ema.safetensors").is_file():
            from safetensors.torch import load_file

            self.ema.shadow = load_file(str(latest / "ema.safetensors"))
        if self.acc.is_main_process:  # the log keeps no rows from after the checkpoint
            rows = [r for r in read_log_csv(self.csv) if int(r["step"]) <= self.state.step]
            if rows:
                write_log_csv(self.csv, rows, self.log_fields)
        log.info("resumed from %s (step %d)", latest, self.state.step)
