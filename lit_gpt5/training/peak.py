"""How fast this machine multiplies matrices, measured, and what that says about a run's length before it starts.

A GPU's peak is on its datasheet; a CPU's depends on its cores, its vector units (AVX2, AVX-512, AMX), whether it
computes bf16 natively and the threads PyTorch uses, so it is measured: the GEMMs of the model's own shapes (its
MLP's and its vocabulary projection's), median of a few repeats, the faster of the two, cached per machine in
``$LIT_GPT5_CACHE`` (a second or two once; after that, nothing).

``run_length_note`` turns it into the start-up line's estimate. On a CPU the step is timed in parts, once per machine
and setting (``step_seconds``): the model's first block forward and backward, its loss over one chunk and two, an
AdamW step over a copy of the block's parameters, then added up for every block, chunk and parameter. The matmul peak
alone does not say it: Model 5's step reaches ~80% of it on a 2-core AMD Zen 4 but 35% on a 2-core Intel Xeon with AMX,
whose matmuls are 6x faster while the rest of the step (layer norms, GELU, dropout, softmax, copies, the optimizer) is
memory-bound and about as slow on both. On a GPU the estimate is still the run's matmul FLOPs (``GPT.flops_per_token``)
at ``STEP_SHARE`` of the device's peak. Either is a rough figure, said as one.
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

# The share of the matmul peak a whole training step reaches on an accelerator, where the step is not timed in parts
# (measured on Model 5 on a CPU, see the module docstring; not measured on a GPU).
STEP_SHARE = 0.7
# The figures of a step timed in parts (``measure_step_parts``), as cached.
PARTS = ("block", "loss_fixed", "loss_per_position", "optimizer_per_parameter")
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
    # Its own generator: measuring must not move the run's random stream (a run's dropout masks would otherwise
    # depend on whether this machine's peak was already cached).
    generator = torch.Generator(device).manual_seed(0)
    a = torch.randn(m, k, device=device, generator=generator).to(dtype)
    b = torch.randn(k, n, device=device, generator=generator).to(dtype)
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


def cached(cache: Path | None, key: str, measure, valid=lambda value: isinstance(value, int | float)):
    """``cache``'s (a JSON file) figure for ``key`` when ``valid``, else ``measure()`` written into it."""
    known: dict = {}
    if cache is not None and cache.is_file():
        try:
            known = json.loads(cache.read_text())
        except (OSError, ValueError):
            known = {}  # a damaged cache is measured again and rewritten
    if key in known and valid(known[key]):
        return known[key]
    value = measure()
    if cache is not None:
        with contextlib.suppress(OSError):  # an unwritable cache costs the measurement next time, nothing else
            write_bytes_atomic(cache, json.dumps({**known, key: value}, indent=1).encode())
    return value


def matmul_peak(device: torch.device, dtype: torch.dtype, shape: tuple[int, int, int], cache: Path | None) -> float:
    """This machine's matmul FLOP/s for ``shape`` in ``dtype``, from ``cache`` (a JSON file) or measured into it."""
    key = machine_key(device, dtype, shape)
    return float(cached(cache, key, lambda: measure_matmul(*shape, dtype=dtype, device=device)))


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


def step_key(module, precision: str, micro_batch: int, positions: int) -> str:
    """What a step's timed parts depend on besides the machine: the model's shape and settings, the batch, the loss."""
    config, model = module.model.config, module.model
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    machine = machine_key(torch.device("cpu"), compute_dtype(precision), (micro_batch, positions))
    return (
        f"{machine}; {precision} step of n_embd={config.n_embd} n_head={config.n_head} vocab={config.vocab_size} "
        f"dropout={config.dropout} bias={config.bias} checkpointing={model.gradient_checkpointing} "
        f"trainable={trainable} chunk={module.settings.loss_chunk_size} {type(module).__name__}"
    )


def _seconds(run) -> float:
    """The second of two runs of ``run`` (the first picks kernels and touches the memory)."""
    run()
    start = time.perf_counter()
    run()
    return time.perf_counter() - start


def measure_step_parts(module, precision: str, micro_batch: int, positions: int) -> dict[str, float]:
    """Seconds of the parts of one micro-batch's training step of ``module``'s model on this CPU, timed on its own
    layers: ``block``, its first transformer block forward and backward (``micro_batch`` x ``positions`` tokens,
    dropout as configured, recomputed as in training when the model checkpoints activations); ``loss_fixed`` and
    ``loss_per_position``, the loss with its gradients (the chunked loss timed over one chunk of positions and over
    two: what the call costs once, and each position); ``optimizer_per_parameter``, an AdamW step (fused when the
    run's is) over a copy of the block's trainable parameters. In Lightning ``precision``: mixed, the block and the
    loss run under autocast on a float32 residual stream, as in training; otherwise in its dtype. Nothing of the model
    changes, nor the run's random stream."""
    from lit_gpt5.model.loss import cross_entropy_sum, linear_cross_entropy_sum
    from lit_gpt5.training.optim import fused_adamw_possible

    model, chunk = module.model, module.settings.loss_chunk_size
    block = model.transformer.h[0]
    weight = model.lm_head.weight
    dtype, mixed = compute_dtype(precision), precision.endswith("-mixed")
    autocast = torch.autocast("cpu", dtype=dtype, enabled=mixed)
    stream = torch.float32 if mixed else weight.dtype  # the residual stream's dtype in training
    params = [p for p in block.parameters() if p.requires_grad]
    tokens = micro_batch * positions
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        x = torch.randn(micro_batch, positions, model.config.n_embd, dtype=stream, requires_grad=True)
        out_grad = torch.ones_like(x)

        def block_step() -> None:
            with autocast:
                if model.gradient_checkpointing:
                    from torch.utils.checkpoint import checkpoint

                    y = checkpoint(block, x, use_reentrant=False)
                else:
                    y = block(x)
            torch.autograd.grad(y, [x, *params], out_grad)

        def loss_step(rows: int) -> None:
            hidden = x.detach().reshape(tokens, -1)[:rows].requires_grad_()
            targets = torch.randint(0, weight.size(0), (rows,))
            w = weight if weight.requires_grad else weight.detach()
            with autocast:
                total = (
                    linear_cross_entropy_sum(hidden, w, targets, chunk)[0]
                    if chunk
                    else cross_entropy_sum(hidden @ w.t(), targets)[0]
                )
            torch.autograd.grad(total, [hidden, w] if w.requires_grad else [hidden])

        training = block.training
        block.train()
        try:
            block_seconds = _seconds(block_step)
        finally:
            block.train(training)
        if chunk and tokens > chunk:
            rows = min(2 * chunk, tokens)
            one, two = _seconds(lambda: loss_step(chunk)), _seconds(lambda: loss_step(rows))
            per_position = max(two - one, 0.0) / (rows - chunk)
            loss_fixed = max(one - per_position * chunk, 0.0)
        else:  # one call over every position: nothing to split
            loss_fixed, per_position = _seconds(lambda: loss_step(tokens)), 0.0
        copies = [p.detach().clone().requires_grad_() for p in params]
        for c in copies:
            c.grad = torch.randn_like(c)
        optimizer = torch.optim.AdamW(copies, fused=fused_adamw_possible(module))
        per_parameter = _seconds(optimizer.step) / max(sum(c.numel() for c in copies), 1)
    return {"block": block_seconds, "loss_fixed": loss_fixed, "loss_per_position": per_position,
            "optimizer_per_parameter": per_parameter}  # fmt: skip


def step_seconds(module, precision: str, micro_batch: int, positions: int, accumulate: int) -> dict[str, float]:
    """One optimizer step's seconds on this CPU from its timed parts (``measure_step_parts``, once per machine and
    setting, then read from ``$LIT_GPT5_CACHE/step-parts.json``): every block, the loss of every position, the optimizer
    over every trainable parameter; ``accumulate`` micro-batches a step. Left out: the embeddings, gradient clipping,
    logging and evaluation, a few percent of Model 5's step."""
    from lit_gpt5.data.gutenberg import default_cache_dir

    key = step_key(module, precision, micro_batch, positions)
    parts = cached(
        default_cache_dir() / "step-parts.json",
        key,
        lambda: measure_step_parts(module, precision, micro_batch, positions),
        valid=lambda value: isinstance(value, dict) and all(isinstance(value.get(k), int | float) for k in PARTS),
    )
    model = module.model
    blocks = model.config.n_layer * parts["block"]
    loss = parts["loss_fixed"] + micro_batch * positions * parts["loss_per_position"]
    optimizer = parts["optimizer_per_parameter"] * sum(p.numel() for p in model.parameters() if p.requires_grad)
    return {"blocks": accumulate * blocks, "loss": accumulate * loss, "optimizer": optimizer,
            "step": accumulate * (blocks + loss) + optimizer}  # fmt: skip


def _duration(seconds: float) -> str:
    return f"{seconds / 60:.0f} min" if seconds < 3 * 3600 else f"{seconds / 3600:.1f} h"


def run_length_note(
    module, trainer, tokens_per_step: int, positions: int, steps: int, micro_batch: int | None = None
) -> str | None:
    """``"500 steps: roughly 110 min here (…)"`` for the start-up line, or None for a run too small to be worth it.
    ``tokens_per_step``: one device's tokens in an optimizer step; ``positions``: the sequence length;
    ``micro_batch``: sequences a forward pass (default: all of a step's, no accumulation).

    On a CPU the step is timed in parts here (``step_seconds``): a CPU's matmul speed says little about the rest of
    the step, which is memory-bound (Model 5 reaches ~80% of the matmul peak on a 2-core Zen 4, 35% on a 2-core Xeon
    with AMX, whose matmuls are 6x faster). Elsewhere: the matmul FLOPs at ``STEP_SHARE`` of the device's peak."""
    model = module.model
    flops = model.flops_per_token(positions, training=True) * tokens_per_step
    if steps <= 0 or flops * steps < ESTIMATE_ABOVE_FLOPS:
        return None
    device, dtype = trainer.strategy.root_device, compute_dtype(str(trainer.precision))
    peak = device_peak(trainer, model)
    matmuls = f"this {device.type}'s {str(dtype).removeprefix('torch.')} matmuls run at {peak / 1e9:.0f} GFLOP/s"
    untimed = ""
    if device.type == "cpu":
        micro_batch = micro_batch or max(tokens_per_step // positions, 1)
        accumulate = max(tokens_per_step // (micro_batch * positions), 1)
        try:
            step = step_seconds(module, str(trainer.precision), micro_batch, positions, accumulate)
        except Exception as error:  # a start-up estimate never stops a run: the FLOP-based one instead, and why
            untimed = f"; the step's parts could not be timed here ({type(error).__name__}: {error})"
        else:
            return (
                f"{steps} steps: roughly {_duration(step['step'] * steps)} here, evaluations not counted (a step of "
                f"{flops / 1e12:.2f} TFLOP timed in parts: {model.config.n_layer} blocks {step['blocks']:.2f} s, loss "
                f"{step['loss']:.2f} s, optimizer {step['optimizer']:.2f} s; {matmuls}, the step at "
                f"{flops / step['step'] / peak:.0%} of that)"
            )
    seconds = flops * steps / (peak * STEP_SHARE)
    return (
        f"{steps} steps: roughly {_duration(seconds)} here ({flops / 1e12:.2f} TFLOP a step; {matmuls}, a whole "
        f"step at about {STEP_SHARE:.0%} of that{untimed})"
    )
