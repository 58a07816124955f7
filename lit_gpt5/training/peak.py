"""How fast this machine multiplies matrices, measured, and what that says about a run's length before it starts.

A GPU's peak is on its datasheet; a CPU's depends on its cores, its vector units (AVX2, AVX-512, AMX), whether it
computes bf16 natively and the threads PyTorch uses, so it is measured: the GEMMs of the model's own shapes (its
MLP's and its vocabulary projection's), median of a few repeats, the faster of the two, cached per machine in
``$LIT_GPT5_CACHE`` (a second or two once; after that, nothing).

``run_length_note`` turns it into the start-up line's estimate: the run's matmul FLOPs (``GPT.flops_per_token``, the
package's one count) over the measured speed, divided by the share of it a whole training step keeps. That share was
measured on Model 5: 0.7 on a 2-core AMD Zen 4 in bf16 (a step at ~285 GFLOP/s against ~400 GFLOP/s of matmuls,
``benchmarks/roofline.py``), the rest being layer norms, GELU, dropout, softmax, the optimizer and copies. It is a
rough figure, said as one.
"""

from __future__ import annotations

import contextlib
import json
import os
import platform
import statistics
import time
from pathlib import Path

import torch

from lit_gpt5.files import write_bytes_atomic
from lit_gpt5.log import get_logger

log = get_logger(__name__)

# The share of the matmul peak a whole training step reaches (measured on Model 5, see the module docstring).
STEP_SHARE = 0.7
# Runs below this many training FLOPs are not estimated: minutes at most on any machine, not worth the measurement.
ESTIMATE_ABOVE_FLOPS = 1e14
DTYPES = {"bf16": torch.bfloat16, "16": torch.float16}
# The instruction-set flags that decide PyTorch's CPU speed.
FLAGS = ("avx2", "avx512f", "avx512_bf16", "amx_bf16", "amx_tile")
# Variables that make a CPU run as a lesser one (an AVX-512 machine as an AVX2 one): part of what a peak depends on.
EMULATION = ("ATEN_CPU_CAPABILITY", "ONEDNN_MAX_CPU_ISA", "MKL_ENABLE_INSTRUCTIONS")


def cpu_model_and_flags() -> tuple[str, list[str]]:
    """The CPU's model name (with its family and model numbers, which name the generation where a virtual machine
    shows only "AMD EPYC") and which of ``FLAGS`` it has."""
    model, flags, numbers = platform.processor() or platform.machine(), set(), {}
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                key, _, value = line.partition(":")
                key = key.strip()
                if key == "model name":
                    model = value.strip()
                elif key in ("cpu family", "model") and key not in numbers:
                    numbers[key] = value.strip()
                elif key == "flags":
                    flags = set(value.split())
                    break
    except OSError:
        pass
    if numbers:
        model += f" (family {numbers.get('cpu family', '?')}, model {numbers.get('model', '?')})"
    return model, [flag for flag in FLAGS if flag in flags]


def compute_dtype(precision: str) -> torch.dtype:
    """The dtype the matmuls of a run in Lightning ``precision`` compute in."""
    return next((dtype for prefix, dtype in DTYPES.items() if str(precision).startswith(prefix)), torch.float32)


def measure_matmul(m: int, k: int, n: int, dtype: torch.dtype, device: torch.device, repeats: int = 5) -> float:
    """FLOP/s of an (m x k) @ (k x n) matmul on ``device``: the median of ``repeats`` timed runs after a warm-up."""
    a = torch.randn(m, k, device=device).to(dtype)
    b = torch.randn(k, n, device=device).to(dtype)
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    a @ b  # warm-up: the first call picks kernels and touches the memory
    sync()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        a @ b
        sync()
        times.append(time.perf_counter() - start)
    return 2 * m * k * n / statistics.median(times)


def machine_key(device: torch.device, dtype: torch.dtype, shape: tuple[int, int, int]) -> str:
    """What a measured peak depends on: the device (CPU model and flags, or GPU name), threads, torch, dtype, shape."""
    if device.type == "cuda":
        where = torch.cuda.get_device_name(device)
    else:
        model, flags = cpu_model_and_flags()
        emulated = [f"{k}={os.environ[k]}" for k in EMULATION if k in os.environ]
        where = f"{model} [{' '.join(flags + emulated)}] x{torch.get_num_threads()} threads"
    return f"{where}; torch {torch.__version__}; {dtype}; {'x'.join(map(str, shape))}"


def matmul_peak(device: torch.device, dtype: torch.dtype, shape: tuple[int, int, int], cache: Path | None) -> float:
    """This machine's matmul FLOP/s for ``shape`` in ``dtype``, from ``cache`` (a JSON file) or measured into it."""
    key = machine_key(device, dtype, shape)
    known: dict = {}
    if cache is not None and cache.is_file():
        try:
            known = json.loads(cache.read_text())
        except (OSError, ValueError):
            known = {}  # a damaged cache is measured again and rewritten
    if isinstance(known.get(key), int | float):
        return float(known[key])
    peak = measure_matmul(*shape, dtype=dtype, device=device)
    if cache is not None:
        with contextlib.suppress(OSError):  # an unwritable cache costs the measurement next time, nothing else
            write_bytes_atomic(cache, json.dumps({**known, key: peak}, indent=1).encode())
    return peak


def model_shapes(config) -> list[tuple[int, int, int]]:
    """The GEMMs a peak is measured on: the model's MLP (4,096 tokens x n_embd -> 4 n_embd) and its vocabulary
    projection (512 tokens x n_embd -> vocabulary; fewer tokens, as it is 16x wider, to keep the measurement short)."""
    return [(4096, config.n_embd, 4 * config.n_embd), (512, config.n_embd, config.vocab_size)]


def device_peak(trainer, model) -> float:
    """The matmul FLOP/s of the device ``model`` trains on, in the dtype of the trainer's precision: the faster of
    the model's own GEMMs (``model_shapes``), each measured once per machine, then read from the cache. What
    ``train/device/mfu`` and the start-up line's estimate are against."""
    from lit_gpt5.data.gutenberg import default_cache_dir

    device = trainer.strategy.root_device  # where it trains (in a callback's setup the model is not there yet)
    dtype = compute_dtype(str(trainer.precision))
    cache = default_cache_dir() / "matmul-peak.json"
    return max(matmul_peak(device, dtype, shape, cache) for shape in model_shapes(model.config))


def run_length_note(module, trainer, tokens_per_step: int, positions: int, steps: int) -> str | None:
    """``"500 steps: roughly 110 min here (…)"`` for the start-up line, or None for a run too small to be worth it.
    ``tokens_per_step``: one device's tokens in an optimizer step; ``positions``: the sequence length."""
    model = module.model
    flops = model.flops_per_token(positions, training=True) * tokens_per_step
    if steps <= 0 or flops * steps < ESTIMATE_ABOVE_FLOPS:
        return None
    device, dtype = trainer.strategy.root_device, compute_dtype(str(trainer.precision))
    peak = device_peak(trainer, model)
    seconds = flops * steps / (peak * STEP_SHARE)
    length = f"{seconds / 60:.0f} min" if seconds < 3 * 3600 else f"{seconds / 3600:.1f} h"
    return (
        f"{steps} steps: roughly {length} here ({flops / 1e12:.2f} TFLOP a step; this {device.type}'s "
        f"{str(dtype).removeprefix('torch.')} matmuls run at {peak / 1e9:.0f} GFLOP/s, a whole step at about "
        f"{STEP_SHARE:.0%} of that)"
    )
