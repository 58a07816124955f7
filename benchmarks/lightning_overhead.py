"""What Lightning costs per training step: the same LightningModule and batches, stepped by Lightning's Trainer and
by a plain PyTorch loop that does the same work (forward, loss, backward, clipping, AdamW, LR schedule).

    python benchmarks/lightning_overhead.py          # gpt-micro, 8 x 256 tokens, precision auto: the cpu-demo step

Both run --steps steps, alternating blocks of --block steps so that both see the same machine; the median step time
of each is taken from the Trainer's own batch hooks and the loop's clock. Prints both, the overhead in ms and as a
share of a step, and writes them as JSON.
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


class StepClock(L.Callback):
    """Wall time from the start of each training batch to its end (the optimizer step included)."""

    def __init__(self) -> None:
        self.times: list[float] = []

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        self.start = time.perf_counter()

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        self.times.append(time.perf_counter() - self.start)


class Batches(L.LightningDataModule):
    def __init__(self, batches) -> None:
        super().__init__()
        self.batches = batches

    def train_dataloader(self):
        return torch.utils.data.DataLoader(self.batches, batch_size=None)


def main() -> None:
    from lit_gpt5.training.module import GPTLitModule
    from lit_gpt5.training.trainer import keep_freed_memory, resolve_precision

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="gpt-micro")
    parser.add_argument("--batch_size", type=int, default=8)
    parser.add_argument("--block_size", type=int, default=256)
    parser.add_argument("--steps", type=int, default=60)
    parser.add_argument("--block", type=int, default=10)
    parser.add_argument("--json_out", default="lightning_overhead.json")
    args = parser.parse_args()
    print(describe_machine()["line"])
    keep_freed_memory()
    precision, _ = resolve_precision("auto", "cpu")
    bf16 = precision.startswith("bf16")
    torch.manual_seed(0)
    batches = [
        (torch.randint(0, 50257, (args.batch_size, args.block_size)),) * 2 for _ in range(args.block)
    ]  # fmt: skip
    lightning_times, plain_times = [], []
    module = GPTLitModule(model_name=args.model, dropout=0.0, warmup_steps=0, lr_decay_steps=10**6)
    plain = GPTLitModule(model_name=args.model, dropout=0.0, warmup_steps=0, lr_decay_steps=10**6)
    optimizer_config = plain.configure_optimizers()
    optimizer, scheduler = optimizer_config["optimizer"], optimizer_config["lr_scheduler"]["scheduler"]
    for _ in range(args.steps // args.block):
        clock = StepClock()
        trainer = L.Trainer(
            accelerator="cpu", precision=precision, max_steps=args.block, gradient_clip_val=1.0, logger=False,
            enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False, callbacks=[clock],
        )  # fmt: skip
        trainer.fit(module, datamodule=Batches(batches))
        lightning_times += clock.times[1:]  # the first step of a fit pays for setting up
        for i, (x, y) in enumerate(batches):
            start = time.perf_counter()
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
                total, count = plain.loss_sum(x, y)
            (total / count).backward()
            torch.nn.utils.clip_grad_norm_(plain.parameters(), 1.0)
            optimizer.step()
            scheduler.step()
            optimizer.zero_grad(set_to_none=True)
            if i:
                plain_times.append(time.perf_counter() - start)
    lightning_step, plain_step = statistics.median(lightning_times), statistics.median(plain_times)
    overhead = lightning_step - plain_step
    print(f"{args.model}, {args.batch_size} x {args.block_size} tokens, {precision} (auto), CPU")
    print(f"  Lightning Trainer  {lightning_step * 1e3:8.1f} ms per step (median of {len(lightning_times)})")
    print(f"  plain PyTorch loop {plain_step * 1e3:8.1f} ms per step (median of {len(plain_times)})")
    print(f"  overhead           {overhead * 1e3:8.1f} ms = {overhead / plain_step:+.1%} of a step")
    with open(args.json_out, "w") as f:
        json.dump({"settings": vars(args), "precision": precision, "lightning": lightning_times, "plain": plain_times,
                   "overhead_share": overhead / plain_step}, f, indent=1)  # fmt: skip


if __name__ == "__main__":
    main()
