"""Callbacks the tests add to real CLI runs (importable as tests.helpers when the repository root is on the path)."""

from __future__ import annotations

import json
import os
import signal

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

        pl_module.model.lm_head.register_forward_hook(poison)


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

        pl_module.model.lm_head.register_forward_hook(poison)
