"""``python -m lit_gpt5.cli fit|validate|test``: the LightningCLI of the project.

Defaults (lit_gpt5/cli_defaults.yaml) reproduce the Model 5 experiment; ``--data.*`` and ``--model.*`` take the
arguments of GutenbergDataModule and GPTLitModule directly. A ``--config`` may name another data module
(``data: {class_path: ...}``), which is how instruction tuning swaps in its own.
"""

from __future__ import annotations

import logging
import os
import sys
import warnings
from importlib import resources

SUBCOMMANDS = ("fit", "validate", "test", "predict")


def keep_freed_memory() -> None:
    """Stop glibc from handing large freed blocks back to the OS after every step.

    Each step allocates and frees logits of batch x T x 50,257 floats (hundreds of MB). By default glibc serves such
    blocks with mmap and unmaps them on free, so the next step page-faults all of it in again: on CPU that costs as
    much time as the matmuls (measured: 1.24 s -> 0.66 s per step for gpt-micro, B=8, T=256, bf16). PyTorch's CPU
    tuning guide suggests a caching allocator (jemalloc, tcmalloc) for the same reason; this is the
    zero-dependency version. Harmless elsewhere: CUDA memory has its own caching allocator.
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


def no_advert(record: logging.LogRecord) -> bool:
    """Drop the advertisement Lightning logs at every start: it would sit between the user and one-line errors."""
    return not str(record.msg).startswith("💡 Tip")


def requested_checkpoint(args: list[str]) -> str | None:
    """The ``ckpt_path`` given on the command line or in a ``--config`` file (the last one wins, as in the CLI)."""
    import yaml

    ckpt = None
    for i, arg in enumerate(args):
        key, _, value = arg.partition("=")
        if not value and i + 1 < len(args):
            value = args[i + 1]
        if key in ("-c", "--config") and os.path.isfile(value):
            with open(value) as f:
                config = yaml.safe_load(f)
            if isinstance(config, dict) and config.get("ckpt_path"):
                ckpt = str(config["ckpt_path"])
        elif key == "--ckpt_path":
            ckpt = value
    return ckpt


def check_requested_checkpoint(args: list[str]) -> None:
    # Lightning reads --ckpt_path only after it has created the run's log directory, and answers a bad file with a
    # traceback; check it first. (Whether it fits the model is checked by GPTLitModule.on_load_checkpoint.)
    from lit_gpt5.convert import check_checkpoint

    ckpt = requested_checkpoint(args)
    if ckpt and ckpt not in ("last", "best", "hpc", "registry", "null") and "://" not in ckpt:
        check_checkpoint(ckpt, resuming=bool(args) and args[0] == "fit")


def main(args: list[str] | None = None) -> None:
    import lightning as L
    import torch
    from lightning.pytorch.cli import LightningCLI

    from lit_gpt5.lit_module import GPTLitModule

    # The datasets yield whole batches by a single gather; worker processes would only add start-up time.
    warnings.filterwarnings("ignore", ".*does not have many workers.*")
    logging.getLogger("lightning.pytorch.utilities.rank_zero").addFilter(no_advert)
    keep_freed_memory()
    check_requested_checkpoint(sys.argv[1:] if args is None else args)
    if torch.cuda.is_available():
        torch.set_float32_matmul_precision("high")  # float32 runs use TF32 tensor cores (Ampere and newer)
    defaults = str(resources.files("lit_gpt5").joinpath("cli_defaults.yaml"))
    LightningCLI(
        GPTLitModule,
        L.LightningDataModule,
        subclass_mode_data=True,
        parser_kwargs={cmd: {"default_config_files": [defaults]} for cmd in SUBCOMMANDS},
        save_config_kwargs={"overwrite": True},
        args=args,
    )


if __name__ == "__main__":
    from lit_gpt5.errors import run_main

    run_main(main)
