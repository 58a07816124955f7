"""The first run on a GPU: Model 5's speed, and the memory estimate against what CUDA really allocates.

    python benchmarks/gpu_check.py --text_path ../shared/data/gutenberg/829-0.txt    # one GPU, under 10 minutes
    python benchmarks/gpu_check.py --dry_run                                         # CPU, tiny model: the script works

1. Model 5 (GPT-2 small, B = 16, T = 256, the precision ``auto`` picks on this GPU) for ``--steps`` optimizer steps
   through the real Trainer: median step time after warm-up, tokens/s, and MFU against the GPU's documented bf16 dense
   peak (A100 312, H100/H200 989 TFLOP/s, ...; measured matmul throughput where unknown).
2. For a handful of fine-tuning settings (GPT-2 Medium and Large, T = 1024, with and without activation
   checkpointing, chunked and full-logits loss): one training step (forward, loss, backward, fused AdamW) of the real
   model, ``torch.cuda.max_memory_allocated()`` against ``lit_gpt5.training.memory_estimate.estimate``. A setting
   that does not fit prints OOM next to its estimate.

One table, also written as JSON. ``--dry_run`` does the same on the CPU with gpt-nano, a few steps and small settings,
the "allocated" figure coming from PyTorch's memory tracker on fake tensors (no CUDA allocator there): it checks the
script, not the GPU.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import lightning as L
import torch

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from _machine import describe_machine  # noqa: E402

DOCUMENTED_BF16_PEAK = {"A100": 312e12, "H100": 989e12, "H200": 989e12, "L4": 121e12, "A10G": 125e12, "4090": 165e12}
SETTINGS = [  # (model, micro-batch, activation checkpointing, loss chunk)
    ("gpt2-medium", 4, False, 512),
    ("gpt2-medium", 4, False, 0),
    ("gpt2-large", 4, True, 512),
    ("gpt2-large", 4, True, 0),
    ("gpt2-large", 4, False, 512),
]
DRY_SETTINGS = [("gpt-nano", 2, False, 64), ("gpt-nano", 2, True, 0)]


class StepTimer(L.Callback):
    def __init__(self) -> None:
        self.times: list[float] = []
        self._start = 0.0

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        self._start = time.perf_counter()

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        self.times.append(time.perf_counter() - self._start)


def peak_flops(device: str) -> tuple[float, str]:
    if device == "cuda":
        name = torch.cuda.get_device_name()
        for key, value in DOCUMENTED_BF16_PEAK.items():
            if key in name:
                return value, f"{name}, documented bf16 dense"
    from lit_gpt5.tools.studies import matmul_peak_flops

    dtype = torch.bfloat16 if device == "cuda" else torch.float32
    return matmul_peak_flops(device, dtype), f"{device}, measured matmul"


def model5_speed(args, device: str) -> dict:
    from lit_gpt5.data import GutenbergDataModule, TokenWindowDataModule
    from lit_gpt5.training.module import GPTLitModule
    from lit_gpt5.training.trainer import Trainer

    name, batch, block = ("gpt-nano", 4, 64) if args.dry_run else ("model5", 16, 256)
    L.seed_everything(1337, verbose=False)
    module = GPTLitModule(model_name=name, dropout=0.1, warmup_steps=10)
    if args.text_path:
        data = GutenbergDataModule(text_path=args.text_path, block_size=block, batch_size=batch)
    else:
        data = TokenWindowDataModule(torch.randint(0, 50257, (200_000,)), block_size=block, batch_size=batch)
    timer = StepTimer()
    trainer = Trainer(
        accelerator="gpu" if device == "cuda" else "cpu",
        devices=1,
        max_steps=args.steps,
        limit_val_batches=0,
        gradient_clip_val=1.0,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        callbacks=[timer],
    )
    trainer.fit(module, datamodule=data)
    warm = timer.times[min(10, len(timer.times) // 2) :]
    step = statistics.median(warm)
    tokens = batch * block
    peak, source = peak_flops(device)
    flops = module.model.flops_per_token(block) * tokens
    loss = float(trainer.callback_metrics.get("train/loss", float("nan")))
    return {
        "model": name, "batch": f"{batch} x {block}", "precision": trainer.precision_note, "median_step_s": step,
        "tokens_per_s": tokens / step, "mfu": flops / step / peak, "peak": source, "loss": loss,
    }  # fmt: skip


def cuda_step_peak(model: str, batch: int, block: int, checkpointing: bool, chunk: int) -> int:
    """max_memory_allocated() of one bf16-autocast training step of the real model on random tokens."""
    from lit_gpt5.model.gpt import GPT, GPTConfig

    torch.cuda.empty_cache()
    torch.cuda.reset_peak_memory_stats()
    gpt = GPT(GPTConfig.from_name(model, dropout=0.0)).cuda()
    gpt.gradient_checkpointing = checkpointing
    optimizer = torch.optim.AdamW(gpt.parameters(), lr=1e-5, fused=True)
    x = torch.randint(0, 50257, (batch, block), device="cuda")
    try:
        for _ in range(2):  # the second step holds the optimizer state, as every step after the first
            torch.cuda.reset_peak_memory_stats()
            with torch.autocast("cuda", dtype=torch.bfloat16):
                total, count = gpt.loss_sum(x, x, chunk)
            (total / count).backward()
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
        return torch.cuda.max_memory_allocated()
    finally:
        del gpt, optimizer
        torch.cuda.empty_cache()


def memory_rows(args, device: str) -> list[dict]:
    from lit_gpt5.training.memory_estimate import GiB, estimate

    rows = []
    for model, batch, checkpointing, chunk in DRY_SETTINGS if args.dry_run else SETTINGS:
        block = 64 if args.dry_run else 1024
        est = estimate(model, block, batch, "bf16-mixed", checkpointing, loss_chunk_size=chunk).peak
        if device == "cuda":
            try:
                measured, how = cuda_step_peak(model, batch, block, checkpointing, chunk), "max_memory_allocated"
            except torch.OutOfMemoryError:
                measured, how = None, "OOM"
        else:
            from lit_gpt5.training.memory_tracking import tracked_peak

            measured = tracked_peak(model, block, batch, "bf16-mixed", checkpointing, chunk)
            how = "tracked on fake tensors (dry run)"
        rows.append({
            "model": model, "micro_batch": batch, "T": block, "checkpointing": checkpointing, "loss_chunk": chunk,
            "estimate_gib": est / GiB, "measured_gib": None if measured is None else measured / GiB,
            "error": None if measured is None else est / measured - 1, "how": how,
        })  # fmt: skip
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--text_path", help="the book (default: random tokens; the speed is the same)")
    parser.add_argument("--steps", type=int, default=100)
    parser.add_argument("--dry_run", action="store_true", help="CPU, tiny model: check the script without a GPU")
    parser.add_argument("--json_out", default="gpu_check.json")
    args = parser.parse_args()
    if args.dry_run:
        args.steps = min(args.steps, 12)
    elif not torch.cuda.is_available():
        raise SystemExit("no CUDA GPU here; run with --dry_run to check the script on the CPU")
    device = "cuda" if torch.cuda.is_available() and not args.dry_run else "cpu"
    machine = describe_machine()
    print(machine["line"])
    speed = model5_speed(args, device)
    print(
        f"{speed['model']} {speed['batch']}, precision {speed['precision']}: median step "
        f"{speed['median_step_s'] * 1000:.1f} ms, {speed['tokens_per_s']:,.0f} tokens/s, MFU {speed['mfu']:.1%} "
        f"(peak: {speed['peak']})"
    )
    rows = memory_rows(args, device)
    header = f"{'model':<13}{'batch x T':>11}{'ckpt':>6}{'chunk':>7}{'estimate GiB':>14}{'measured GiB':>14}"
    print(f"{header}{'error':>8}  how")
    for r in rows:
        measured = "OOM" if r["measured_gib"] is None else f"{r['measured_gib']:.2f}"
        error = "" if r["error"] is None else f"{r['error']:+.1%}"
        print(
            f"{r['model']:<13}{r['micro_batch']:>5} x {r['T']:<5}{'yes' if r['checkpointing'] else 'no':>5}"
            f"{r['loss_chunk']:>7}{r['estimate_gib']:>14.2f}{measured:>14}{error:>8}  {r['how']}"
        )
    Path(args.json_out).write_text(json.dumps({"machine": machine, "model5": speed, "memory": rows}, indent=1))


if __name__ == "__main__":
    main()
