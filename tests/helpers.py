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
