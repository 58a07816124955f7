"""What every ``lit-gpt5`` subcommand parses its arguments with: ``CommandParser``, whose errors are one line, and the
argument types the commands share (positive integers, fractions, output folders, devices)."""

from __future__ import annotations

import argparse
from pathlib import Path

import torch

from lit_gpt5.errors import UserError
from lit_gpt5.files import check_output_dir


class CommandParser(argparse.ArgumentParser):
    """argparse, with a bad argument reported like every other user error: one line naming it, exit status 2.

    (``lit_gpt5.cli.CLIParser`` does the same for the LightningCLI of ``fit``, ``validate`` and ``test``.)"""

    def error(self, message: str):  # type: ignore[override]
        raise UserError(f"{message}; see {self.prog} --help")


def positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {value}")
    return value


def fraction(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number between 0 and 1, got {text!r}") from None
    if not 0 < value < 1:
        raise argparse.ArgumentTypeError(f"expected a number between 0 and 1 (exclusive), got {value}")
    return value


def fraction_or_zero(text: str) -> float:
    """A fraction in [0, 1): 0 turns off what the fraction holds out."""
    return 0.0 if text.strip() in ("0", "0.0") else fraction(text)


def output_dir(path: str, flag: str = "--out") -> Path:
    """A directory to write into (made by the command that writes, see ``lit_gpt5.files.new_folder``); an existing
    file there is an error, not overwritten."""
    out = Path(path).expanduser()
    if out.exists() and not out.is_dir():
        raise UserError(f"{flag} {out} is an existing file; pass a directory (it is created if missing)")
    return check_output_dir(out, flag)


def check_device(name: str) -> torch.device:
    """``name`` as a device this machine has; a one-line error naming what it does have otherwise."""
    try:
        device = torch.device(name)
    except RuntimeError:
        raise UserError(f"--device {name!r} is not a device name; use cpu, cuda, cuda:N or mps") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise UserError(f"--device {name}: this machine has no CUDA GPU that PyTorch can use; pass --device cpu")
    if device.type == "cuda" and device.index is not None and device.index >= torch.cuda.device_count():
        raise UserError(f"--device {name}: there are only {torch.cuda.device_count()} CUDA device(s)")
    if device.type == "mps" and not torch.backends.mps.is_available():
        raise UserError(f"--device {name}: MPS is not available here; pass --device cpu")
    return device
