"""Process-wide settings that make training on a CPU fast: how glibc hands freed memory back to the OS."""

from __future__ import annotations

import sys


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
