"""Callbacks the tests add to real CLI runs (importable as tests.helpers when the repository root is on the path)."""

from __future__ import annotations

import contextlib
import gc
import json
import os
import shutil
import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path

import lightning as L


class SignalAt(L.Callback):
    """Sends ``signum`` to this process when micro-batch ``micro_batch`` (counted from 0 in this run) starts:
    a kill, a Ctrl-C or a preemption at an exact, repeatable point (also inside an accumulated step)."""

    def __init__(self, micro_batch: int, signum: int = int(signal.SIGKILL)) -> None:
        self.micro_batch = micro_batch
        self.signum = signum
        self.seen = 0

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        if self.seen == self.micro_batch:
            os.kill(os.getpid(), self.signum)
        self.seen += 1


class NaNAt(L.Callback):
    """Makes the model's logits NaN during optimizer step ``step``: a loss blow-up on demand."""

    def __init__(self, step: int) -> None:
        self.step = step

    def on_train_start(self, trainer, pl_module) -> None:
        def poison(module, args, output):
            if module.training and trainer.global_step == self.step:
                return output * float("nan")  # keeps the graph: the backward runs, as in a real blow-up
            return output

        pl_module.model.transformer.ln_f.register_forward_hook(poison)


def write_jsonl(path, records) -> str:
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records), encoding="utf-8")
    return str(path)


def files_under(path) -> list:
    return sorted(p for p in path.rglob("*") if p.is_file())


def refusal(argv: list[str], capsys, workdir, cache, pattern: str, code: int = 2) -> str:
    """Run ``lit-gpt5 <argv>`` in this process and check it refused: exit ``code``, one ``error:`` line matching
    ``pattern``, no traceback, nothing new in the working directory (no run folder), no partial file in the cache."""
    import re

    import pytest

    from lit_gpt5.__main__ import main
    from lit_gpt5.errors import run_main

    before = files_under(workdir)
    with pytest.raises(SystemExit) as exit_:
        run_main(lambda: main(argv))
    err = capsys.readouterr().err
    assert exit_.value.code == code, err
    assert "Traceback" not in err
    lines = [line for line in err.splitlines() if line.startswith("error: ")]
    assert len(lines) == 1, err
    assert re.search(pattern, lines[0]), lines[0]
    assert files_under(workdir) == before  # no run directory, no checkpoint, nothing half-written
    assert not [p for p in cache.rglob("*") if p.name.endswith(".part")]
    return lines[0]


class NaNAboveLR(L.Callback):
    """Makes the logits NaN from optimizer step ``step`` on while the learning rate is above ``lr``: a blow-up that a
    lower learning rate avoids, as the advice in the non-finite-loss error promises."""

    def __init__(self, lr: float, step: int) -> None:
        self.lr, self.step = lr, step

    def on_train_start(self, trainer, pl_module) -> None:
        def poison(module, args, output):
            lr = trainer.optimizers[0].param_groups[0]["lr"]
            if module.training and trainer.global_step >= self.step and lr > self.lr:
                return output * float("nan")
            return output

        pl_module.model.transformer.ln_f.register_forward_hook(poison)


class RecordStream(L.Callback):
    """Writes, per rank, what each training step saw and each validation measured: JSON lines in ``directory``."""

    def __init__(self, directory: str) -> None:
        self.directory = directory

    def _write(self, trainer, record: dict) -> None:
        path = os.path.join(self.directory, f"rank{trainer.global_rank}.jsonl")
        with open(path, "a") as f:
            f.write(json.dumps(record) + "\n")

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        self._write(trainer, {"step": trainer.global_step, "first_tokens": batch[0][:, 0].tolist()})

    def on_validation_end(self, trainer, pl_module) -> None:
        if not trainer.sanity_checking:
            self._write(trainer, {"step": trainer.global_step, "val_loss": float(trainer.callback_metrics["val/loss"])})


class SignalOnRank(SignalAt):
    """``SignalAt`` on one rank only: a signal that reaches a single process of a multi-process run."""

    def __init__(self, micro_batch: int, signum: int, rank: int) -> None:
        super().__init__(micro_batch, signum)
        self.rank = rank

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        if trainer.global_rank == self.rank:
            super().on_train_batch_start(trainer, pl_module, batch, batch_idx)


class SignalAtValidation(L.Callback):
    """Sends ``signum`` to this process when validation batch ``batch`` starts in the validation after optimizer step
    ``step`` (not in the sanity check): a preemption in the middle of a long validation."""

    def __init__(self, step: int, batch: int, signum: int = int(signal.SIGTERM)) -> None:
        self.step, self.batch, self.signum = step, batch, signum

    def on_validation_batch_start(self, trainer, pl_module, batch, batch_idx, dataloader_idx=0) -> None:
        if not trainer.sanity_checking and trainer.global_step == self.step and batch_idx == self.batch:
            os.kill(os.getpid(), self.signum)


def quiet_trainer(root: Path | None = None, **kwargs) -> L.Trainer:
    """A CPU Trainer for in-process tests: no progress bar, no summary, no sanity check; a CSV logger in ``root``
    when given (tests that read what was logged), else none; no validation and no checkpoints unless asked."""
    from lightning.pytorch.loggers import CSVLogger

    settings = dict(
        accelerator="cpu", logger=CSVLogger(root) if root is not None else False, enable_progress_bar=False,
        enable_model_summary=False, num_sanity_val_steps=0, limit_val_batches=0, enable_checkpointing=root is not None,
    )  # fmt: skip
    return L.Trainer(**{**settings, **kwargs})


@contextlib.contextmanager
def tmpfs(path: Path, options: str) -> Iterator[Path]:
    """A tmpfs mounted at ``path`` with mount(8)'s ``options`` (``size=14m``, ``ro,size=1m``): a full or read-only
    disk for real (root may write anywhere else, so permissions alone would not stop it). Skips where it cannot."""
    import pytest

    path.mkdir(exist_ok=True)
    if shutil.which("mount") is None or os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root and mount(8); this disk behaviour is untested here")
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(path)], capture_output=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here ({done.stderr.decode().strip()})")
    try:
        yield path
    finally:
        # A refused write's exception (kept by pytest's report) can hold the writer's open file through its traceback
        # frames: collect it first, and detach lazily if the file system is still busy, so no mount outlives the test.
        gc.collect()
        if subprocess.run(["umount", str(path)], capture_output=True).returncode != 0:
            subprocess.run(["umount", "-l", str(path)], check=False)
