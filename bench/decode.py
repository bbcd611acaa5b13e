"""Decode speed of a Distil-Whisper student against its teacher, next to the ideal speed-up.

Two pairs, each decoded greedily with a fixed output length (so that both models do the same work
and the ratio measures cost per token, not how soon each stops):

1. the real tiny.en teacher (4+4 layers) and its 2-decoder-layer student (``--pairs base``: the
   real multilingual base, 6+6 layers, and its 6 → 2 student);
2. a whisper-small.en-shaped model with random weights (12+12 layers, d_model 768) and its
   2-decoder-layer student (12 → 2, where ~2.5× is possible).

``decode`` times generation alone (the encoder states are computed once, outside the clock);
``e2e`` times ``generate`` on log-mel features, encoder included.

**Ideal speed-up, from the measured cost of a decoder layer.** For each teacher and batch size
the decoder's layer list is cut to its first k layers (k evenly spaced over 0 … L: all five for
tiny.en, 0, 2, …, 12 for small) and incremental steps (one new token per utterance, a KV cache
holding ~the mean context of the run, cross-attention over the 1500 encoder frames, then the
output projection; blocks of 8 steps) are timed; a least-squares line ``t_step(k) = a + b·k``
gives ``b``, the cost of one layer per step, and ``a``, the cost of the step outside the layers
(embeddings, mask, final norm, output projection). Per utterance batch, each layer also projects
the encoder output into cross-attention keys and values once (the first step); ``c`` is that
cost: every layer's ``k_proj``/``v_proj`` on the encoder states, with the head reshape and the
cache copy that transformers does, the results kept alive as the cache keeps them (so the
first-touch page faults of that memory count, as they do in ``generate``), divided by L. One
round of these timings follows each repeat of the generate runs, so both see the same load.
A student that differs from its teacher only by having fewer decoder layers can at best save
what those layers cost, so with the teacher's measured ``generate`` time ``t_T`` over ``T``
steps (encoder included for e2e)::

    ideal student time = t_T − (L − l)·(b·T + c),   ideal speed-up = t_T / (ideal student time)

(``L`` teacher and ``l`` student decoder layers; ``T`` is checked to be the number of decoder
forwards ``generate`` makes). Everything else — generate's Python loop, logits processors,
embedding, output projection, the encoder — is in ``t_T`` and is kept, so it bounds the gain.
"% of ideal" is measured / ideal speed-up; 100 % means the student saves exactly the removed
layers' cost. The ``other`` column is the teacher's per-step time not explained by the model's
forward (``t_T/T − a − L·b − L·c/T``, decode rows): generate's own overhead.

An earlier version took the ideal from multiply-accumulate counts; it is dropped, not kept as a
"MAC bound": on CPU the per-step fixed costs (Python, small-op dispatch, the memory-bound output
projection) are not proportional to MACs, and the large encoder matmuls run far faster per MAC
than the decoder's one-token steps, so the MAC ratio was neither a bound nor an estimate (small
decode: measured 2.58× vs "ideal" 4.29×; tiny.en e2e: measured 1.18× above the "ideal" 1.06×).

Timing hygiene: ``--threads`` (default 1) sets torch's intra-op threads; on a shared, loaded
machine multi-threaded small ops stall on descheduled threads (a run saw the 2-layer student
take twice the 4-layer teacher's time), one thread gives stable figures. The load average is
printed at start and end. Teacher and student runs alternate within each repeat (the order
flipping every repeat) so that load changes hit both; the figures are medians.

    python bench/decode.py [--tokens 64] [--batch 1 4] [--repeats 3] [--threads 1] [--out F]

With ``--batch 1 4 --repeats 3`` (defaults otherwise) it takes about 8 minutes on one thread of
a loaded 2-core machine (load average ~5), most of it the small-shaped encoder in the e2e rows.

Reading the figures: the student's time is the difference of two large numbers, so an error of
x % in the removed layers' cost moves "% of ideal" by about x·(removed / student time) %, ~1.7·x
for small at batch 1; under load, rows within ±10 % of ideal agree within noise. The
per-component accounting behind the model (``b`` inside ``generate`` matches the fit within a
few %) was checked with forward hooks.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]


def quiet_transformers() -> None:
    """No progress bars, no warnings (e.g. the ones Whisper's ``generate`` emits internally)."""
    os.environ["HF_HUB_DISABLE_PROGRESS_BARS"] = "1"
    import huggingface_hub.utils
    import transformers

    transformers.logging.set_verbosity_error()
    transformers.logging.disable_progress_bar()
    huggingface_hub.utils.disable_progress_bars()


def make_random_pair(
    root: Path, *, d_model: int, layers: int, heads: int, ffn: int
) -> tuple[Path, Path]:
    """A random English-only Whisper of the given shape and its 2-decoder-layer student."""
    from transformers import WhisperConfig

    from speechdistill.init_student import init_student
    from speechdistill.testing import english_tokenizer, save_random_whisper

    teacher = save_random_whisper(root / "teacher", english_tokenizer(), multilingual=False,
                                  max_source_positions=1500)  # fmt: skip
    config = WhisperConfig.from_pretrained(teacher)
    config.update({"d_model": d_model, "encoder_layers": layers, "decoder_layers": layers,
                   "encoder_attention_heads": heads, "decoder_attention_heads": heads,
                   "encoder_ffn_dim": ffn, "decoder_ffn_dim": ffn, "max_target_positions": 448})  # fmt: skip
    from transformers import WhisperForConditionalGeneration

    torch.manual_seed(0)
    model = WhisperForConditionalGeneration(config)
    model.generation_config = WhisperForConditionalGeneration.from_pretrained(
        teacher
    ).generation_config
    model.generation_config.max_length = 448
    model.save_pretrained(teacher)
    init_student(teacher, root / "student", decoder_layers=2, overwrite=True)
    return teacher, root / "student"


def embedded_pair(name: str, root: Path) -> tuple[Path, Path]:
    """An embedded teacher (``tiny.en``, ``base``) and its 2-decoder-layer student (the
    student's weights do not matter for its speed)."""
    from speechdistill.init_student import init_student
    from speechdistill.teachers.whisper import prepare_teacher

    teacher = prepare_teacher(name, root / "teacher")
    init_student(teacher, root / "student", decoder_layers=2, overwrite=True)
    return teacher, root / "student"


# --------------------------------------------------------------------------------------------
# generation


def fixed_length(tokens: int, prompt: int) -> dict:
    """Greedy generation of exactly ``tokens`` tokens after a ``prompt``-token decoder prompt.

    Given as lengths, not ``min/max_new_tokens``: Whisper's ``generate`` fills in the default
    ``min/max_length`` before calling the generic one, which then warns that both are set. Its
    ``max_length`` counts tokens after the prompt (it adds the prompt itself); ``min_length``
    counts the prompt (end-of-text is suppressed while the sequence is shorter).
    """
    return {"max_length": tokens, "min_length": prompt + tokens, "do_sample": False, "num_beams": 1}


@torch.inference_mode()
def decoder_calls(model, enc, kw: dict) -> list[int]:
    """Query lengths of the decoder forwards one ``generate`` makes (the first is the prompt)."""
    calls = []

    def hook(_module, args, kwargs):
        ids = kwargs.get("input_ids", args[0] if args else None)
        calls.append(ids.shape[-1])

    handle = model.model.decoder.register_forward_pre_hook(hook, with_kwargs=True)
    try:
        model.generate(encoder_outputs=enc, **kw)
    finally:
        handle.remove()
    return calls


@torch.inference_mode()
def time_generate(model, inputs, kw: dict, e2e: bool) -> float:
    """Seconds of one ``generate``: on features (``e2e``) or on given encoder outputs."""
    t0 = time.perf_counter()
    if e2e:
        model.generate(inputs, **kw)
    else:
        model.generate(encoder_outputs=inputs, **kw)
    return time.perf_counter() - t0


# --------------------------------------------------------------------------------------------
# measured cost of one decoder layer


def _cross_kv(attn, enc: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """What one decoder layer does once per utterance batch: cross-attention K/V of the encoder
    output, reshaped to heads and copied into the (empty) cache as ``DynamicLayer.update`` does."""
    shape = (enc.shape[0], -1, attn.num_heads, attn.head_dim)
    k = attn.k_proj(enc).view(shape).transpose(1, 2).contiguous()
    v = attn.v_proj(enc).view(shape).transpose(1, 2).contiguous()
    empty = k.new_empty(0)
    return torch.cat([empty, k], dim=-2), torch.cat([empty, v], dim=-2)


def _sub_cache(full, k: int):
    """A fresh EncoderDecoderCache with copies of the first ``k`` layers of ``full``."""
    from transformers.cache_utils import DynamicCache, EncoderDecoderCache

    self_kv = [(kk, vv) for kk, vv, *_ in list(full.self_attention_cache)[:k]]
    cross_kv = [(kk, vv) for kk, vv, *_ in list(full.cross_attention_cache)[:k]]
    return EncoderDecoderCache(DynamicCache(self_kv), DynamicCache(cross_kv))


class LayerCost:
    """Times decoder steps of ``model`` cut to k layers; fits ``t_step(k) = a + b·k``; times ``c``.

    One sample is a block of ``steps`` incremental steps (decoder forward on one new token per
    utterance, then the output projection) on a cache that starts with ``context`` tokens of
    self-attention and the cross-attention K/V of ``enc``, divided by ``steps``. Each
    :meth:`round` times one block for every k (order reversed every round) and the
    cross-attention K/V projection of all layers (results kept alive, per layer); rounds are
    interleaved with the generate runs so that both see the same load. :meth:`result` fits the
    medians.
    """

    def __init__(self, model, enc: torch.Tensor, *, context: int, steps: int, points: int = 7):
        from transformers.cache_utils import DynamicCache, EncoderDecoderCache

        self.model, self.enc, self.context, self.steps = model, enc, context, steps
        self.dec = model.model.decoder
        self.layers = self.dec.layers
        n = len(self.layers)
        points = min(points, n + 1)  # k = 0 … L, evenly spaced, both ends included
        self.ks = sorted({round(i * n / (points - 1)) for i in range(points)})
        start = model.generation_config.decoder_start_token_id
        self.step_ids = torch.full((enc.shape[0], 1), start)
        self.full = EncoderDecoderCache(DynamicCache(), DynamicCache())
        with torch.inference_mode():
            self.dec(input_ids=torch.full((enc.shape[0], context), start),
                     encoder_hidden_states=enc, cache=self.full, use_cache=True)  # fmt: skip
        self.samples: dict[int, list[float]] = {k: [] for k in self.ks}
        self.kv_samples: list[float] = []
        self.rounds = 0
        self.round(keep=False)  # warm-up

    @torch.inference_mode()
    def round(self, keep: bool = True) -> None:
        ks = self.ks if self.rounds % 2 else self.ks[::-1]
        try:
            for k in ks:
                self.dec.layers = self.layers[:k]
                cache = _sub_cache(self.full, k)
                t0 = time.perf_counter()
                for _ in range(self.steps):
                    h = self.dec(input_ids=self.step_ids, encoder_hidden_states=self.enc,
                                 cache=cache, use_cache=True).last_hidden_state  # fmt: skip
                    self.model.proj_out(h)
                if keep:
                    self.samples[k].append((time.perf_counter() - t0) / self.steps)
        finally:
            self.dec.layers = self.layers
        self.rounds += 1
        t0 = time.perf_counter()  # all layers, results kept alive as the cache keeps them
        kept = [_cross_kv(layer.encoder_attn, self.enc) for layer in self.layers]
        if keep:
            self.kv_samples.append((time.perf_counter() - t0) / len(self.layers))
        del kept

    def result(self) -> dict:
        ks = self.ks
        per_k = [statistics.median(self.samples[k]) for k in ks]
        b, a = statistics.linear_regression(ks, per_k)
        resid = [t - (a + b * k) for k, t in zip(ks, per_k, strict=True)]
        mean = statistics.fmean(per_k)
        r2 = 1 - sum(e * e for e in resid) / sum((t - mean) ** 2 for t in per_k)
        return {
            "layers": len(self.layers), "context": self.context, "steps": self.steps,
            "rounds": len(self.kv_samples), "ks": ks,
            "a_ms": 1000 * a, "b_ms": 1000 * b, "c_ms": 1000 * statistics.median(self.kv_samples),
            "r2": r2, "step_ms_by_k": [round(1000 * t, 3) for t in per_k],
            "c_ms_runs": [round(1000 * t, 3) for t in self.kv_samples],
        }  # fmt: skip


# --------------------------------------------------------------------------------------------
# the bench


def bench_pair(name: str, teacher_dir: Path, student_dir: Path, args) -> tuple[list, list]:
    from transformers.modeling_outputs import BaseModelOutput

    from speechdistill.teachers.whisper import load_teacher

    teacher, _ = load_teacher(str(teacher_dir))
    student, _ = load_teacher(str(student_dir))
    n_t, n_s = teacher.config.decoder_layers, student.config.decoder_layers
    tokens = args.tokens
    # a multilingual model is given its language, so that generate does not detect it first
    lang = (
        {"language": "en"} if getattr(teacher.generation_config, "is_multilingual", False) else {}
    )

    def gen_kwargs(tokens: int, prompt: int) -> dict:
        return {**fixed_length(tokens, prompt), **lang}

    rows, fits = [], []
    for batch in args.batch:
        torch.manual_seed(0)
        feats = torch.randn(batch, teacher.config.num_mel_bins, 3000) * 0.5
        with torch.inference_mode():  # the student's encoder is the teacher's, copied
            enc = BaseModelOutput(last_hidden_state=teacher.model.encoder(feats).last_hidden_state)
        prompt = decoder_calls(teacher, enc, gen_kwargs(1, 0))[0]
        check = min(8, tokens)
        for model in (teacher, student):  # warm-up, and check: one decoder forward per token
            calls = decoder_calls(model, enc, gen_kwargs(check, prompt))
            if len(calls) != check:
                raise RuntimeError(f"{name}: {len(calls)} decoder forwards for {check} tokens")
        kw = gen_kwargs(tokens, prompt)
        steps = min(8, tokens)
        context = max(1, prompt + tokens // 2 - steps // 2)  # centred on the run's mean context
        cost = LayerCost(teacher, enc.last_hidden_state, context=context, steps=steps)
        times = {what: ([], []) for what in args.what}
        for i in range(args.repeats):  # alternate, so that load changes hit all
            for what in args.what:
                e2e = what == "e2e"
                order = ((teacher, times[what][0]), (student, times[what][1]))
                for model, runs in order if i % 2 == 0 else order[::-1]:
                    runs.append(time_generate(model, feats if e2e else enc, kw, e2e))
            cost.round()
        fit = {"pair": name, "batch": batch, **cost.result()}
        del cost
        fits.append(fit)
        print("fit ", _fmt_fit(fit), flush=True)
        b, c = fit["b_ms"] / 1000, fit["c_ms"] / 1000
        for what, (t_times, s_times) in times.items():
            t, s = statistics.median(t_times), statistics.median(s_times)
            ideal_s = t - (n_t - n_s) * (b * tokens + c)
            row = {
                "pair": name, "what": what, "batch": batch, "tokens": tokens,
                "teacher_layers": n_t, "student_layers": n_s,
                "teacher_s": round(t, 4), "student_s": round(s, 4),
                "speedup": round(t / s, 3), "ideal_student_s": round(ideal_s, 4),
                "ideal": round(t / ideal_s, 3), "of_ideal": round(ideal_s / s, 3),
                "teacher_runs_s": [round(x, 4) for x in t_times],
                "student_runs_s": [round(x, 4) for x in s_times],
            }  # fmt: skip
            if what == "decode":
                model_ms = fit["a_ms"] + n_t * fit["b_ms"] + n_t * fit["c_ms"] / tokens
                row["other_ms_per_step"] = round(1000 * t / tokens - model_ms, 3)
            rows.append(row)
            print("run ", _fmt_row(row), flush=True)
    return rows, fits


_ROW_HEAD = (f"{'pair':<8} {'what':<6} {'batch':>5} {'teacher s':>10} {'student s':>10} "
             f"{'speed-up':>9} {'ideal':>7} {'% ideal':>8} {'other ms/step':>14}")  # fmt: skip
_FIT_HEAD = (f"{'pair':<8} {'batch':>5} {'L':>3} {'ctx':>4} {'a ms/step':>10} "
             f"{'b ms/layer/step':>16} {'c ms/layer':>11} {'r2':>6}")  # fmt: skip


def _fmt_row(r: dict) -> str:
    other = f"{r['other_ms_per_step']:.2f}" if "other_ms_per_step" in r else "-"
    return (f"{r['pair']:<8} {r['what']:<6} {r['batch']:>5} {r['teacher_s']:>10.3f} "
            f"{r['student_s']:>10.3f} {r['speedup']:>8.2f}x {r['ideal']:>6.2f}x "
            f"{100 * r['of_ideal']:>7.0f}% {other:>14}")  # fmt: skip


def _fmt_fit(f: dict) -> str:
    return (f"{f['pair']:<8} {f['batch']:>5} {f['layers']:>3} {f['context']:>4} "
            f"{f['a_ms']:>10.2f} {f['b_ms']:>16.3f} {f['c_ms']:>11.2f} {f['r2']:>6.3f}")  # fmt: skip


def _loadavg() -> str:
    try:
        return " ".join(f"{x:.2f}" for x in os.getloadavg())
    except OSError:
        return "n/a"


def main() -> int:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--tokens", type=int, default=64, help="generated tokens per utterance")
    p.add_argument("--batch", type=int, nargs="+", default=[1, 4])
    p.add_argument("--what", nargs="+", default=["decode", "e2e"], choices=["decode", "e2e"])
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--threads", type=int, default=1, help="torch intra-op threads")
    p.add_argument("--pairs", nargs="+", default=["tiny.en", "small"],
                   choices=["tiny.en", "base", "small"])  # fmt: skip
    p.add_argument("--out", default=None, help="write the figures as JSON here")
    args = p.parse_args()
    quiet_transformers()
    torch.set_num_threads(args.threads)
    load0, t_start = _loadavg(), time.perf_counter()
    print(f"torch {torch.__version__}, {torch.get_num_threads()} thread(s), {os.cpu_count()} CPUs, "
          f"load average {load0}; fixed output length {args.tokens} tokens; "
          f"medians of {args.repeats}")  # fmt: skip
    rows, fits = [], []
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        pairs = []
        for name in ("tiny.en", "base"):
            if name in args.pairs:
                pairs.append((name, embedded_pair(name, root / name)))
        if "small" in args.pairs:
            pairs.append(("small", make_random_pair(root / "small", d_model=768, layers=12,
                                                    heads=12, ffn=3072)))  # fmt: skip
        for name, (teacher_dir, student_dir) in pairs:
            pair_rows, pair_fits = bench_pair(name, teacher_dir, student_dir, args)
            rows += pair_rows
            fits += pair_fits
    load1, elapsed = _loadavg(), time.perf_counter() - t_start
    print(
        "\nPer-layer cost, measured on the teacher: one decoder step with k layers takes a + b·k;"
    )
    print("c: cross-attention K/V of the encoder output, per layer and utterance batch.")
    print(_FIT_HEAD)
    for f in fits:
        print(_fmt_fit(f))
    print(f"\nSpeed-up: ideal = t_T / (t_T - (L - l)·(b·T + c)), T = {args.tokens} tokens.")
    print(_ROW_HEAD)
    for r in rows:
        print(_fmt_row(r))
    print(f"\nload average at start {load0}, at end {load1}; {elapsed:.0f} s")
    if args.out:
        out = Path(args.out)
        out.parent.mkdir(parents=True, exist_ok=True)
        meta = {"torch": torch.__version__, "threads": torch.get_num_threads(),
                "cpus": os.cpu_count(), "tokens": args.tokens, "repeats": args.repeats,
                "loadavg_start": load0, "loadavg_end": load1,
                "elapsed_s": round(elapsed, 1)}  # fmt: skip
        out.write_text(
            json.dumps({"meta": meta, "layer_cost": fits, "rows": rows}, indent=2) + "\n"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
