"""What one optimizer step means: the mean loss over its supervised units, and what a non-finite one does.

``StepMean`` holds the one idea of the training step: the loss of an optimizer step is the mean over *all* its
supervised units (target tokens; preference pairs for DPO) across all its micro-batches and all ranks. Accumulating
4 micro-batches of 2 examples then gives exactly the gradient of one batch of 8, which Lightning's default (each
micro-batch's own mean, divided by 4) does not when the micro-batches supervise different numbers of tokens.

``check_step`` holds the non-finite policy: a NaN/inf loss or gradient either stops the run before the bad update
(``stop``) or turns that update into no update (``skip``). The decision is taken once per optimizer step, on values
already reduced over ranks, so every rank takes the same one.

``OptimizerStep`` is what every LightningModule of the package hands its steps to: it holds the step's
``StepMean``, applies the policy, logs the step's figures and keeps its gradient norm for clipping.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Literal

import lightning as L
import torch

from lit_gpt5.compat import norms, scale_
from lit_gpt5.errors import NonFiniteLossError
from lit_gpt5.log import get_logger
from lit_gpt5.resume.state import RunState

log = get_logger(__name__)

NonFinitePolicy = Literal["stop", "skip"]


@dataclass
class StepResult:
    """One optimizer step, over all its micro-batches and ranks."""

    loss: float  # mean over the step's units
    units: float  # supervised units (tokens, or pairs)
    tokens: float  # input tokens
    grad_norm: torch.Tensor  # of the rescaled gradient, before clipping
    loss_finite: bool
    grad_finite: bool


class StepMean:
    """Accumulates one optimizer step's loss so that its gradient is that of the mean over the step's units.

    Each micro-batch backpropagates ``loss_sum / ref``, where ``ref`` is a fixed number of the order of a
    micro-batch's unit count (the first one seen; it keeps the backward's magnitude like a mean's, which fp16 loss
    scaling expects). Lightning divides that by the accumulation count and DDP averages gradients over ranks, so
    before the optimizer step the gradients hold ``sum grad(loss_sum) / (ref * accumulate * world_size)``.
    ``finish`` reduces (loss sum, units, tokens) over ranks and multiplies the gradients by
    ``ref * accumulate * world_size / units``: they become ``grad(sum of unit losses) / (units of the whole step)``.
    A step with nothing supervised gets a zero gradient, never NaN.
    """

    def __init__(self) -> None:
        self.ref: float | None = None
        self._sums = torch.zeros(3, dtype=torch.float64)  # loss sum, units, tokens of the current step

    def add(self, loss_sum: torch.Tensor, units: torch.Tensor | float, tokens: int) -> torch.Tensor:
        """Record a micro-batch; returns the tensor to backpropagate."""
        if self._sums.device != loss_sum.device:
            self._sums = self._sums.to(loss_sum.device)
        units = torch.as_tensor(units, device=loss_sum.device)
        self._sums += torch.stack([loss_sum.detach().double(), units.double(), units.new_tensor(tokens).double()])
        if self.ref is None:
            self.ref = float(max(int(units), 1))
        return loss_sum / self.ref

    def finish(
        self, parameters: Iterable[torch.nn.Parameter], strategy, accumulate: int, world_size: int
    ) -> StepResult:
        """Reduce the step over ranks, rescale the gradients in place, and reset for the next step."""
        loss_sum, units, tokens = strategy.reduce(self._sums, reduce_op="sum").tolist()
        self._sums.zero_()
        grads = [p.grad for p in parameters if p.grad is not None]
        ref = (self.ref or 1.0) * accumulate * world_size
        scale = ref / units if units > 0 else 0.0
        if scale != 1.0 and grads:
            scale_(grads, scale)
        per_tensor = [n.float() for n in norms(grads)] if grads else [torch.zeros(())]
        grad_norm = torch.linalg.vector_norm(torch.stack(per_tensor))
        return StepResult(
            loss=loss_sum / max(units, 1.0),
            units=units,
            tokens=tokens,
            grad_norm=grad_norm,
            loss_finite=math.isfinite(loss_sum),
            grad_finite=bool(torch.isfinite(grad_norm)),
        )

    def state_dict(self) -> dict:
        return {"loss_ref": self.ref}

    def load_state_dict(self, state: dict) -> None:
        self.ref = state.get("loss_ref")


def check_step(
    result: StepResult,
    parameters: Iterable[torch.nn.Parameter],
    policy: NonFinitePolicy,
    step: int,
    scaler_active: bool = False,
) -> bool:
    """Apply the non-finite policy to a finished step; True when the step goes ahead, False when it was skipped.

    ``stop`` raises ``NonFiniteLossError`` before the update. ``skip`` drops every gradient, so the optimizer step
    changes nothing (AdamW leaves parameters without a gradient, and their moments, alone); the step still counts,
    so the data stream and the schedule stay where a resume expects them. With fp16 loss scaling
    (``scaler_active``) an infinite gradient is the scaler's normal overflow signal: it skips that update and
    lowers the scale itself, so only a non-finite loss counts.
    """
    if result.loss_finite and (result.grad_finite or scaler_active):
        return True
    what = f"loss {result.loss}" if not result.loss_finite else f"gradient norm {result.grad_norm.item()}"
    if policy == "stop":
        raise NonFiniteLossError(what, step)
    kind = "loss" if not result.loss_finite else "gradient"
    log.warning(f"lit_gpt5: non-finite {kind} at step {step}; skipping this optimizer step ({what})")
    for p in parameters:
        p.grad = None
    return False


class OptimizerStep:
    """One optimizer step of a LightningModule, from its micro-batches to its logged figures.

    ``add`` in ``training_step`` (a micro-batch's loss sum, its units and tokens; returns what to backpropagate),
    ``finish`` in ``on_before_optimizer_step`` (the step's mean over its units on all ranks, the non-finite policy,
    ``train/loss``, ``train/grad_norm``, ``train/<unit_name>``, ``train/tokens``, ``lr``), and ``grad_norm_of`` for
    the clipping that follows. The counters go to the run state; the mean's reference count is saved with it.

    Args:
        unit_name: what the loss of a step is the mean over (``supervised_tokens``, ``pairs``, ``samples``).
        on_nonfinite: ``stop`` or ``skip`` (``check_step``).
        run_state: the module's run state: the step's tokens and skips are counted there.
    """

    def __init__(self, unit_name: str, on_nonfinite: NonFinitePolicy, run_state: RunState) -> None:
        self.unit_name, self.on_nonfinite, self.run_state = unit_name, on_nonfinite, run_state
        self.mean = StepMean()
        # The gradient norm of the current optimizer step, (step, norm), computed while finishing the step's mean, for
        # the clipping Lightning calls right after: its public signature carries no norm, and a second pass over every
        # gradient would cost 2-3% of a CPU step. Tagged with the step, so a norm is never used for any other step.
        self.grad_norm: tuple[int, torch.Tensor] | None = None
        run_state.add(self.mean)

    def add(self, loss_sum: torch.Tensor, units: torch.Tensor | float, tokens: int) -> torch.Tensor:
        """Record a micro-batch; returns the tensor ``training_step`` returns (to backpropagate)."""
        return self.mean.add(loss_sum, units, tokens)

    def finish(self, module: L.LightningModule, optimizer: torch.optim.Optimizer) -> bool:
        """Close the step (once per optimizer step, after the last micro-batch's backward, before clipping) and log
        its figures; False when the non-finite policy skipped it."""
        trainer = module.trainer
        step = self.mean.finish(
            module.parameters(), trainer.strategy, trainer.accumulate_grad_batches, trainer.world_size
        )
        scaler_active = getattr(trainer.precision_plugin, "scaler", None) is not None
        self.grad_norm = None
        went_ahead = check_step(step, module.parameters(), self.on_nonfinite, trainer.global_step, scaler_active)
        self.run_state.count_step(int(step.tokens), skipped=not went_ahead)
        if not went_ahead:
            module.log("train/skipped_steps", float(self.run_state.skipped_steps))
        else:
            self.grad_norm = (trainer.global_step, step.grad_norm)
            module.log("train/loss", step.loss, prog_bar=True)
            module.log("train/grad_norm", step.grad_norm)  # before clipping: the Trainer clips after this hook
        module.log(f"train/{self.unit_name}", step.units)
        module.log("train/tokens", float(self.run_state.tokens_seen))
        module.log("lr", optimizer.param_groups[0]["lr"])
        return went_ahead

    def grad_norm_of(self, step: int) -> torch.Tensor | None:
        """The gradient norm of optimizer step ``step`` if it was just finished, else None (clipping computes it)."""
        return self.grad_norm[1] if self.grad_norm is not None and self.grad_norm[0] == step else None
