"""Huge pages under CPU tensors: asked for by the CLI's entry points before torch allocates, never by an import."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from lit_gpt5.training.huge_pages import ENV, kernel_mode, use_huge_pages

# In a fresh process: run an entry point (its --help: it exits before training), then allocate a 200 MB tensor and
# report the variable and how much of the process's memory is in huge pages.
PROBE = r"""
import contextlib, io, os, runpy, sys
how = sys.argv[1]
with contextlib.redirect_stdout(io.StringIO()):
    if how == "library":
        import lit_gpt5.cli
    else:
        sys.argv = ["lit_gpt5.cli", "fit", "--help"] if how == "cli" else ["lit-gpt5", "fit", "--help"]
        try:
            runpy.run_module("lit_gpt5.cli" if how == "cli" else "lit_gpt5", run_name="__main__")
        except SystemExit:
            pass
import torch
x = torch.ones(50_000_000)
huge = sum(int(line.split()[1]) for line in open("/proc/self/smaps") if line.startswith("AnonHugePages"))
print(os.environ.get("THP_MEM_ALLOC_ENABLE"), huge)
"""


def probe(how: str, **env: str) -> tuple[str, int]:
    clean = {k: v for k, v in os.environ.items() if k != ENV} | env
    out = subprocess.run(
        [sys.executable, "-c", PROBE, how], capture_output=True, text=True, timeout=300, env=clean, check=False
    )
    assert out.returncode == 0, out.stderr[-2000:]
    value, huge_kb = out.stdout.split()[-2:]
    return value, int(huge_kb)


def test_kernel_mode_reads_the_bracketed_choice(tmp_path):
    setting = tmp_path / "enabled"
    setting.write_text("always [madvise] never\n")
    assert kernel_mode(setting) == "madvise"
    setting.write_text("[always] madvise never\n")
    assert kernel_mode(setting) == "always"
    assert kernel_mode(tmp_path / "absent") is None


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="PyTorch's huge-page allocation is Linux's")
def test_use_huge_pages_sets_the_variable_unless_the_environment_says_otherwise(monkeypatch):
    monkeypatch.delenv(ENV, raising=False)
    assert use_huge_pages() is True
    assert os.environ[ENV] == "1"
    monkeypatch.setenv(ENV, "0")  # the user's opt-out stands
    assert use_huge_pages() is False
    assert os.environ[ENV] == "0"


@pytest.mark.slow  # fresh processes that import Lightning
@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="PyTorch's huge-page allocation is Linux's")
def test_the_cli_entry_points_get_huge_pages_and_an_import_does_not():
    library_value, library_huge = probe("library")
    assert library_value == "None" and library_huge == 0  # importing the CLI as a library changes nothing
    for how in ("cli", "main"):  # python -m lit_gpt5.cli fit ..., lit-gpt5 fit ... (python -m lit_gpt5 fit ...)
        value, huge = probe(how)
        assert value == "1", how
        if kernel_mode() in ("always", "madvise"):
            assert huge >= 100 * 1024, (how, huge)  # most of the 200 MB tensor: asked for before torch's first tensor
    value, huge = probe("main", **{ENV: "0"})
    assert value == "0"
    if kernel_mode() == "madvise":
        assert huge == 0  # opted out: nothing asks the kernel
