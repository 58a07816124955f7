"""The ``Trainer``: Lightning's, with the precision this hardware runs fastest (``--trainer.precision auto``), and the
process-wide CPU setting that makes training fast (``keep_freed_memory``).

bfloat16 halves activation memory and, where the hardware computes it natively, speeds up every matmul. Where it
does not, it is a trap: on a CPU without AVX-512 BF16 or AMX (most laptops, Intel client CPUs since Alder Lake, AMD
before Zen 4) PyTorch computes bf16 matmuls in a reference GEMM about an order of magnitude slower than float32
(gpt-micro, B = 8, T = 256, one training step on a 2-core AVX2 EPYC: float32 4.0 s, bf16 autocast 53 s). So ``auto``
resolves to

* ``bf16-mixed`` on a CUDA GPU with bf16 (Ampere and newer) and on a CPU where oneDNN computes bf16 natively;
* ``16-mixed`` on an older CUDA GPU (V100, T4: float16 tensor cores, with loss scaling);
* ``32-true`` elsewhere: CPUs without native bf16, Apple's MPS, anything unknown.

``Trainer`` is Lightning's ``Trainer`` that accepts ``auto`` (the CLI's and the notebooks' default) and records what
it chose and why (``precision_note``), for the start-up line of ``fit``. Every other value keeps Lightning's meaning;
an explicit bf16 on a CPU without native bf16 still runs, after a one-line warning.
"""

from __future__ import annotations

import sys
from typing import Literal

import lightning as L
import torch

from lit_gpt5.compat import cpu_has_native_bf16, lightning_precision_type
from lit_gpt5.errors import UserError
from lit_gpt5.log import get_logger

log = get_logger(__name__)

AUTO = "auto"
LightningPrecision = lightning_precision_type()
BF16 = ("bf16-mixed", "bf16-true", "bf16")


def _device_type(accelerator) -> str:
    """'cuda', 'cpu', 'mps' or 'other': where a Trainer with this ``accelerator`` argument runs."""
    from lightning.pytorch.accelerators import CPUAccelerator, CUDAAccelerator, MPSAccelerator

    if isinstance(accelerator, CUDAAccelerator):
        return "cuda"
    if isinstance(accelerator, CPUAccelerator):
        return "cpu"
    if isinstance(accelerator, MPSAccelerator):
        return "mps"
    name = str(accelerator).lower() if accelerator is not None else "auto"
    if name in ("cpu", "cuda", "mps"):
        return name
    if name == "gpu":
        return "cuda" if torch.cuda.is_available() else "mps" if MPSAccelerator.is_available() else "other"
    if name == "auto":
        if torch.cuda.is_available():
            return "cuda"
        return "mps" if MPSAccelerator.is_available() else "cpu"
    return "other"


def resolve_precision(precision, accelerator="auto", native_bf16: bool | None = None) -> tuple[object, str | None]:
    """(the precision to give Lightning, why it was chosen) for ``precision`` on ``accelerator``; the reason is
    None when ``precision`` is not ``auto``. ``native_bf16`` overrides the CPU's answer (for tests and what-ifs)."""
    if precision != AUTO:
        return precision, None
    device = _device_type(accelerator)
    if device == "cuda":
        if torch.cuda.is_bf16_supported():
            return "bf16-mixed", "auto: this GPU computes bf16 natively"
        return "16-mixed", "auto: this GPU has no bf16 (pre-Ampere): float16 with loss scaling"
    if device == "cpu":
        native = cpu_has_native_bf16() if native_bf16 is None else native_bf16
        if native:
            return "bf16-mixed", "auto: this CPU computes bf16 natively (AVX-512 BF16 or AMX)"
        return "32-true", "auto: this CPU has no native bf16"
    return "32-true", f"auto: no bf16 speed-up known on {device}"


def check_accelerator(accelerator) -> None:
    """A GPU asked for on a machine without one: one line naming the fix, not Lightning's "No supported gpu backend
    found!" (which the README's Model 5 command gave on a CPU-only machine before its config took ``auto``)."""
    name = str(accelerator).lower()
    if (name == "cuda" and not torch.cuda.is_available()) or (name == "gpu" and _device_type(name) == "other"):
        raise UserError(
            f"--trainer.accelerator {accelerator}: this machine has no GPU that PyTorch can use; pass "
            "--trainer.accelerator auto (or cpu) to train on the CPU, where the start-up line says roughly how long "
            "it takes (Model 5: about 93 minutes on 2 cores of an AMD Zen 4), or --config configs/cpu-demo.yaml "
            "for a 7M-parameter run of minutes"
        )


def warn_if_slow(precision, accelerator="auto", native_bf16: bool | None = None) -> str | None:
    """The one-line warning for an explicit bf16 precision on a CPU that emulates it (also returned), else None."""
    if str(precision) not in BF16 or _device_type(accelerator) != "cpu":
        return None
    native = cpu_has_native_bf16() if native_bf16 is None else native_bf16
    if native:
        return None
    message = (
        f"lit_gpt5: precision {precision} on a CPU without native bf16 (no AVX-512 BF16 or AMX): PyTorch emulates "
        "bf16 matmuls here, about 10x slower than float32; pass --trainer.precision auto (or 32-true)"
    )
    log.warning(message)
    return message


class Trainer(L.Trainer):
    """Lightning's ``Trainer``, with ``precision="auto"`` (the default): the precision this hardware runs fastest
    (see the module docstring). ``precision_note`` says what ``auto`` chose and why, e.g. ``32-true (auto: this CPU
    has no native bf16)``; for any other value it is just the value. Every other argument is Lightning's."""

    def __init__(
        self,
        precision: Literal["auto"] | LightningPrecision | None = AUTO,
        **kwargs,
    ) -> None:
        accelerator = kwargs.get("accelerator", "auto")
        check_accelerator(accelerator)
        chosen, reason = resolve_precision(precision, accelerator)
        warn_if_slow(chosen, accelerator)
        super().__init__(precision=chosen, **kwargs)
        self.precision_note = f"{self.precision} ({reason})" if reason else str(self.precision)


def keep_freed_memory() -> None:
    """Stop glibc from handing large freed blocks back to the OS after every step.

    Each step allocates and frees activations and logits of hundreds of MB. By default glibc serves such blocks with
    mmap and unmaps them on free, so the next step page-faults all of it in again: on CPU that costs as much time as
    the matmuls (measured: 1.24 s -> 0.66 s per step for gpt-micro, B=8, T=256, bf16; and a notebook's training runs
    spent most of their time in the kernel). PyTorch's CPU tuning guide suggests a caching allocator (jemalloc,
    tcmalloc) for the same reason; this is the zero-dependency version. Harmless elsewhere: CUDA memory has its own
    caching allocator. It changes the whole process, so the library never calls it on its own: the CLI calls it at
    start, and notebooks, benchmarks or your own script call it when they want the CLI's speed.
    """
    if not sys.platform.startswith("linux"):
        return
    import ctypes

    try:
        libc = ctypes.CDLL("libc.so.6")
    except OSError:  # not glibc (musl, ...)
        return
    m_trim_threshold, m_mmap_threshold = -1, -3
    libc.mallopt(m_trim_threshold, 2**31 - 1)
    libc.mallopt(m_mmap_threshold, 2**31 - 1)
