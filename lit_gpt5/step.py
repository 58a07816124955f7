"""What one optimizer step means: the mean loss over its supervised units, and what a non-finite one does.

``StepMean`` holds the one idea of the training step: the loss of an optimizer step is the mean over *all* its
supervised units (target tokens; preference pairs for DPO) across all its micro-batches and all ranks. Accumulating
4 micro-batches of 2 examples then gives exactly the gradient of one batch of 8, which Lightning's default (each
micro-batch's own mean, divided by 4) does not when the micro-batches supervise different numbers of tokens.

``check_step`` holds the non-finite policy: a NaN/inf loss or gradient either stops the run before the bad update
(``stop``) or turns that update into no update (``skip``). The decision is taken once per optimizer step, on values
already reduced over ranks, so every rank takes the same one.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Literal

import torch

from lit_gpt5.compat import norms, scale_
from lit_gpt5.errors import UserError
from lit_gpt5.log import get_logger

log = get_logger(__name__)

NonFinitePolicy = Literal["stop", "skip"]


class NonFiniteLossError(UserError):
    """The loss or the gradient became NaN or infinite; the update was not applied.

    ``resume_point`` is filled in by whoever knows where the run was last saved (the checkpoint callback).
    """

    def __init__(self, what: str, step: int) -> None:
        super().__init__(what, step)
        self.what, self.step = what, step
        self.resume_point: str | None = None

    def __str__(self) -> str:
        where = self.resume_point or "no checkpoint callback is configured, so nothing was saved"
        return (
            f"{self.what} at step {self.step}: stopped before the update; {where}; resume from it with a lower "
            "--model.learning_rate, or pass --model.on_nonfinite skip"
        )


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
