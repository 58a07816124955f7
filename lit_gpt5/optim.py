"""AdamW with decay on matrices only, and linear warmup + cosine decay per optimizer step."""

from __future__ import annotations

import math
from collections.abc import Iterable

import torch

from lit_gpt5.errors import UserError


def lr_at(step: int, learning_rate: float, min_lr: float, warmup_steps: int, decay_steps: int) -> float:
    """Linear warmup to ``learning_rate`` over ``warmup_steps``, then cosine decay to ``min_lr`` at ``decay_steps``."""
    if step < warmup_steps:
        return learning_rate * (step + 1) / (warmup_steps + 1)
    if step >= decay_steps:
        return min_lr
    progress = (step - warmup_steps) / max(1, decay_steps - warmup_steps)
    return min_lr + 0.5 * (1.0 + math.cos(math.pi * progress)) * (learning_rate - min_lr)


def check_schedule(learning_rate: float, min_lr: float, warmup_steps: int, lr_decay_steps: int | None) -> None:
    if not learning_rate > 0 or not 0 <= min_lr <= learning_rate:
        raise UserError(
            f"need 0 <= min_lr <= learning_rate and learning_rate > 0, got min_lr={min_lr} "
            f"learning_rate={learning_rate}"
        )
    if warmup_steps < 0:
        raise UserError(f"warmup_steps must be >= 0, got {warmup_steps}")
    if lr_decay_steps is not None and lr_decay_steps <= 0:
        raise UserError(f"lr_decay_steps must be a positive integer, got {lr_decay_steps}")


def adamw_with_schedule(
    parameters: Iterable[torch.nn.Parameter],
    learning_rate: float,
    min_lr: float,
    warmup_steps: int,
    decay_steps: int,
    weight_decay: float,
    betas: tuple[float, float],
    fused: bool,
) -> dict:
    """``configure_optimizers``' answer: AdamW (weight decay on matrices and embeddings, not on biases or norms) and a
    per-step warmup + cosine schedule."""
    params = [p for p in parameters if p.requires_grad]
    groups = [
        {"params": [p for p in params if p.dim() >= 2], "weight_decay": weight_decay},
        {"params": [p for p in params if p.dim() < 2], "weight_decay": 0.0},
    ]
    optimizer = torch.optim.AdamW(groups, lr=learning_rate, betas=betas, fused=fused)

    def multiplier(step: int) -> float:
        # A function, not an object: LambdaLR would save an object's attributes in the checkpoint and restore them
        # over a resumed run's own arguments.
        return lr_at(step, learning_rate, min_lr, warmup_steps, decay_steps) / learning_rate

    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, multiplier)
    return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step", "name": "lr"}}
