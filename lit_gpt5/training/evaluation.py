"""Held-out figures, the same way for every module of the package: logged at the optimizer step they belong to, the
untrained model's included, and one console line per validation.

A module computes its own figures (``eval_metrics``: token-weighted losses, DPO's rewards, RLOO's reward and KL) and
hands them to ``log_validation`` at the end of each validation.
"""

from __future__ import annotations

import math

import lightning as L

from lit_gpt5.compat import log_during_sanity_check
from lit_gpt5.log import get_logger

log = get_logger(__name__)


def report(module: L.LightningModule, metrics: dict[str, float], shown: tuple[str, ...] | None) -> None:
    """One line on rank 0: ``step 100: val/loss 5.1234`` (``shown``: the metrics on it; None: all of them)."""
    if module.trainer.is_global_zero:
        picked = metrics if shown is None else {k: metrics[k] for k in shown}
        log.info(f"step {module.global_step}: " + ", ".join(f"{k} {v:.4f}" for k, v in picked.items()))


def log_validation(module: L.LightningModule, metrics: dict[str, float], shown: tuple[str, ...] | None) -> None:
    """What ``on_validation_epoch_end`` does with a validation's figures (already reduced across ranks)."""
    trainer = module.trainer
    if trainer.sanity_checking:
        # A sanity check over the whole held-out split (num_sanity_val_steps=-1) is the starting model's figures: the
        # first point of every curve, at the current step. Lightning drops what is logged then (lit_gpt5.compat).
        if math.isinf(trainer.num_sanity_val_steps) and trainer.is_global_zero:
            log_during_sanity_check(trainer, metrics)
            report(module, metrics, shown)
        return
    for name, value in metrics.items():
        module.log(name, value, prog_bar=name == "val/loss", sync_dist=False)
    # Plot validation at the number of optimizer steps taken (100, 200, ...), not Lightning's last batch index.
    module.log("step", float(module.global_step))
    if trainer.state.fn != "validate":
        report(module, metrics, shown)
