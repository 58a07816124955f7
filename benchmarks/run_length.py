"""The start-up line's estimate of a step against the real step, on this machine.

    python benchmarks/run_length.py --text_path ../shared/data/gutenberg/829-0.txt --json benchmarks/results/….json

1. **The estimate**, as ``fit`` makes it at start-up (``lit_gpt5.training.peak.run_length_note``), with an empty cache
   so that it is measured now: on a CPU the step timed in parts (the model's first block forward and backward, the
   loss over one chunk and two, an AdamW step over a copy of a block's parameters), added up for the whole model.
2. **The real step**: ``benchmarks/roofline.py``'s (the package's ``Trainer`` on random windows of the book, dropout
   0.1, fused AdamW, clipping, the chunked loss; median of ``--steps`` after ``--warmup``).

Printed: both, and the estimate's error. Nothing else should run meanwhile; under the AVX2 emulation variables
(``ATEN_CPU_CAPABILITY=avx2 ONEDNN_MAX_CPU_ISA=AVX2 MKL_ENABLE_INSTRUCTIONS=AVX2``) both run as on an AVX2-only CPU,
in float32, which ``auto`` picks there.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from unittest import mock

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from _machine import describe_machine  # noqa: E402


def estimate(args) -> dict:
    """The start-up note for ``args``' run (500 steps), measured into an empty cache, and the step it adds up to."""
    from lit_gpt5.training.module import GPTLitModule
    from lit_gpt5.training.peak import STEP_SHARE, device_peak, run_length_note, step_seconds
    from lit_gpt5.training.trainer import Trainer

    module = GPTLitModule(model_name=args.model, dropout=args.dropout)
    trainer = Trainer(accelerator="auto", precision="auto", logger=False)
    tokens = args.batch_size * args.block_size
    # An empty cache, so that the estimate is measured now; the caller's setting is back afterwards.
    with tempfile.TemporaryDirectory() as cache, mock.patch.dict(os.environ, {"LIT_GPT5_CACHE": cache}):
        start = time.perf_counter()
        note = run_length_note(module, trainer, tokens, args.block_size, 500, args.batch_size)
        seconds = time.perf_counter() - start
        if trainer.strategy.root_device.type == "cpu":  # read back from the cache the note filled (or measured now)
            parts = step_seconds(module, str(trainer.precision), args.batch_size, args.block_size, 1)
        else:  # elsewhere the note is the matmul FLOPs at STEP_SHARE of the device's peak
            flops = module.model.flops_per_token(args.block_size, training=True) * tokens
            parts = {"step": flops / (device_peak(trainer, module.model) * STEP_SHARE)}
    return {"note": note, "measured_in_seconds": seconds, "precision": str(trainer.precision), **parts}


def main() -> None:
    from roofline import real_step, real_step_arguments

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    real_step_arguments(parser, steps=4)
    parser.add_argument("--json", help="write the results here")
    args = parser.parse_args()
    if not Path(args.text_path).is_file():
        sys.exit(f"error: --text_path {args.text_path}: no such file; pass a local copy of the book")

    from lit_gpt5.training.trainer import keep_freed_memory

    machine = describe_machine()
    print(machine["line"], flush=True)
    keep_freed_memory()  # as the CLI does, before its start-up line
    guess = estimate(args)
    note = guess["note"] or "none in the start-up line (a run this small takes minutes); its parts timed all the same"
    print(f"estimate ({guess['measured_in_seconds']:.1f} s to measure): {note}", flush=True)
    real = real_step(args, None)
    error = guess["step"] / real["step_seconds"] - 1
    print(
        f"step: estimated {guess['step']:.2f} s, real {real['step_seconds']:.2f} s (median of {len(real['steps'])}, "
        f"{real['precision']}): the estimate is {error:+.1%} off"
    )
    if args.json:
        record = {"machine": machine, "settings": vars(args), "estimate": guess, "real": real, "error": error}
        Path(args.json).write_text(json.dumps(record, indent=1) + "\n")


if __name__ == "__main__":
    main()
