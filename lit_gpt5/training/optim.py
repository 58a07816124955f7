"""How every module of the package optimizes: AdamW with decay on matrices only, linear warmup + cosine decay per
optimizer step, and gradient clipping that works for fused AdamW (``Optimization``, what ``configure_optimizers``
and ``configure_gradient_clipping`` hand over to)."""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable

import lightning as L
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


def fused_adamw_possible(module: L.LightningModule) -> bool:
    """Whether ``configure_optimizers`` may use a fused AdamW: on CPU and CUDA, unless fp16 loss scaling is on.

    A fused step unscales fp16 gradients itself, so Lightning cannot clip them before it and refuses to; bf16 and fp32
    have no scaler and nothing to unscale."""
    if module.device.type not in ("cuda", "cpu"):
        return False
    try:
        precision = module.trainer.precision_plugin
    except RuntimeError:  # not attached to a Trainer (tools that build the optimizer on their own)
        return True
    return getattr(precision, "scaler", None) is None


def clip_gradients(
    module: L.LightningModule,
    optimizer: torch.optim.Optimizer,
    clip_val: float | None,
    algorithm: str | None,
    total_norm: torch.Tensor | None = None,
) -> None:
    """``--trainer.gradient_clip_val`` for a fused optimizer too.

    Lightning's mixed-precision plugin refuses to clip for any fused optimizer, because of fp16 loss scaling; with
    bf16 there is no scaler (``fused_adamw_possible`` keeps fp16 runs unfused), so the gradients are plain and are
    clipped here as Lightning would. Under FSDP, Lightning refuses to clip by norm at all (``clip_grad_norm_`` would
    see one rank's shard): the FSDP root module's own ``clip_grad_norm_`` reduces the norm over ranks. DeepSpeed
    clips inside its engine (Lightning passes the value on). ``total_norm``: the gradients' norm if already known
    (the step's logged ``train/grad_norm``), which saves a pass over them."""
    from lightning.pytorch.strategies import DDPStrategy, DeepSpeedStrategy, FSDPStrategy, SingleDeviceStrategy

    strategy = module.trainer.strategy
    norm = algorithm in (None, "norm")
    if clip_val and norm and isinstance(strategy, FSDPStrategy):
        strategy.model.clip_grad_norm_(clip_val)
        return
    fused = bool(getattr(optimizer, "defaults", {}).get("fused"))
    plain = isinstance(strategy, SingleDeviceStrategy | DDPStrategy) and not isinstance(strategy, DeepSpeedStrategy)
    if not (clip_val and fused and plain):
        module.clip_gradients(optimizer, clip_val, algorithm)
        return
    if norm and total_norm is not None and hasattr(torch.nn.utils, "clip_grads_with_norm_"):  # torch >= 2.6
        torch.nn.utils.clip_grads_with_norm_(module.parameters(), clip_val, total_norm)
    elif norm:
        torch.nn.utils.clip_grad_norm_(module.parameters(), clip_val)
    else:
        torch.nn.utils.clip_grad_value_(module.parameters(), clip_val)


class Optimization:
    """A run's optimizer, schedule and clipping (``TrainingSettings.optimization()`` builds it from a module's
    settings). A LightningModule's ``configure_optimizers`` returns ``configure(self)``; its
    ``configure_gradient_clipping`` calls ``clip``."""

    def __init__(
        self,
        learning_rate: float,
        min_lr: float,
        warmup_steps: int,
        lr_decay_steps: int | None,
        weight_decay: float,
        betas: tuple[float, float],
    ) -> None:
        check_schedule(learning_rate, min_lr, warmup_steps, lr_decay_steps)
        self.learning_rate, self.min_lr = learning_rate, min_lr
        self.warmup_steps, self.lr_decay_steps = warmup_steps, lr_decay_steps
        self.weight_decay, self.betas = weight_decay, betas

    def decay_steps(self, trainer: L.Trainer) -> int:
        """The optimizer step at which the cosine reaches ``min_lr``: ``lr_decay_steps``, else the Trainer's
        ``max_steps``."""
        if self.lr_decay_steps is not None:
            return self.lr_decay_steps
        max_steps = trainer.max_steps
        if max_steps is None or max_steps < 0:
            raise UserError(
                f"--trainer.max_steps must be a positive number of optimizer steps, got {max_steps}: the cosine "
                "schedule needs an end (or give --model.lr_decay_steps)"
            )
        return max_steps

    def schedule(self, trainer: L.Trainer) -> Callable[[int], float]:
        """The learning rate at each optimizer step of a run on ``trainer``."""
        decay = self.decay_steps(trainer)
        return lambda step: lr_at(step, self.learning_rate, self.min_lr, self.warmup_steps, decay)

    def configure(self, module: L.LightningModule) -> dict:
        """``configure_optimizers``' answer for ``module``: AdamW over its trainable parameters, the schedule."""
        return adamw_with_schedule(
            module.parameters(),
            self.learning_rate,
            self.min_lr,
            self.warmup_steps,
            self.decay_steps(module.trainer),
            self.weight_decay,
            self.betas,
            # One fused kernel for all parameters: several times faster than the per-tensor loop on GPU, and 3x on
            # CPU (GPT-2 small: 0.24 -> 0.07 s per step). transformers' Trainer defaults to it too.
            fused=fused_adamw_possible(module),
        )

    def clip(
        self,
        module: L.LightningModule,
        optimizer: torch.optim.Optimizer,
        clip_val: float | None,
        algorithm: str | None,
        total_norm: torch.Tensor | None,
    ) -> None:
        """``configure_gradient_clipping``: ``--trainer.gradient_clip_val``, fused AdamW included (``clip_gradients``);
        ``total_norm``, the step's gradient norm when already known, saves a pass over the gradients."""
        clip_gradients(module, optimizer, clip_val, algorithm, total_norm)
