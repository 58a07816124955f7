"""The LightningModule: a GPT-2, its loss, AdamW, and warmup + cosine decay."""

from __future__ import annotations

import math
from dataclasses import asdict
from typing import Literal

import lightning as L
import numpy as np
import torch
from torchmetrics import MeanMetric

from lit_gpt5.errors import UserError
from lit_gpt5.loss import cross_entropy_sum, mean_loss
from lit_gpt5.model import GPT, GPTConfig


class NonFiniteLossError(UserError):
    """The loss or the gradient became NaN or infinite."""


def lr_at(step: int, learning_rate: float, min_lr: float, warmup_steps: int, decay_steps: int) -> float:
    """Linear warmup to ``learning_rate`` over ``warmup_steps``, then cosine decay to ``min_lr`` at ``decay_steps``."""
    if step < warmup_steps:
        return learning_rate * (step + 1) / (warmup_steps + 1)
    if step >= decay_steps:
        return min_lr
    progress = (step - warmup_steps) / max(1, decay_steps - warmup_steps)
    return min_lr + 0.5 * (1.0 + math.cos(math.pi * progress)) * (learning_rate - min_lr)


class GPTLitModule(L.LightningModule):
    """GPT-2 trained with token-level cross-entropy.

    Works for both jobs of the project: batches are ``(x, y)`` with ``y`` = -100 where a token is not supervised
    (nowhere in pretraining, on the prompt in instruction tuning). The loss of an optimizer step is the mean over
    all supervised tokens of all its micro-batches on all ranks, so gradient accumulation and data parallelism
    give the same gradient as one big batch.

    Args:
        model_name: a ``GPTConfig.from_name`` size; ``model5`` is GPT-2 small (124M).
        n_positions, n_layer, n_head, n_embd, dropout, bias: override single fields of the named size
            (``n_positions`` is ``GPTConfig.block_size``: the longest context the model can see).
        learning_rate: peak learning rate, reached after ``warmup_steps``.
        min_lr: learning rate at the end of the cosine decay.
        warmup_steps: optimizer steps of linear warmup.
        lr_decay_steps: optimizer step at which the cosine reaches ``min_lr``; default: the Trainer's ``max_steps``.
        weight_decay: AdamW decoupled weight decay, applied to matrices and embeddings only (not biases, norms).
        beta1, beta2: AdamW betas; 0.95 (not 0.999) keeps large-batch GPT training stable.
        init_from: start from these weights (a Hugging Face GPT-2 directory or a lit_gpt5 ``.ckpt``); the
            architecture is theirs, so ``model_name`` and the sizes are not used. Only weights are loaded: the
            optimizer, the LR schedule and the step start fresh (``--ckpt_path`` resumes a run instead).
        activation_checkpointing: recompute block activations in backward to save memory.
        on_nonfinite: what a NaN/inf loss or gradient does. ``stop``: end the run before the bad update, naming the
            step and the checkpoint holding the weights before it. ``skip``: drop that optimizer step and go on
            (single-device runs; it costs one host sync per micro-batch).
    """

    def __init__(
        self,
        model_name: str = "model5",
        n_positions: int | None = None,
        n_layer: int | None = None,
        n_head: int | None = None,
        n_embd: int | None = None,
        dropout: float | None = None,
        bias: bool | None = None,
        init_from: str | None = None,
        learning_rate: float = 6e-4,
        min_lr: float = 6e-5,
        warmup_steps: int = 50,
        lr_decay_steps: int | None = None,
        weight_decay: float = 0.1,
        beta1: float = 0.9,
        beta2: float = 0.95,
        activation_checkpointing: bool = False,
        on_nonfinite: Literal["stop", "skip"] = "stop",
    ) -> None:
        super().__init__()
        self.save_hyperparameters()
        if learning_rate <= 0 or min_lr < 0 or min_lr > learning_rate:
            raise UserError(f"need 0 <= min_lr <= learning_rate and learning_rate > 0, got {min_lr=} {learning_rate=}")
        if warmup_steps < 0:
            raise UserError(f"warmup_steps must be >= 0, got {warmup_steps}")
        if on_nonfinite not in ("stop", "skip"):
            raise UserError(f"on_nonfinite must be 'stop' or 'skip', got {on_nonfinite!r}")
        sizes = dict(block_size=n_positions, n_layer=n_layer, n_head=n_head, n_embd=n_embd, bias=bias)
        if init_from:
            self.model = self._load_weights(init_from, sizes, dropout)
        else:
            self.model = GPT(GPTConfig.from_name(model_name, dropout=dropout, **sizes))
        self.model.gradient_checkpointing = activation_checkpointing
        self.val_loss = MeanMetric()
        self.test_loss = MeanMetric()
        # Per optimizer step, accumulated over micro-batches: loss sum and supervised tokens (on the device, so
        # nothing waits for the GPU), and input tokens (known on the host).
        self._step_stats = torch.zeros(2, dtype=torch.float64)
        self._step_tokens = 0
        self._loss_ref: float | None = None
        self.tokens_seen = 0
        self.skipped_steps = 0
        self._skip_this_step = False
        self._micro_batch = 0  # index of the micro-batch within the current optimizer step
        self._rng_seed: int | None = None
        self._last_batch_shape = (0, 0)

    @staticmethod
    def _load_weights(path: str, sizes: dict, dropout: float | None) -> GPT:
        """Weights only (no optimizer state, no step): the architecture is the checkpoint's own."""
        from lit_gpt5.convert import load_model

        model = load_model(path, dropout=dropout)
        for field, value in sizes.items():
            if value is not None and getattr(model.config, field) != value:
                raise UserError(
                    f"--model.init_from {path} has {field}={getattr(model.config, field)}, but {value} was asked for; "
                    "drop the size arguments when starting from weights"
                )
        return model

    @property
    def config(self) -> GPTConfig:
        return self.model.config

    def forward(self, idx: torch.Tensor) -> torch.Tensor:
        return self.model(idx)

    @property
    def flops_per_batch(self) -> int:
        """Read by Lightning's ThroughputMonitor to log FLOP/s and MFU."""
        batch, seq = self._last_batch_shape
        return self.model.flops_per_token(seq, training=self.training) * batch * seq

    def prepare_data(self) -> None:
        # Checked here, before Lightning creates the run's log directory, so bad input leaves no empty run behind.
        if self.trainer.accumulate_grad_batches < 1:  # Lightning itself would fail later with a ZeroDivisionError
            raise UserError(
                f"accumulate_grad_batches must be a positive integer, got {self.trainer.accumulate_grad_batches}"
            )
        datamodule = getattr(self.trainer, "datamodule", None)
        data_block = getattr(datamodule, "block_size", None)
        if data_block is not None and data_block > self.config.block_size:
            raise UserError(
                f"data block_size {data_block} is larger than the model's {self.config.block_size} positions; "
                f"lower --data.block_size or raise --model.n_positions"
            )

    def on_fit_start(self) -> None:
        if self._rng_seed is None:  # not restored from a checkpoint: the seed of this run (seed_everything)
            self._rng_seed = torch.initial_seed()

    def _seed_dropout(self) -> None:
        """Seed the global RNG from (run seed, rank, micro-batch index): dropout then depends on where in the run a
        micro-batch is, not on what drew random numbers before it, so a resumed run draws the same masks."""
        index = self.global_step * self.trainer.accumulate_grad_batches + self._micro_batch
        state = np.random.SeedSequence([self._rng_seed, self.global_rank, index]).generate_state(2, dtype=np.uint32)
        torch.manual_seed(int(state[0]) << 31 | int(state[1]) >> 1)

    def training_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> torch.Tensor | None:
        x, y = batch
        self._last_batch_shape = tuple(x.shape)
        self._seed_dropout()
        self._micro_batch += 1
        loss_sum, count = cross_entropy_sum(self.model(x), y)
        if self.hparams.on_nonfinite == "skip" and (self._skip_this_step or not torch.isfinite(loss_sum)):
            # Returning None skips the backward; when the step's last micro-batch does, Lightning skips the update.
            if not self._skip_this_step:
                print(f"lit_gpt5: non-finite loss at step {self.global_step}; skipping this optimizer step")
            self._skip_this_step = True
            return None
        if self._step_stats.device != loss_sum.device:
            self._step_stats = self._step_stats.to(loss_sum.device)
        self._step_stats += torch.stack([loss_sum.detach().double(), count.double()])
        self._step_tokens += x.numel()
        if self._loss_ref is None:
            # A fixed divisor of the order of a micro-batch's token count keeps the backward's magnitude like a mean
            # (what fp16 loss scaling expects); on_before_optimizer_step replaces it with the step's true count.
            self._loss_ref = float(y.numel())
        return loss_sum / self._loss_ref

    def on_train_batch_end(self, outputs, batch, batch_idx: int) -> None:
        if (batch_idx + 1) % self.trainer.accumulate_grad_batches == 0 and self._skip_this_step:
            # The step was skipped: forget its micro-batches.
            self._step_stats.zero_()
            self._step_tokens = 0
            self._micro_batch = 0
            self._skip_this_step = False
            self.skipped_steps += 1
            self.log("train/skipped_steps", float(self.skipped_steps))

    def on_before_optimizer_step(self, optimizer: torch.optim.Optimizer) -> None:
        if self._skip_this_step:
            return  # Lightning calls this hook even for a skipped step; it then skips only the update
        # Gradients now hold  sum_{micro-batches} grad(loss_sum) / (loss_ref * accumulate), averaged over ranks by
        # DDP/FSDP. Rescale once so they are  grad(sum of token losses) / (supervised tokens of the whole step).
        local = torch.cat([self._step_stats, self._step_stats.new_tensor([self._step_tokens])])
        loss_sum, supervised, tokens = self.trainer.strategy.reduce(local, reduce_op="sum").tolist()
        self._step_stats.zero_()
        self._step_tokens = 0
        self._micro_batch = 0
        grads = [p.grad for p in self.parameters() if p.grad is not None]
        # Nothing supervised in this step: a zero update, never NaN.
        ref = self._loss_ref * self.trainer.accumulate_grad_batches * self.trainer.world_size
        scale = ref / supervised if supervised > 0 else 0.0
        if scale != 1.0 and grads:
            torch._foreach_mul_(grads, scale)
        norms = [n.float() for n in torch._foreach_norm(grads)] if grads else [torch.zeros(())]
        grad_norm = torch.linalg.vector_norm(torch.stack(norms))
        if not math.isfinite(loss_sum) or not torch.isfinite(grad_norm):
            self._stop_on_nonfinite(loss_sum, grad_norm.item())
        self.tokens_seen += int(tokens)
        self.log("train/loss", loss_sum / max(supervised, 1), prog_bar=True)
        self.log("train/grad_norm", grad_norm)  # before clipping: the Trainer clips after this hook
        self.log("train/supervised_tokens", supervised)
        self.log("train/tokens", float(self.tokens_seen))
        self.log("lr", optimizer.param_groups[0]["lr"])

    def _stop_on_nonfinite(self, loss_sum: float, grad_norm: float) -> None:
        from lit_gpt5.callbacks import ResumableCheckpoint

        what = f"loss {loss_sum}" if not math.isfinite(loss_sum) else f"gradient norm {grad_norm}"
        saver = next((c for c in self.trainer.callbacks if isinstance(c, ResumableCheckpoint)), None)
        where = (
            saver.describe_resume_point(self.trainer)
            if saver is not None
            else "no ResumableCheckpoint is configured, so nothing is saved"
        )
        raise NonFiniteLossError(
            f"{what} at step {self.global_step}: stopped before the update; {where}; resume from it with a lower "
            "--model.learning_rate, or pass --model.on_nonfinite skip"
        )

    def _eval_step(self, batch: tuple[torch.Tensor, torch.Tensor], metric: MeanMetric) -> None:
        x, y = batch
        self._last_batch_shape = tuple(x.shape)
        loss_sum, count = cross_entropy_sum(self.model(x), y)
        metric.update(mean_loss(loss_sum, count), weight=count)

    def validation_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> None:
        self._eval_step(batch, self.val_loss)

    def test_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> None:
        self._eval_step(batch, self.test_loss)

    def on_validation_epoch_end(self) -> None:
        loss = self.val_loss.compute()  # token-weighted mean, already reduced across ranks
        self.val_loss.reset()
        if self.trainer.sanity_checking:
            # Lightning drops what is logged during the sanity check. When it covered the whole held-out split
            # (num_sanity_val_steps=-1) it is the untrained model's val loss: record it at the current step.
            if math.isinf(self.trainer.num_sanity_val_steps) and self.trainer.is_global_zero:
                metrics = {"val/loss": loss.item(), "val/ppl": math.exp(min(loss.item(), 50.0))}
                for logger in self.trainer.loggers:
                    logger.log_metrics(metrics, step=self.global_step)
                print(f"step {self.global_step}: val/loss {metrics['val/loss']:.4f}")
            return
        self.log("val/loss", loss, prog_bar=True)
        self.log("val/ppl", torch.exp(loss.clamp(max=50.0)))
        # Plot validation at the number of optimizer steps taken (100, 200, ...), not Lightning's last batch index.
        self.log("step", float(self.global_step))
        if self.trainer.is_global_zero and self.trainer.state.fn != "validate":
            print(f"step {self.global_step}: val/loss {loss.item():.4f}")

    def on_test_epoch_end(self) -> None:
        loss = self.test_loss.compute()
        self.test_loss.reset()
        self.log("test/loss", loss)
        self.log("test/ppl", torch.exp(loss.clamp(max=50.0)))

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        checkpoint["lit_gpt5"] = {
            "tokens_seen": self.tokens_seen,
            "loss_ref": self._loss_ref,
            "rng_seed": self._rng_seed,
            "skipped_steps": self.skipped_steps,
            # The architecture itself, so a checkpoint is usable without the arguments that built it.
            "model_config": asdict(self.config),
        }

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        from dataclasses import fields

        from lit_gpt5.convert import checkpoint_config

        theirs = checkpoint_config(checkpoint)
        for f in fields(theirs):
            if f.name != "dropout" and getattr(theirs, f.name) != getattr(self.config, f.name):
                raise UserError(
                    f"the checkpoint holds a model with {f.name}={getattr(theirs, f.name)}, but this run builds "
                    f"{f.name}={getattr(self.config, f.name)}; use the --model arguments of the run that saved it"
                )
        state = checkpoint.get("lit_gpt5", {})
        self.tokens_seen = state.get("tokens_seen", 0)
        self._loss_ref = state.get("loss_ref")
        self._rng_seed = state.get("rng_seed")
        self.skipped_steps = state.get("skipped_steps", 0)

    def configure_optimizers(self):
        hp = self.hparams
        decay = [p for p in self.parameters() if p.requires_grad and p.dim() >= 2]
        no_decay = [p for p in self.parameters() if p.requires_grad and p.dim() < 2]
        optimizer = torch.optim.AdamW(
            [{"params": decay, "weight_decay": hp.weight_decay}, {"params": no_decay, "weight_decay": 0.0}],
            lr=hp.learning_rate,
            betas=(hp.beta1, hp.beta2),
            # One fused kernel for all parameters on GPU: several times faster than the per-tensor loop.
            fused=self.device.type == "cuda",
        )
        decay_steps = hp.lr_decay_steps
        if decay_steps is None:
            decay_steps = self.trainer.max_steps
            if decay_steps is None or decay_steps < 0:
                raise UserError("set --trainer.max_steps (or --model.lr_decay_steps) so the cosine schedule has an end")
        warmup, peak, floor = hp.warmup_steps, hp.learning_rate, hp.min_lr
        scheduler = torch.optim.lr_scheduler.LambdaLR(
            optimizer, lambda step: lr_at(step, peak, floor, warmup, decay_steps) / peak
        )
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step", "name": "lr"}}
