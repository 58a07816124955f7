"""The study helper the notebooks and benchmarks train with: a rerun replaces the run it repeats."""

from __future__ import annotations

import torch

from lit_gpt5.data import TokenWindowDataModule
from lit_gpt5.tools.studies import read_scalars, train
from lit_gpt5.training.module import GPTLitModule


def test_a_rerun_replaces_the_logs_of_the_run_it_repeats(tmp_path):
    def run(steps: int):
        module = GPTLitModule(model_name="gpt-nano", n_layer=1, warmup_steps=0)
        data = TokenWindowDataModule(torch.randint(0, 50257, (2000,)), block_size=16, batch_size=2)
        return train(module, data, tmp_path, "dpo-0.1", max_steps=steps, val_every=2, precision="32-true",
                     accelerator="cpu")  # fmt: skip

    run(4)  # the older run (or one interrupted after its first validation)
    log_dir = run(2)
    steps, _ = read_scalars(log_dir)["val/loss"]
    assert list(steps) == [0, 2]  # this run's validations only, each once


def test_a_study_fit_shows_no_lightning_advertisement(tmp_path):
    """Lightning logs a "💡 Tip" while the Trainer is built; a notebook that trains several runs would show it each
    time. The record must not reach a handler of Lightning's logger (the filter covers the Trainer's construction)."""
    import logging

    from lit_gpt5.log import LIGHTNING_RANK_ZERO

    seen: list[str] = []

    class Collect(logging.Handler):
        def emit(self, record):
            seen.append(record.getMessage())

    rank_zero = logging.getLogger(LIGHTNING_RANK_ZERO)
    handler, level = Collect(), rank_zero.level
    rank_zero.addHandler(handler)
    rank_zero.setLevel(logging.INFO)
    try:
        module = GPTLitModule(model_name="gpt-nano", n_layer=1, warmup_steps=0)
        data = TokenWindowDataModule(torch.randint(0, 50257, (2000,)), block_size=16, batch_size=2)
        train(module, data, tmp_path, "quiet", max_steps=1, val_every=1, precision="32-true", accelerator="cpu")
    finally:
        rank_zero.removeHandler(handler)
        rank_zero.setLevel(level)
    assert seen, "Lightning logged nothing at all: the test no longer watches the logger it writes to"
    assert not [m for m in seen if m.startswith("💡 Tip")]
