"""The memory estimator (``lit_gpt5.training.memory_estimate.estimate``) against PyTorch's memory tracker following
real training steps of the real models on fake tensors (``lit_gpt5.training.memory_tracking``): no GPU needed.

    python benchmarks/memory_check.py                  # the whole table (an attempt stopped after 50 minutes)
    python benchmarks/memory_check.py --models gpt2    # a quick look
    python benchmarks/memory_check.py --lora_only --json_out benchmarks/results/memory-lora.json   # LoRA, 9 rows
    python benchmarks/memory_check.py --large_only --json_out benchmarks/results/memory-large.json # the README's
    python benchmarks/memory_check.py --cuda           # on a GPU: torch.cuda.max_memory_allocated() of real steps too

Prints a table (GiB per device) with the relative error of each estimate, the worst one last, and writes the rows as
JSON (--json_out).
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

from lit_gpt5.model.lora import EMBEDDING, TARGETS
from lit_gpt5.training.memory_estimate import estimate
from lit_gpt5.training.memory_tracking import tracked_peak

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from _machine import describe_machine  # noqa: E402

GiB = 2**30
MODELS = ("gpt2", "gpt2-medium", "gpt2-large", "gpt2-xl")


def measure(row: dict) -> int:
    return tracked_peak(
        row["model"],
        row["block_size"],
        row["micro_batch_size"],
        activation_checkpointing=row["activation_checkpointing"],
        loss_chunk_size=row["loss_chunk_size"],
        fsdp_ranks=row["devices"] if row["strategy"] == "fsdp" else 0,
        lora_r=row["lora_r"],
        lora_targets=row["lora_targets"],
    )


def cuda_peak(row: dict) -> int | None:
    """torch.cuda.max_memory_allocated() of a real second training step on this machine's GPU (single device)."""
    import torch

    from lit_gpt5.model.gpt import GPT, GPTConfig
    from lit_gpt5.training.memory_tracking import _GPTWithLoss

    if row["strategy"] != "ddp" or not torch.cuda.is_available():
        return None
    torch.cuda.empty_cache()
    model = _GPTWithLoss(GPT(GPTConfig.from_name(row["model"], dropout=0.0)), row["loss_chunk_size"]).cuda()
    model.gpt.gradient_checkpointing = row["activation_checkpointing"]
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4, fused=True)
    shape = (row["micro_batch_size"], row["block_size"])
    x, y = torch.randint(0, 50257, shape, device="cuda"), torch.randint(0, 50257, shape, device="cuda")
    try:
        for step in range(2):
            if step == 1:
                torch.cuda.reset_peak_memory_stats()
            with torch.autocast("cuda", dtype=torch.bfloat16):
                loss = model(x, y)
            loss.backward()
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
        torch.cuda.synchronize()
        return torch.cuda.max_memory_allocated()
    except torch.OutOfMemoryError:
        return -1
    finally:
        del model, optimizer
        torch.cuda.empty_cache()


def grid(models: list[str], fsdp_models: list[str], lora_models: list[str]) -> list[dict]:
    rows = []
    for model, block_size, mb, ac, chunk in itertools.product(models, (512, 1024), (1, 4, 8), (False, True), (0, 512)):
        rows.append(
            dict(
                model=model,
                block_size=block_size,
                micro_batch_size=mb,
                activation_checkpointing=ac,
                loss_chunk_size=chunk,
                strategy="ddp",
                devices=1,
                lora_r=0,
                lora_targets=TARGETS,
            )
        )
    # LoRA on the blocks' layers at ranks 8 and 64, and at rank 8 with the tied embedding adapted too.
    lora_settings = [(8, TARGETS), (64, TARGETS), (8, (*TARGETS, EMBEDDING))]
    for model, (r, targets), mb, ac, chunk in itertools.product(
        lora_models, lora_settings, (1, 8), (False, True), (0, 512)
    ):
        rows.append(
            dict(
                model=model,
                block_size=1024,
                micro_batch_size=mb,
                activation_checkpointing=ac,
                loss_chunk_size=chunk,
                strategy="ddp",
                devices=1,
                lora_r=r,
                lora_targets=targets,
            )
        )
    for model, mb, ac, chunk in itertools.product(fsdp_models, (1, 8), (False, True), (0, 512)):
        rows.append(
            dict(
                model=model,
                block_size=1024,
                micro_batch_size=mb,
                activation_checkpointing=ac,
                loss_chunk_size=chunk,
                strategy="fsdp",
                devices=8,
                lora_r=0,
                lora_targets=TARGETS,
            )
        )
    return rows


def same_step(row: dict) -> tuple:
    """Rows whose training step allocates the same tensors: all settings alike but micro-batch and T, whose product
    (the tokens of the micro-batch) is what the memory depends on with fused attention."""
    tokens = row["micro_batch_size"] * row["block_size"]
    return tuple(v for k, v in row.items() if k not in ("micro_batch_size", "block_size")) + (tokens,)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=list(MODELS))
    parser.add_argument("--fsdp_models", nargs="*", default=list(MODELS))
    parser.add_argument(
        "--lora_models", nargs="*", default=list(MODELS[1:]), help="LoRA rows (ranks 8 and 64; 8 with wte adapted)"
    )
    parser.add_argument(
        "--lora_only",
        action="store_true",
        help="only the LoRA rows at micro-batch 8 with training's chunked loss, no checkpointing (~3 min)",
    )
    parser.add_argument(
        "--large_only",
        action="store_true",
        help="the README's question: GPT-2 Large, full tuning, T 1024, micro-batch 8, training's chunked loss, with "
        "and without checkpointing (2 rows)",
    )
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--cuda", action="store_true", help="also measure real steps on this machine's GPU")
    parser.add_argument("--json_out", default="memory.json")
    args = parser.parse_args()
    print(describe_machine()["line"])
    rows = grid(args.models, args.fsdp_models, args.lora_models)
    if args.lora_only:
        rows = [r for r in rows if r["lora_r"] and r["micro_batch_size"] == 8 and r["loss_chunk_size"]
                and not r["activation_checkpointing"]]  # fmt: skip
    if args.large_only:
        rows = [r for r in rows if r["model"] == "gpt2-large" and r["strategy"] == "ddp" and not r["lora_r"]
                and r["block_size"] == 1024 and r["micro_batch_size"] == 8 and r["loss_chunk_size"]]  # fmt: skip
    start = time.perf_counter()
    # T=512 x 8 and T=1024 x 4 are one tracked step; the biggest models first, so no slow row ends up alone at the end.
    unique: dict[tuple, dict] = {}
    for row in rows:
        unique.setdefault(same_step(row), row)
    todo = sorted(unique.values(), key=lambda r: -MODELS.index(r["model"]) if r["model"] in MODELS else 0)
    with ProcessPoolExecutor(args.workers) as pool:
        tracked = {same_step(r): peak for r, peak in zip(todo, pool.map(measure, todo), strict=True)}
    results = []
    for row in rows:
        est = estimate(**row).peak
        peak = tracked[same_step(row)]
        results.append({**row, "tracked": peak, "estimate": est, "error": est / peak - 1})
        if args.cuda:
            results[-1]["cuda"] = cuda_peak(row)
    header = (
        f"{'model':<12}{'T':>5}{'mb':>4}{'AC':>4}{'loss':>7}{'strategy':>10}{'LoRA':>9}{'tracked':>9}{'estimate':>10}"
        f"{'error':>8}"
    )
    print(header + ("  cuda" if args.cuda else ""))
    for r in results:
        loss = f"c{r['loss_chunk_size']}" if r["loss_chunk_size"] else "full"
        strategy = "ddp" if r["strategy"] == "ddp" else f"fsdp x{r['devices']}"
        ac = "y" if r["activation_checkpointing"] else "-"
        line = f"{r['model']:<12}{r['block_size']:>5}{r['micro_batch_size']:>4}{ac:>4}{loss:>7}{strategy:>10}"
        lora = f"{r['lora_r']}{'+wte' if EMBEDDING in r['lora_targets'] else ''}" if r["lora_r"] else "-"
        line += f"{lora:>9}"
        line += f"{r['tracked'] / GiB:>9.2f}{r['estimate'] / GiB:>10.2f}{r['error'] * 100:>+7.1f}%"
        if r.get("cuda"):
            line += f"  {r['cuda'] / GiB:.2f}" if r["cuda"] > 0 else "  OOM"
        print(line)
    worst = max(results, key=lambda r: abs(r["error"]))
    print(
        f"{len(results)} rows ({len(unique)} tracked steps) in {time.perf_counter() - start:.0f} s; worst relative "
        f"error {worst['error'] * 100:+.1f}% ({worst['model']}, T={worst['block_size']}, micro-batch "
        f"{worst['micro_batch_size']}, {'checkpointing, ' if worst['activation_checkpointing'] else ''}"
        f"{worst['strategy']})"
    )
    with open(args.json_out, "w") as f:
        json.dump(results, f, indent=1)


if __name__ == "__main__":
    main()
