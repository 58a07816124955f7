"""Model 5 (GPT-2 small) on this machine: the forward pass at the original work's setting (B = 16, T = 256), and a
training step, with tokens/s and MFU.

    python benchmarks/forward.py              # CPU, and the GPU too when there is one

MFU = tokens/s x FLOPs per token / peak FLOP/s, with the PaLM count of training FLOPs per token, 6N + 12·L·H·Q·T
(N parameters without embeddings, L layers, H heads of size Q, T tokens of context); a forward pass is a third of
it. The peak is the device's documented bf16 dense figure where known (NVIDIA A100 312, H100 989, H200 989 TFLOP/s),
else (CPUs) this machine's own measured float32 / bf16 matmul throughput. Prints a table and writes it as JSON.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch

from lit_gpt5.model.gpt import GPT, GPTConfig
from lit_gpt5.tools.studies import forward_seconds, matmul_peak_flops, median_seconds, train_flops_per_token
from lit_gpt5.training.trainer import keep_freed_memory

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from _machine import describe_machine  # noqa: E402

DOCUMENTED_BF16_PEAK = {"A100": 312e12, "H100": 989e12, "H200": 989e12, "L4": 121e12, "A10G": 125e12}


def peak_flops(device: str, dtype: torch.dtype) -> tuple[float, str]:
    if device == "cuda":
        name = torch.cuda.get_device_name()
        for key, value in DOCUMENTED_BF16_PEAK.items():
            if key in name:
                return value, f"{name}, documented bf16 dense"
    return matmul_peak_flops(device, dtype), f"{device}, measured {str(dtype).removeprefix('torch.')} matmul"


def train_step_seconds(model: GPT, batch: int, seq: int, device: str, dtype: torch.dtype, repeats: int) -> float:
    model = model.to(device).train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4, fused=True)  # as GPTLitModule uses on CPU and GPU
    x = torch.randint(0, model.config.vocab_size, (batch, seq), device=device)

    def step() -> None:
        with torch.autocast(device, dtype=dtype, enabled=dtype != torch.float32):
            total, count = model.loss_sum(x, x, chunk_size=512)  # GPTLitModule's default chunked loss
        (total / count).backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    return median_seconds(step, repeats=repeats, sync=device == "cuda")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="model5")
    parser.add_argument("--batch_size", type=int, default=16)
    parser.add_argument("--block_size", type=int, default=256)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--json_out", default="forward.json")
    args = parser.parse_args()
    print(describe_machine()["line"])
    keep_freed_memory()  # as the CLI does
    model = GPT(GPTConfig.from_name(args.model, dropout=0.0))
    per_token = train_flops_per_token(model, args.block_size)
    tokens = args.batch_size * args.block_size
    rows = []
    for device in ["cpu"] + (["cuda"] if torch.cuda.is_available() else []):
        for dtype in (torch.float32, torch.bfloat16):
            peak, peak_source = peak_flops(device, dtype)
            fwd = forward_seconds(model.to(dtype), args.batch_size, args.block_size, device, args.repeats)
            step = train_step_seconds(model.float(), args.batch_size, args.block_size, device, dtype, args.repeats)
            rows.append({
                "device": device, "dtype": str(dtype).removeprefix("torch."), "forward_s": fwd,
                "forward_tokens_per_s": tokens / fwd, "forward_mfu": tokens / fwd * per_token / 3 / peak,
                "train_step_s": step, "train_tokens_per_s": tokens / step,
                "train_mfu": tokens / step * per_token / peak,
                "peak_flops": peak, "peak": peak_source,
            })  # fmt: skip
            model = model.float()
    print(f"{args.model} ({model.num_params() / 1e6:.0f}M), B={args.batch_size}, T={args.block_size}; "
          f"{per_token / 1e6:.0f} MFLOP per training token")  # fmt: skip
    print(
        f"{'device':<7}{'dtype':<10}{'forward s':>10}{'tokens/s':>10}{'MFU':>7}"
        f"{'step s':>9}{'tokens/s':>10}{'MFU':>7}  peak"
    )
    for r in rows:
        print(f"{r['device']:<7}{r['dtype']:<10}{r['forward_s']:>10.2f}{r['forward_tokens_per_s']:>10,.0f}"
              f"{r['forward_mfu']:>7.0%}{r['train_step_s']:>9.2f}{r['train_tokens_per_s']:>10,.0f}{r['train_mfu']:>7.0%}"
              f"  {r['peak_flops'] / 1e12:.2f} TFLOP/s ({r['peak']})")  # fmt: skip
    if not torch.cuda.is_available():
        print("cuda: not measured (no GPU on this machine)")
    with open(args.json_out, "w") as f:
        json.dump({"settings": vars(args), "rows": rows}, f, indent=1)


if __name__ == "__main__":
    main()
