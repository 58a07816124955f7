"""Transparent huge pages for PyTorch's CPU tensors: a process-wide setting the CLI makes before torch allocates.

A CPU training step walks gigabytes of tensors (Model 5: ~6 GB of weights, Adam states, activations and the loss's
vocabulary-sized buffers), in 4 KB pages by default. Every page a kernel touches needs a TLB entry, and under a
virtual machine each TLB miss walks two page tables. PyTorch backs CPU allocations of 2 MB and more with 2 MB
transparent huge pages when ``THP_MEM_ALLOC_ENABLE=1`` (PyTorch >= 2.2; it aligns them and calls
``madvise(MADV_HUGEPAGE)``): 512 times fewer pages to map and to fault in. Measured on a 2-core AMD Zen 4 VM
(``benchmarks/roofline.py``, Model 5's bf16 step): see ``docs/precision-and-speed.md``.

PyTorch reads the variable once, at the process's first CPU allocation, and importing Lightning already allocates:
so it must be set before that, which only a program's entry point can do. The CLI does (``lit_gpt5.cli`` and
``lit-gpt5 fit|validate|test|predict``), as it does ``keep_freed_memory``; a library import never does, and your own
script can call ``use_huge_pages()`` as its first line (or export the variable). ``THP_MEM_ALLOC_ENABLE=0`` in the
environment turns it off, and the kernel's own setting rules over both: with ``never`` in
``/sys/kernel/mm/transparent_hugepage/enabled`` nothing changes. The memory cost is at most 2 MB of rounding per
allocation that is already 2 MB or more.

This module imports nothing beyond the standard library, so an entry point can import it before torch.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

ENV = "THP_MEM_ALLOC_ENABLE"
KERNEL_SETTING = Path("/sys/kernel/mm/transparent_hugepage/enabled")


def use_huge_pages() -> bool:
    """Ask PyTorch for huge pages under its CPU tensors (``THP_MEM_ALLOC_ENABLE=1``) unless the environment already
    says otherwise; whether it is asked for. Effective only before the process's first CPU tensor (see the module)."""
    if not sys.platform.startswith("linux"):
        return False
    os.environ.setdefault(ENV, "1")
    return os.environ[ENV] == "1"


def kernel_mode(path: Path = KERNEL_SETTING) -> str | None:
    """The kernel's transparent-huge-page mode (``always``, ``madvise`` or ``never``), None where it has none."""
    try:
        text = path.read_text()
    except OSError:
        return None
    start, end = text.find("["), text.find("]")
    return text[start + 1 : end] if 0 <= start < end else None
