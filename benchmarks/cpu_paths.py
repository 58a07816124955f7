"""Every CPU-tuned path against the plain path it replaced, on this CPU, and on it run as an AVX2-only CPU.

    python benchmarks/cpu_paths.py                  # this CPU as it is
    python benchmarks/cpu_paths.py --emulate avx2   # the same machine limited to AVX2 (PyTorch, oneDNN, MKL)

What was tuned on one kind of CPU must not be slower than the plain path on the other. Timed here, at GPT-2 small's
sizes (Model 5), in the precision ``auto`` picks on the CPU measured (and float32 and bf16 both, for reference):

* loss: the chunked loss's float32 softmax in cache-sized row blocks (``CPU_SOFTMAX_ROWS``) against the whole chunk
  at once (forward and backward of a 512-position chunk against the 50,257 x 768 output matrix);
* vocabulary padding: the chunked loss over Model 5's 4,096 positions (8 chunks of 512, forward and backward) with
  its products padded to 50,304 vocabulary rows (``VOCAB_MULTIPLE``; only where the loss copies the output matrix to
  another dtype, so in float32 both sides run the same code) against 50,257;
* AdamW: the fused kernel (``fused=True``, what ``GPTLitModule`` uses on CPU) against the per-tensor ``foreach``
  default, one step over GPT-2 small's 124M parameters;
* attention: ``scaled_dot_product_attention``'s fused CPU kernel against its math path, forward and backward at
  B = 16, T = 256, 12 heads of 64;
* dropout (training with dropout, as Model 5): ``lit_gpt5.model.dropout``'s masks (four elements per 64-bit draw)
  against ``F.dropout`` on a 16 x 256 x 768 activation, and causal attention with dropout 0.1 written out
  (``attention_with_dropout``) against ``scaled_dot_product_attention(dropout_p=0.1)`` (its math path: no fused CPU
  kernel takes dropout), forward and backward, and the same in causal row blocks (``causal_row_blocks``: 4 of 64
  rows at T = 256) against one block, the whole T x T square (alternated call by call, in a fresh process that
  keeps freed memory, as the CLI trains);
* malloc: a whole training step (gpt-micro, B = 8, T = 256, fused AdamW, chunked loss) with glibc's freed memory kept
  (``keep_freed_memory``, what the CLI sets) against glibc's defaults, in fresh processes alternated ``--rounds``
  times per side (3 repeats of one process are within noise of each other: 0.96x and 1.04x seen for the same code).

Prints medians (seconds) and tuned / plain ratios (below 1: the tuned path is faster), and writes them as JSON.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from _machine import AVX2_EMULATION, describe_machine  # noqa: E402

DTYPES = {"32-true": torch.float32, "bf16-mixed": torch.bfloat16}
PATHS = ("loss", "padding", "attention", "dropout", "malloc", "adamw")


def median_seconds(fn, repeats: int) -> float:
    from lit_gpt5.tools.studies import median_seconds as median

    return median(fn, repeats=repeats, warmup=2)


def loss_rows(dtype: torch.dtype, rows: int | None, repeats: int) -> float:
    from lit_gpt5.model.loss import linear_cross_entropy_sum

    torch.manual_seed(0)
    weight = torch.randn(50257, 768, requires_grad=True)
    hidden = torch.randn(512, 768, requires_grad=True)
    targets = torch.randint(0, 50257, (512,))

    def step() -> None:
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=dtype == torch.bfloat16):
            total, _ = linear_cross_entropy_sum(hidden, weight, targets, 512, softmax_rows=rows)
        total.backward()
        weight.grad = hidden.grad = None

    return median_seconds(step, repeats)


def loss_padding(dtype: torch.dtype, padded: bool, repeats: int) -> float:
    import lit_gpt5.model.loss as loss_module

    torch.manual_seed(0)
    # GPT-2's initial scale (logits of std ~0.55): N(0, 1) weights give logits of std ~28, whose log-softmax
    # underflows exp into denormals, ~20x slower than a real step's.
    weight = (torch.randn(50257, 768) * 0.02).requires_grad_()
    hidden = torch.randn(4096, 768, requires_grad=True)
    targets = torch.randint(0, 50257, (4096,))
    multiple = loss_module.VOCAB_MULTIPLE

    def step() -> None:
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=dtype == torch.bfloat16):
            total, _ = loss_module.linear_cross_entropy_sum(hidden, weight, targets, 512)
        total.backward()
        weight.grad = hidden.grad = None

    loss_module.VOCAB_MULTIPLE = multiple if padded else 1
    try:
        return median_seconds(step, repeats)
    finally:
        loss_module.VOCAB_MULTIPLE = multiple


KEPT_MEMORY_PROBE = r"""
import json, sys
sys.path.insert(0, sys.argv[1])
import cpu_paths
from lit_gpt5.training.trainer import keep_freed_memory
keep_freed_memory()  # as the CLI trains: otherwise both sides mostly time page faults of their large buffers
print(json.dumps(getattr(cpu_paths, sys.argv[2])(*json.loads(sys.argv[3]))))
"""


def with_kept_memory(function: str, *args) -> tuple[float, float]:
    """``function(*args)`` of this file, (tuned, plain) medians, run in a fresh process that keeps freed memory (as
    the CLI does)."""
    out = subprocess.run([sys.executable, "-c", KEPT_MEMORY_PROBE, str(HERE), function, json.dumps(args)],
                         capture_output=True, text=True, check=True)  # fmt: skip
    tuned, plain = json.loads(out.stdout.strip().splitlines()[-1])
    return tuned, plain


def padding_alternated(precision: str, repeats: int, rounds: int) -> tuple[float, float]:
    """(padded, plain): medians over ``rounds`` alternated measurements."""
    dtype, times = DTYPES[precision], {True: [], False: []}
    for r in range(rounds):
        for padded in (True, False) if r % 2 == 0 else (False, True):
            times[padded].append(loss_padding(dtype, padded, repeats))
    return statistics.median(times[True]), statistics.median(times[False])


def adamw(fused: bool, repeats: int) -> float:
    from lit_gpt5.model.gpt import GPT, GPTConfig

    model = GPT(GPTConfig.from_name("model5"))
    for p in model.parameters():
        p.grad = torch.randn_like(p) * 1e-3
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4, fused=fused, foreach=None if fused else True)
    return median_seconds(optimizer.step, repeats)


def attention(dtype: torch.dtype, fused: bool, repeats: int) -> float:
    from torch.nn.attention import SDPBackend, sdpa_kernel

    torch.manual_seed(0)
    q, k, v = (torch.randn(16, 12, 256, 64, dtype=dtype, requires_grad=True) for _ in range(3))
    backend = SDPBackend.FLASH_ATTENTION if fused else SDPBackend.MATH

    def step() -> None:
        with sdpa_kernel(backend):
            out = torch.nn.functional.scaled_dot_product_attention(q, k, v, is_causal=True)
        out.sum().backward()
        q.grad = k.grad = v.grad = None

    return median_seconds(step, repeats)


def with_dropout(dtype: torch.dtype, tuned: bool, what: str, repeats: int) -> float:
    from lit_gpt5.model.dropout import attention_with_dropout, dropout

    torch.manual_seed(0)
    if what == "mask":
        x = torch.randn(16, 256, 768, dtype=dtype, requires_grad=True)

        def run() -> torch.Tensor:
            return dropout(x, 0.1, True) if tuned else torch.nn.functional.dropout(x, 0.1, True)

        inputs = [x]
    else:
        inputs = [torch.randn(16, 12, 256, 64, dtype=dtype, requires_grad=True) for _ in range(3)]

        def run() -> torch.Tensor:
            if tuned:
                return attention_with_dropout(*inputs, 0.1)
            return torch.nn.functional.scaled_dot_product_attention(*inputs, dropout_p=0.1, is_causal=True)

    def step() -> None:
        run().sum().backward()
        for t in inputs:
            t.grad = None

    return median_seconds(step, repeats)


def attention_blocks(precision: str, repeats: int) -> tuple[float, float]:
    """(row blocks, one block): medians of ``attention_with_dropout``'s forward and backward, the two alternated call
    by call, on q, k, v as the model passes them (transposed views of one projection)."""
    from lit_gpt5.model.dropout import attention_with_dropout

    torch.manual_seed(0)
    qkv = torch.randn(16, 256, 3 * 768, dtype=DTYPES[precision])

    def once(blocks: int | None) -> float:
        q, k, v = (t.view(16, 256, 12, 64).transpose(1, 2).detach().requires_grad_() for t in qkv.split(768, dim=2))
        start = time.perf_counter()
        attention_with_dropout(q, k, v, 0.1, blocks).sum().backward()
        return time.perf_counter() - start

    times: dict[int | None, list[float]] = {None: [], 1: []}
    for i in range(repeats + 2):
        for blocks in (None, 1):
            seconds = once(blocks)
            if i >= 2:  # the first calls page memory in
                times[blocks].append(seconds)
    return statistics.median(times[None]), statistics.median(times[1])


STEP_PROBE = r"""
import sys, time, statistics, torch
from lit_gpt5.training.module import GPTLitModule
from lit_gpt5.training.trainer import keep_freed_memory
if sys.argv[1] == "keep":
    keep_freed_memory()
dtype = {"32-true": torch.float32, "bf16-mixed": torch.bfloat16}[sys.argv[2]]
torch.manual_seed(0)
module = GPTLitModule(model_name="gpt-micro", dropout=0.0)
optimizer = torch.optim.AdamW(module.parameters(), lr=1e-4, fused=True)
x = torch.randint(0, 50257, (8, 256))
times = []
for i in range(int(sys.argv[3]) + 2):
    start = time.perf_counter()
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=dtype == torch.bfloat16):
        total, count = module.loss_sum(x, x)
    (total / count).backward()
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    if i >= 2:
        times.append(time.perf_counter() - start)
print(statistics.median(times))
"""


def training_steps(precision: str, repeats: int, rounds: int) -> tuple[float, float]:
    """(kept, default): median step times, each the median over ``rounds`` fresh processes, alternated (the
    setting is process-wide and cannot be undone, so each side needs processes of its own)."""
    times: dict[str, list[float]] = {"keep": [], "default": []}
    for r in range(rounds):
        for mode in ("keep", "default") if r % 2 == 0 else ("default", "keep"):
            out = subprocess.run(
                [sys.executable, "-c", STEP_PROBE, mode, precision, str(repeats)],
                capture_output=True,
                text=True,
                check=True,
            )
            times[mode].append(float(out.stdout.strip().splitlines()[-1]))
    return statistics.median(times["keep"]), statistics.median(times["default"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--emulate", choices=["avx2"], help="run as an AVX2-only CPU (re-runs this script)")
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--rounds", type=int, default=4, help="fresh processes per side for the malloc rows")
    parser.add_argument("--precisions", nargs="+", choices=list(DTYPES), default=list(DTYPES),
                        help="which to time (bf16 on a CPU without native bf16 takes tens of minutes)")  # fmt: skip
    parser.add_argument("--json_out", default="cpu_paths.json")
    parser.add_argument("--paths", nargs="+", choices=PATHS, default=list(PATHS), help="which rows to time")
    args = parser.parse_args()
    if args.emulate:
        argv = [a for a in sys.argv[1:] if a not in ("--emulate", "avx2")]
        os.execve(sys.executable, [sys.executable, __file__, *argv], {**os.environ, **AVX2_EMULATION})

    from lit_gpt5.model.loss import CPU_SOFTMAX_ROWS
    from lit_gpt5.training.trainer import resolve_precision

    machine = describe_machine()
    print(machine["line"])
    auto, _ = resolve_precision("auto", "cpu")
    print(f"precision auto resolves to {auto} here")
    rows = []

    def row(path: str, precision: str, tuned: float, plain: float) -> None:
        rows.append({"path": path, "precision": precision, "auto": precision == auto, "tuned_s": tuned,
                     "plain_s": plain, "ratio": tuned / plain})  # fmt: skip
        mark = "  <- auto" if precision == auto else ""
        print(f"{path:<34}{precision:<12}{tuned:>10.4f}{plain:>10.4f}{tuned / plain:>8.2f}x{mark}", flush=True)

    print(f"{'path (tuned vs plain)':<34}{'precision':<12}{'tuned s':>10}{'plain s':>10}{'ratio':>9}")
    for precision in args.precisions:
        dtype, r = DTYPES[precision], args.repeats
        if "loss" in args.paths:
            row(f"loss softmax rows {CPU_SOFTMAX_ROWS} vs 512", precision, loss_rows(dtype, None, r),
                loss_rows(dtype, 512, r))  # fmt: skip
        if "padding" in args.paths:
            row(
                "loss vocab padded vs 50,257",
                precision,
                *with_kept_memory("padding_alternated", precision, r, args.rounds),
            )
        if "attention" in args.paths:
            row("attention fused vs math", precision, attention(dtype, True, r), attention(dtype, False, r))
        if "dropout" in args.paths:
            row("dropout masks: lanes vs F.dropout", precision, with_dropout(dtype, True, "mask", r),
                with_dropout(dtype, False, "mask", r))  # fmt: skip
            row("attention+dropout: ours vs SDPA", precision, with_dropout(dtype, True, "attention", r),
                with_dropout(dtype, False, "attention", r))  # fmt: skip
            row("attention+dropout: blocks vs 1", precision, *with_kept_memory("attention_blocks", precision, r))
        if "malloc" in args.paths:
            row("malloc kept vs glibc default", precision, *training_steps(precision, r, args.rounds))
    if "adamw" in args.paths:
        row("AdamW fused vs foreach (fp32)", "32-true", adamw(True, args.repeats), adamw(False, args.repeats))
    Path(args.json_out).write_text(json.dumps({"machine": machine, "auto": auto, "rows": rows}, indent=1))


if __name__ == "__main__":
    main()
