"""Where a figure was measured: printed first by every benchmark script and recorded by every notebook, since a
speed figure means nothing without it.

The CPU model, the instruction-set flags that decide PyTorch's speed (AVX2, AVX-512, AVX-512 BF16, AMX), whether
oneDNN computes bf16 natively (``auto`` precision follows it), the ISA PyTorch's own kernels were dispatched to,
any emulation variables in effect (``ATEN_CPU_CAPABILITY``, ``ONEDNN_MAX_CPU_ISA``: an AVX-512 machine made to run as
an AVX2 one), cores and threads, and the torch and Lightning versions; the GPU when there is one.
"""

from __future__ import annotations

import os

from lit_gpt5.training.peak import EMULATION, cpu_model_and_flags

# An AVX-512 machine run as an AVX2-only one: PyTorch's own kernels, oneDNN (bf16 and conv/matmul primitives) and
# MKL (float32 GEMM) each limited to AVX2.
AVX2_EMULATION = {"ATEN_CPU_CAPABILITY": "avx2", "ONEDNN_MAX_CPU_ISA": "AVX2", "MKL_ENABLE_INSTRUCTIONS": "AVX2"}


def describe_machine() -> dict:
    import lightning
    import torch

    from lit_gpt5.compat import cpu_has_native_bf16

    model, flags = cpu_model_and_flags()
    info = {
        "cpu": model,
        "flags": flags,
        "native_bf16": cpu_has_native_bf16(),
        "aten_isa": torch.backends.cpu.get_cpu_capability(),
        "emulation": {k: os.environ[k] for k in EMULATION if k in os.environ},
        "cores": os.cpu_count(),
        "threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "lightning": lightning.__version__,
        "gpu": torch.cuda.get_device_name() if torch.cuda.is_available() else None,
    }
    emulated = ", ".join(f"{k}={v}" for k, v in info["emulation"].items())
    info["line"] = (
        f"machine: {model}, {info['cores']} cores ({info['threads']} threads); flags: {' '.join(flags) or 'none'}; "
        f"native bf16: {'yes' if info['native_bf16'] else 'no'}; ATen ISA {info['aten_isa']}"
        + (f" (emulated: {emulated})" if emulated else "")
        + f"; torch {info['torch']}, lightning {info['lightning']}"
        + (f"; GPU: {info['gpu']}" if info["gpu"] else "")
    )
    return info


def kind_of_cpu(info: dict) -> str:
    """A column name for speed tables: the kind of CPU, as far as PyTorch's speed is concerned."""
    return "native bf16 (AVX-512 BF16)" if info["native_bf16"] else "AVX2, no native bf16"


def main() -> None:
    """``python -m lit_gpt5.tools.machine``: the machine line."""
    print(describe_machine()["line"])


if __name__ == "__main__":
    main()
