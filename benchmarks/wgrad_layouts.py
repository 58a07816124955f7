"""The step's weight-gradient GEMMs in other layouts: would copying an operand first, or computing the transposed
product, beat the layout the step runs them in?

    python benchmarks/wgrad_layouts.py --json benchmarks/results/roofline-amx/wgrad-layouts.json

``roofline.py`` finds the weight-gradient products ("TN": C = A^T B with A and B both stored position-major, 4,096
rows for Model 5's step, 512 for each chunk of the loss) the slowest GEMMs of a step on a CPU with AMX when their
operands are cold (~1,100-1,400 GFLOP/s against ~2,500 hot). This times each of them, cold as ``roofline.cold_matmul``
does (every call reads other copies of its operands), four ways:

* ``step``: A^T @ B with A^T a transposed view, as autograd and the chunked loss run it;
* ``copy_first``: A^T made contiguous first, then the product (the copy is timed);
* ``transposed``: C^T = B^T @ A instead (a caller would then hold the transpose of the gradient it needs; turning it
  back is not timed);
* ``transposed_copy_first``: B^T made contiguous first, then C^T = B^T @ A (the copy is timed);

and what the loss would pay once a step to turn a transposed float32 sum of its chunks' parts back into the
vocabulary x C gradient. A is d(output) and B the input: ``step`` is the weight's own (out x in) gradient, as autograd
computes it for a linear layer and the chunked loss for the output matrix (``roofline.step_gemms``; tested).

Prints milliseconds and GFLOP/s per shape and variant, and writes them as JSON.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from _machine import describe_machine  # noqa: E402
from roofline import cold_seconds, ring_copies, step_gemms  # noqa: E402

VARIANTS = {
    "step": lambda a, b: a.t() @ b,
    "copy_first": lambda a, b: a.t().contiguous() @ b,
    "transposed": lambda a, b: b.t() @ a,
    "transposed_copy_first": lambda a, b: b.t().contiguous() @ a,
}


def time_variant(variant, m: int, k: int, n: int, dtype: torch.dtype, repeats: int) -> float:
    """Median seconds of one weight-gradient product in ``variant``, cold operands: A stored m x k (d(output), used
    transposed), B stored m x n (the input), as ``step_gemms``'s (k, m, n) "TN" row."""
    copies = ring_copies((m * k + m * n) * dtype.itemsize)
    ring = [(torch.randn(m, k).to(dtype), torch.randn(m, n).to(dtype)) for _ in range(copies)]
    return cold_seconds(ring, variant, repeats)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="model5", help="a model name of GPTConfig.from_name")
    parser.add_argument("--tokens", type=int, default=16 * 256, help="positions per step (Model 5: 16 x 256)")
    parser.add_argument("--precision", choices=["bf16", "float32"], default="bf16")
    parser.add_argument("--repeats", type=int, default=12)
    parser.add_argument("--json", type=Path, help="write the figures here")
    args = parser.parse_args()
    from lit_gpt5.model.gpt import CONFIGS, GPTConfig
    from lit_gpt5.training.trainer import keep_freed_memory

    if args.model not in CONFIGS:
        sys.exit(f"error: --model {args.model}: unknown; choose one of {', '.join(CONFIGS)}")
    if args.tokens < 1 or args.repeats < 1:
        sys.exit(f"error: --tokens {args.tokens} and --repeats {args.repeats} must both be at least 1")
    dtype = torch.bfloat16 if args.precision == "bf16" else torch.float32
    machine = describe_machine()
    print(machine["line"], flush=True)
    keep_freed_memory()  # as the CLI trains: the copies and products reuse freed memory instead of faulting in new
    torch.manual_seed(0)
    rows = []
    for (k, m, n), count, layout in step_gemms(GPTConfig.from_name(args.model), args.tokens, dtype):
        if layout != "TN":
            continue
        row = {"shape": [k, m, n], "count": count, "ms": {}, "gflop_per_s": {}}
        for name, variant in VARIANTS.items():
            seconds = time_variant(variant, m, k, n, dtype, args.repeats)
            row["ms"][name], row["gflop_per_s"][name] = seconds * 1e3, 2 * m * k * n / seconds / 1e9
        rows.append(row)
        cells = "  ".join(f"{name} {row['ms'][name]:7.1f} ms ({row['gflop_per_s'][name]:5.0f})" for name in VARIANTS)
        print(f"{k}x{m}:{m}x{n} x{count}  {cells}")
    totals = {name: sum(row["ms"][name] * row["count"] for row in rows) for name in VARIANTS}
    print("per step: " + ", ".join(f"{name} {ms:.0f} ms" for name, ms in totals.items()))
    # What a transposed product costs the loss afterwards: its float32 sum of the chunks' parts, C x vocabulary, made
    # the vocabulary x C gradient the output matrix needs (once a step).
    config = GPTConfig.from_name(args.model)
    transposed_sums = [(torch.randn(config.n_embd, config.vocab_size),) for _ in range(2)]
    transpose_ms = 1e3 * cold_seconds(transposed_sums, lambda x: x.t().contiguous(), 5)
    print(f"the loss's C x vocabulary float32 sum transposed to vocabulary x C: {transpose_ms:.0f} ms")
    if args.json:
        result = {"machine": machine, "precision": args.precision, "tokens": args.tokens, "rows": rows,
                  "ms_per_step": totals, "loss_sum_transpose_ms": transpose_ms}  # fmt: skip
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
