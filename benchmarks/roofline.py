"""Model 5's training step against this machine's own matmul roofline: how close the real step gets to what its
matmuls alone would take.

    python benchmarks/roofline.py --text_path ../shared/data/gutenberg/829-0.txt --json benchmarks/results/roofline.json
    python benchmarks/roofline.py --text_path … --profile benchmarks/results/roofline-profile.txt   # + top-15 ops
    python benchmarks/roofline.py --text_path … --step_only --json …   # the real step and its phases only (A/B runs)
    python benchmarks/roofline.py --text_path … --gemm_log benchmarks/results/roofline/gemms-in-step.txt  # CPU

1. **The matmul peak**, in the precision ``auto`` picks here: every GEMM of one training step of the model, forward
   and backward (for each linear layer: the forward product, the input gradient and the weight gradient; the
   vocabulary projection in the chunked loss's blocks of 512 positions, on the padded vocabulary in mixed precision
   as the loss runs it), each timed alone on its own shape (median of
   ``--repeats``), weighted by how many times a step runs it. Peak = the step's GEMM FLOPs / the time the GEMMs alone
   take: the FLOP rate a step would reach if it did nothing but its matmuls at this machine's speed. Measured before
   and after the real step; the faster of the two is the peak. Beside it, the same GEMMs **cold**: in the layouts the
   step runs them (transposed weights and inputs) and each call on operands not in the cache, as in the step, where an
   operand was written long before its product (``cold_roofline``): what a step of nothing but its GEMMs could reach.
2. **The real step**: ``GPTLitModule`` trained by the package's ``Trainer`` on random windows of the book (dropout
   0.1, fused AdamW, clipping, the chunked loss, Lightning's loop), ``--steps`` optimizer steps after ``--warmup``,
   timed from one step's end to the next's (the data, the loop and the optimizer included); median.
3. **The fraction**: the step's FLOPs (``GPT.flops_per_token``, the package's one count: 6N plus attention per
   token) / the step's time / the peak. On a GPU the datasheet peak (Lightning's table) is printed beside the
   measured one.

Nothing else should run meanwhile. ``--json`` writes every figure and the machine.
"""

from __future__ import annotations

import argparse
import json
import operator
import os
import re
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

import lightning as L
import torch

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from _machine import describe_machine  # noqa: E402

CHUNK = 512  # the chunked loss's positions per block (GPTLitModule's default loss_chunk_size)
MARK, MARK_ENV = "roofline: step end", "LIT_GPT5_ROOFLINE_MARKS"


def step_gemms(config, tokens: int, dtype: torch.dtype) -> list[tuple[tuple[int, int, int], int, str]]:
    """((m, k, n), count, layout) of every GEMM of one training step: m x k times k x n, run ``count`` times, with
    the operand the step passes as a transposed view marked T ("NT": the forward's weight, "NN": the input gradient,
    "TN": the weight gradient's input). In mixed precision the chunked loss's products run on the vocabulary padded
    to ``padded_vocab`` (its GEMMs are faster there, so the peak is measured there too: the padding's FLOPs are not
    counted in the step's)."""
    from lit_gpt5.model.loss import padded_vocab

    c, layers = config.n_embd, config.n_layer
    v = config.vocab_size if dtype == torch.float32 else padded_vocab(config.vocab_size)
    products = [((tokens, k, n), layers) for k, n in ((c, 3 * c), (c, c), (c, 4 * c), (4 * c, c))]  # attn, MLP in/out
    products.append(((CHUNK, c, v), -(-tokens // CHUNK)))  # the vocabulary, in the chunked loss's blocks
    gemms = []
    for (m, k, n), count in products:
        # forward, input gradient, weight gradient; the weight gradient as autograd runs it for a weight stored
        # (out x in): d(out) transposed times the input, (n x m) @ (m x k), not the input transposed times d(out)
        # (the same FLOPs in other shapes; the chunked loss computes it the same way)
        gemms += [((m, k, n), count, "NT"), ((m, n, k), count, "NN"), ((n, m, k), count, "TN")]
    return gemms


def gemm_set(config, tokens: int, dtype: torch.dtype, rate) -> tuple[list[dict], int, float]:
    """Every GEMM of a step timed by ``rate(m, k, n, layout)`` (FLOP/s): the rows, the step's GEMM FLOPs and the
    seconds they take at those rates."""
    rows, flops, seconds = [], 0, 0.0
    for (m, k, n), count, layout in step_gemms(config, tokens, dtype):
        speed = rate(m, k, n, layout)
        rows.append({"shape": [m, k, n], "layout": layout, "count": count, "gflop_per_s": speed / 1e9})
        flops += 2 * m * k * n * count
        seconds += 2 * m * k * n * count / speed
    return rows, flops, seconds


def matmul_roofline(config, tokens: int, dtype: torch.dtype, device: torch.device, repeats: int) -> dict:
    """The peak: each GEMM on two contiguous operands, hot in the cache (``measure_matmul``, as the MFU's peak);
    a row's layout is the step's, not the one timed here."""
    from lit_gpt5.training.peak import measure_matmul

    hot = lambda m, k, n, _layout: measure_matmul(m, k, n, dtype, device, repeats)  # noqa: E731
    rows, flops, seconds = gemm_set(config, tokens, dtype, hot)
    return {"gemm_flops": flops, "gemm_seconds": seconds, "peak_flop_per_s": flops / seconds, "gemms": rows}


COLD_BYTES = 256 * 2**20  # operand copies cycled through per GEMM: far more than this CPU's (or a GPU's) caches


def ring_copies(bytes_per_copy: int) -> int:
    """Operand copies to cycle through so that every call reads memory the caches no longer hold (``COLD_BYTES`` in
    all, 2 to 16 copies)."""
    return max(2, min(16, COLD_BYTES // bytes_per_copy))


def cold_seconds(ring: list[tuple], op, repeats: int, sync=lambda: None) -> float:
    """Median seconds of ``op(*operands)`` over ``repeats`` calls, each on the next operands of ``ring`` (the first
    call, which picks kernels, is not timed)."""
    times = []
    for i in range(repeats + 1):
        operands = ring[i % len(ring)]
        sync()
        start = time.perf_counter()
        op(*operands)
        sync()
        times.append(time.perf_counter() - start)
    return statistics.median(times[1:])


def cold_matmul(m: int, k: int, n: int, layout: str, dtype: torch.dtype, device: torch.device, repeats: int) -> float:
    """FLOP/s of an (m x k) @ (k x n) matmul as the step runs it: ``layout`` marks the operand passed as a transposed
    view (see ``step_gemms``), and every call reads a different copy of its operands from a ring larger than the
    caches (as in the step, where an operand was written long before its product)."""
    ring = []
    for _ in range(ring_copies((m * k + k * n) * dtype.itemsize)):
        a = torch.randn((k, m) if layout[0] == "T" else (m, k), device=device).to(dtype)
        b = torch.randn((n, k) if layout[1] == "T" else (k, n), device=device).to(dtype)
        ring.append((a.t() if layout[0] == "T" else a, b.t() if layout[1] == "T" else b))
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    return 2 * m * k * n / cold_seconds(ring, operator.matmul, repeats, sync)


def cold_roofline(config, tokens: int, dtype: torch.dtype, device: torch.device, repeats: int) -> dict:
    """The step's GEMMs in the step's layouts with cold operands (``cold_matmul``): the rate a step made of nothing
    but its GEMMs could reach here, below the peak by what the caches give the peak's hot operands."""
    cold = lambda m, k, n, layout: cold_matmul(m, k, n, layout, dtype, device, repeats)  # noqa: E731
    rows, flops, seconds = gemm_set(config, tokens, dtype, cold)
    return {"cold_flop_per_s": flops / seconds, "cold_gemms": rows}


class StepTimer(L.Callback):
    """The wall time between consecutive ends of training batches (one optimizer step each: no accumulation), split
    into forward (with the chunked loss, which computes its gradients there), backward, and the optimizer with the
    rest of the loop; given a profiler, its ``step()`` after each batch (its schedule says which batches it records)."""

    def __init__(self, profiler=None) -> None:
        self.ends: list[float] = []
        self.faults: list[int] = []  # minor page faults of the process at the start, then by each batch end
        self.phases: list[tuple[float, float, float]] = []
        self.profiler = profiler
        self._marks: dict[str, float] = {}

    def on_train_start(self, trainer, pl_module) -> None:
        self.faults.append(resource.getrusage(resource.RUSAGE_SELF).ru_minflt)

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        self._marks["start"] = time.perf_counter()

    def on_before_backward(self, trainer, pl_module, loss) -> None:
        self._marks["backward"] = time.perf_counter()

    def on_after_backward(self, trainer, pl_module) -> None:
        self._marks["optimizer"] = time.perf_counter()

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        end = time.perf_counter()
        self.ends.append(end)
        self.faults.append(resource.getrusage(resource.RUSAGE_SELF).ru_minflt)
        if os.environ.get(MARK_ENV):
            print(MARK, flush=True)  # splits oneDNN's verbose log into steps (--gemm_log)
        m = self._marks
        self.phases.append((m["backward"] - m["start"], m["optimizer"] - m["backward"], end - m["optimizer"]))
        if self.profiler is not None:
            self.profiler.step()


def real_step(args, profile_out: Path | None) -> dict:
    """The median real training step; with ``profile_out``, two more steps after the timed ones are profiled
    (torch.profiler) and the top-15 operators by self time written there."""
    import contextlib

    from torch.profiler import ProfilerActivity, schedule
    from torch.profiler import profile as torch_profile

    from lit_gpt5.data import GutenbergDataModule
    from lit_gpt5.training.module import GPTLitModule
    from lit_gpt5.training.trainer import Trainer

    L.seed_everything(0, verbose=False)
    module = GPTLitModule(model_name=args.model, dropout=args.dropout)
    data = GutenbergDataModule(text_path=args.text_path, block_size=args.block_size, batch_size=args.batch_size)
    timed = args.warmup + args.steps
    profiler = None
    if profile_out is not None:
        activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if torch.cuda.is_available() else [])
        profiler = torch_profile(activities=activities, schedule=schedule(wait=timed, warmup=1, active=2))
    timer = StepTimer(profiler)
    trainer = Trainer(
        accelerator="auto", precision="auto", max_steps=timed + (3 if profiler else 0), limit_val_batches=0,
        num_sanity_val_steps=0, logger=False, enable_checkpointing=False, enable_progress_bar=False,
        enable_model_summary=False, gradient_clip_val=1.0, callbacks=[timer],
    )  # fmt: skip
    with profiler if profiler is not None else contextlib.nullcontext():
        trainer.fit(module, datamodule=data)
    steps = [b - a for a, b in zip(timer.ends, timer.ends[1:], strict=False)][args.warmup - 1 : timed - 1]
    phases = timer.phases[args.warmup : timed]
    names = ("forward_and_loss", "backward", "optimizer_and_rest")
    phase_seconds = {name: statistics.median(p[i] for p in phases) for i, name in enumerate(names)}
    faults = [b - a for a, b in zip(timer.faults, timer.faults[1:], strict=False)][:timed]  # every step
    result = {"precision": str(trainer.precision), "step_seconds": statistics.median(steps), "steps": steps,
              "phase_seconds": phase_seconds, "page_faults_per_step": faults}  # fmt: skip
    if profiler is not None:
        sort = "self_cuda_time_total" if torch.cuda.is_available() else "self_cpu_time_total"
        table = profiler.key_averages().table(sort_by=sort, row_limit=15, max_name_column_width=60)
        profile_out.write_text(describe_machine()["line"] + "\n" + table + "\n")
        result["profile"] = str(profile_out)
    return result


MKL_GEMM = re.compile(r"MKL_VERBOSE ([SD]GEMM)\(([NT]),([NT]),(\d+),(\d+),(\d+),.*\) ([\d.]+)(ns|us|ms|s) ")
UNIT = {"ns": 1e-9, "us": 1e-6, "ms": 1e-3, "s": 1.0}


def gemm_record(line: str) -> tuple[str, float, float] | None:
    """(shape, FLOPs, seconds) of one GEMM from oneDNN's verbose log (bf16, and whatever else oneDNN runs) or MKL's
    (float32), else None."""
    if line.startswith("onednn_verbose") and ",exec,cpu,matmul," in line:
        fields = line.split(",")
        src, wei = (list(map(int, part.split("x"))) for part in fields[-2].split(":"))
        batch = src[0] if len(src) == 3 else 1
        return fields[-2], 2.0 * batch * src[-2] * src[-1] * wei[-1], float(fields[-1]) / 1e3
    match = MKL_GEMM.match(line)
    if match:
        name, ta, tb, m, n, k, value, unit = match.groups()
        shape = f"{name}({ta},{tb}) {m}x{n}x{k}"  # column-major m x n, inner k
        return shape, 2.0 * int(m) * int(n) * int(k), float(value) * UNIT[unit]
    return None


def gemm_log(args) -> str:
    """The real step's GEMMs as the CPU's libraries time them inside it: this script run again with ``--step_only``,
    ``ONEDNN_VERBOSE=profile_exec`` and ``MKL_VERBOSE=1``, its log split at each step's end. Per timed step: the
    seconds in GEMMs against the step's, and per shape the calls, time and GFLOP/s (means over the timed steps).
    Batched float32 products (attention's ``bmm``) are not in MKL's log: a float32 total leaves them out."""
    argv = [sys.executable, __file__, "--step_only", "--text_path", args.text_path, "--model", args.model,
            "--batch_size", str(args.batch_size), "--block_size", str(args.block_size), "--dropout", str(args.dropout),
            "--steps", str(args.steps), "--warmup", str(args.warmup)]  # fmt: skip
    env = {**os.environ, "ONEDNN_VERBOSE": "profile_exec", "MKL_VERBOSE": "1", MARK_ENV: "1"}
    out = subprocess.run(argv, env=env, capture_output=True, text=True, check=True).stdout.splitlines()
    steps, current = [], []
    for line in out:
        if line == MARK:
            steps.append(current)
            current = []
        elif (record := gemm_record(line)) is not None:
            current.append(record)
    timed = steps[args.warmup : args.warmup + args.steps]
    per_shape: dict[str, list[float]] = {}
    for step in timed:
        for shape, flops, seconds in step:
            totals = per_shape.setdefault(shape, [0, 0.0, 0.0])
            totals[0] += 1
            totals[1] += flops
            totals[2] += seconds
    n = len(timed)
    step_line = next(line for line in out if line.startswith("real training step"))
    gemm_seconds = [sum(seconds for *_, seconds in step) for step in timed]
    lines = [describe_machine()["line"], step_line,
             f"GEMMs per timed step: {', '.join(f'{g:.2f}' for g in gemm_seconds)} s "
             f"(median {statistics.median(gemm_seconds):.2f} s)", "",
             f"{'shape':<34}{'calls/step':>11}{'ms/step':>10}{'GFLOP/s':>9}"]  # fmt: skip
    for shape, (calls, flops, seconds) in sorted(per_shape.items(), key=lambda kv: -kv[1][2]):
        lines.append(f"{shape:<34}{calls / n:>11.0f}{seconds / n * 1e3:>10.1f}{flops / seconds / 1e9:>9.0f}")
    flops, seconds = sum(v[1] for v in per_shape.values()) / n, sum(gemm_seconds) / n
    lines.append(f"all: {flops / 1e12:.2f} TFLOP a step in {seconds:.2f} s = {flops / seconds / 1e9:.0f} GFLOP/s")
    return "\n".join(lines) + "\n"


def real_step_arguments(parser: argparse.ArgumentParser, steps: int = 6) -> None:
    """The arguments ``real_step`` reads (the book, the model and batch, the timed and untimed steps)."""
    parser.add_argument("--text_path", required=True, help="a local copy of Gulliver's Travels (book 829)")
    parser.add_argument("--model", default="model5")
    parser.add_argument("--batch_size", type=int, default=16)
    parser.add_argument("--block_size", type=int, default=256)
    parser.add_argument("--dropout", type=float, default=0.1, help="Model 5's config trains with 0.1")
    parser.add_argument("--steps", type=int, default=steps, help="timed optimizer steps")
    parser.add_argument(
        "--warmup",
        type=int,
        default=3,
        help="untimed steps: the first three fault their memory "
        "in (Model 5 here: ~750k, ~390k and ~20-35k minor faults, then ~0; page_faults_per_step)",
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    real_step_arguments(parser)
    parser.add_argument("--repeats", type=int, default=5, help="timed runs of each GEMM")
    parser.add_argument("--json", help="write the results here")
    parser.add_argument("--profile", help="also profile two steps and write the top-15 table here")
    parser.add_argument("--step_only", action="store_true", help="time the real step (and its phases) only, no GEMMs: "
                        "for A/B runs of two versions alternated on one machine")  # fmt: skip
    parser.add_argument("--gemm_log", help="CPU: time the real step's GEMMs inside it (oneDNN's verbose log, in a run "
                        "of its own) and write the table here")  # fmt: skip
    args = parser.parse_args()
    if args.gemm_log:
        table = gemm_log(args)
        Path(args.gemm_log).write_text(table)
        print(table, end="")
        return
    from lit_gpt5.model.gpt import GPTConfig
    from lit_gpt5.training.peak import compute_dtype
    from lit_gpt5.training.trainer import keep_freed_memory, resolve_precision

    machine = describe_machine()
    print(machine["line"], flush=True)
    keep_freed_memory()  # as the CLI does
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    precision, _ = resolve_precision("auto", device.type)
    dtype = compute_dtype(str(precision))
    config = GPTConfig.from_name(args.model)
    tokens = args.batch_size * args.block_size
    if args.step_only:
        step = real_step(args, Path(args.profile) if args.profile else None)
        phases = ", ".join(f"{k} {v:.2f} s" for k, v in step["phase_seconds"].items())
        print(f"real training step: {step['step_seconds']:.2f} s (median of {len(step['steps'])}; {phases})")
        if args.json:
            record = {"machine": machine, "settings": vars(args), **step}
            Path(args.json).write_text(json.dumps(record, indent=1) + "\n")
        return
    # The GEMMs are timed before and after the real step and the faster of the two kept: a peak measured in a slow
    # moment of a shared machine would flatter the fraction.
    first = matmul_roofline(config, tokens, dtype, device, args.repeats)
    step = real_step(args, Path(args.profile) if args.profile else None)
    second = matmul_roofline(config, tokens, dtype, device, args.repeats)
    roof = max(first, second, key=lambda r: r["peak_flop_per_s"])
    roof["peaks_measured"] = [first["peak_flop_per_s"], second["peak_flop_per_s"]]
    cold = cold_roofline(config, tokens, dtype, device, args.repeats)
    from lit_gpt5.model.gpt import GPT

    with torch.device("meta"):
        model = GPT(config)
    step_flops = model.flops_per_token(args.block_size, training=True) * tokens
    achieved = step_flops / step["step_seconds"]
    result = {
        "machine": machine, "settings": vars(args), "precision": step["precision"], "step_flops": step_flops,
        "step_seconds": step["step_seconds"], "step_flop_per_s": achieved,
        "tokens_per_s": tokens / step["step_seconds"], "fraction_of_peak": achieved / roof["peak_flop_per_s"],
        **roof, **cold, "cold_fraction_of_peak": cold["cold_flop_per_s"] / roof["peak_flop_per_s"],
        "steps": step["steps"], "phase_seconds": step["phase_seconds"],
        "page_faults_per_step": step["page_faults_per_step"],
    }  # fmt: skip
    if device.type == "cuda":
        from lightning.fabric.utilities.throughput import get_available_flops

        result["datasheet_peak_flop_per_s"] = get_available_flops(device, dtype)
    print(f"{args.model}, B={args.batch_size}, T={args.block_size}, {step['precision']}, dropout {args.dropout}")
    print(f"matmul peak (this step's GEMMs, each alone): {roof['peak_flop_per_s'] / 1e9:,.0f} GFLOP/s "
          f"({roof['gemm_flops'] / 1e12:.2f} TFLOP of GEMMs in {roof['gemm_seconds']:.2f} s; measured before and "
          f"after the step: {', '.join(f'{p / 1e9:,.0f}' for p in roof['peaks_measured'])})")  # fmt: skip
    print(
        f"the same GEMMs in the step's layouts, operands cold: {cold['cold_flop_per_s'] / 1e9:,.0f} GFLOP/s "
        f"({result['cold_fraction_of_peak']:.0%} of the peak: a step of nothing but GEMMs would reach this)"
    )
    print(f"real training step: {step['step_seconds']:.2f} s (median of {len(step['steps'])}), "
          f"{step_flops / 1e12:.2f} TFLOP by GPT.flops_per_token = {achieved / 1e9:,.0f} GFLOP/s, "
          f"{tokens / step['step_seconds']:,.0f} tokens/s")  # fmt: skip
    print(f"fraction of the matmul peak: {result['fraction_of_peak']:.0%}")
    if "datasheet_peak_flop_per_s" in result and result["datasheet_peak_flop_per_s"]:
        print(f"MFU against the datasheet peak: {achieved / result['datasheet_peak_flop_per_s']:.0%}")
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=1) + "\n")


if __name__ == "__main__":
    main()
