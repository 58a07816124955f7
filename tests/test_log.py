"""A library stays quiet and side-effect free: no process-wide setting unless asked, no ``print`` outside commands,
and every message through the ``lit_gpt5`` logger, which silences it."""

from __future__ import annotations

import ast
import logging
import subprocess
import sys
from pathlib import Path

import lightning as L
import pytest
import torch

from lit_gpt5.data import TokenWindowDataModule
from lit_gpt5.training.module import GPTLitModule

PACKAGE = Path(__file__).resolve().parents[1] / "lit_gpt5"

# In a fresh process: import lit_gpt5, fit a tiny model in-process, and ask glibc whether a 64 MB block is still
# served by mmap (its default above 32 MB), before and after asking for keep_freed_memory().
MALLOC_PROBE = r"""
import ctypes, logging
import lightning as L, torch
from lit_gpt5.data import TokenWindowDataModule
from lit_gpt5.training.module import GPTLitModule

libc = ctypes.CDLL("libc.so.6")
class MallInfo2(ctypes.Structure):
    _fields_ = [(n, ctypes.c_size_t) for n in ("arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks",
                                                "fsmblks", "uordblks", "fordblks", "keepcost")]
libc.mallinfo2.restype = MallInfo2
libc.malloc.restype = ctypes.c_void_p
libc.free.argtypes = [ctypes.c_void_p]

def big_block_is_mmapped():
    before = libc.mallinfo2().hblkhd
    block = libc.malloc(64 << 20)
    mapped = libc.mallinfo2().hblkhd > before
    libc.free(block)
    return mapped

module = GPTLitModule(model_name="gpt-nano", n_layer=1, warmup_steps=1)
data = TokenWindowDataModule(torch.randint(0, 50257, (4000,)), block_size=16, batch_size=2)
L.Trainer(max_steps=2, logger=False, enable_checkpointing=False, enable_progress_bar=False,
          enable_model_summary=False, limit_val_batches=1, num_sanity_val_steps=0).fit(module, datamodule=data)
print("after fit:", big_block_is_mmapped())
from lit_gpt5.training.trainer import keep_freed_memory
keep_freed_memory()
print("after keep_freed_memory:", big_block_is_mmapped())
"""


@pytest.mark.slow  # a fit in a process of its own
def test_fitting_leaves_malloc_alone_unless_asked():
    if not sys.platform.startswith("linux"):
        return  # the setting exists on glibc only
    out = subprocess.run([sys.executable, "-c", MALLOC_PROBE], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    assert "after fit: True" in out.stdout  # glibc's default: the library changed nothing
    assert "after keep_freed_memory: False" in out.stdout  # the setting, when asked for, is observable


def fit_and_validate() -> None:
    module = GPTLitModule(model_name="gpt-nano", n_layer=1, warmup_steps=1)
    data = TokenWindowDataModule(torch.randint(0, 50257, (4000,)), block_size=16, batch_size=2)
    trainer = L.Trainer(
        max_steps=2,
        val_check_interval=2,
        num_sanity_val_steps=-1,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
    )
    trainer.fit(module, datamodule=data)


def test_the_lit_gpt5_logger_silences_library_output(capsys):
    fit_and_validate()
    out = capsys.readouterr().out
    assert "step 0: val/loss" in out and "step 2: val/loss" in out  # heard by default
    logger = logging.getLogger("lit_gpt5")
    level = logger.level
    try:
        logger.setLevel(logging.WARNING)
        fit_and_validate()
    finally:
        logger.setLevel(level)
    captured = capsys.readouterr()
    assert "val/loss" not in captured.out + captured.err
    assert "lit_gpt5" not in captured.out + captured.err


def test_the_logger_touches_no_other_logger():
    import lit_gpt5.log  # noqa: F401

    assert not any(type(h).__module__.startswith("lit_gpt5") for h in logging.getLogger().handlers)
    own = logging.getLogger("lit_gpt5.training.module")
    assert own.level == logging.NOTSET and not own.handlers  # modules inherit the package logger's level


def test_print_only_in_commands():
    """``print`` only in a command's ``main`` (and the private helpers of a command module), never in library code:
    a data module or callback imported by another project must not write to its stdout behind its back."""
    found = []
    for path in sorted(PACKAGE.rglob("*.py")):
        tree = ast.parse(path.read_text())
        is_command = any(isinstance(n, ast.FunctionDef) and n.name in ("main", "run_main") for n in tree.body)
        for top in tree.body:
            name = getattr(top, "name", "")
            allowed = is_command and (name in ("main", "run_main") or (name.startswith("_") and name[1:2] != "_"))
            for node in ast.walk(top):
                if isinstance(node, ast.Call) and getattr(node.func, "id", None) == "print" and not allowed:
                    found.append(f"{path.relative_to(PACKAGE.parent)}:{node.lineno} (in {name or 'module'})")
    assert not found, "print() in library code (log through lit_gpt5.log.get_logger instead): " + ", ".join(found)


PROPAGATION_PROBE = r"""
import logging, sys
if sys.argv[1] == "configured":
    logging.basicConfig(level=logging.INFO, format="ROOT %(name)s: %(message)s", stream=sys.stdout)
from lit_gpt5.log import get_logger
get_logger("lit_gpt5.probe").info("hello")
"""


def test_a_program_that_configured_logging_gets_the_messages_through_its_own_handlers():
    """As Lightning: our console handler only when the root logger has none; otherwise the messages propagate to the
    program's own handlers, formatted its way, and are not written twice."""

    def run(mode: str) -> str:
        done = subprocess.run([sys.executable, "-c", PROPAGATION_PROBE, mode], capture_output=True, text=True,
                              timeout=60)  # fmt: skip
        assert done.returncode == 0, done.stderr[-2000:]
        return done.stdout

    assert run("plain") == "hello\n"  # a plain process: the bare message on stdout
    assert run("configured") == "ROOT lit_gpt5.probe: hello\n"  # the program's handler, once
