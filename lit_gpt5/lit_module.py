"""The LightningModule: a GPT-2, its token-level loss, AdamW, and warmup + cosine decay."""

from __future__ import annotations

import math
from dataclasses import asdict, fields
from typing import Literal

import lightning as L
import numpy as np
import torch
from torchmetrics import MeanMetric

from lit_gpt5.compat import align_accumulation_window, log_during_sanity_check
from lit_gpt5.data.streams import global_batches_trained, micro_batches_trained
from lit_gpt5.errors import UserError
from lit_gpt5.log import get_logger
from lit_gpt5.lora import TARGETS, apply_lora, hold_frozen_in, lora_settings
from lit_gpt5.loss import mean_loss
from lit_gpt5.model import GPT, GPTConfig
from lit_gpt5.optim import adamw_with_schedule, check_schedule, clip_gradients, fused_adamw_possible, lr_at
from lit_gpt5.resume import apply_policy_changes
from lit_gpt5.run_checks import check_model_args, check_run
from lit_gpt5.step import NonFiniteLossError, StepMean, check_step

log = get_logger(__name__)

__all__ = ["GPTLitModule", "NonFiniteLossError"]


class GPTLitModule(L.LightningModule):
    """GPT-2 trained with token-level cross-entropy.

    Works for both jobs of the project: batches are ``(x, y)`` with ``y`` = -100 where a token is not supervised
    (nowhere in pretraining, on the prompt in instruction tuning). The loss of an optimizer step is the mean over
    all supervised tokens of all its micro-batches on all ranks (``lit_gpt5.step.StepMean``), so gradient
    accumulation and data parallelism give the same gradient as one big batch.

    Args:
        model_name: a ``GPTConfig.from_name`` size; ``model5`` is GPT-2 small (124M).
        n_positions, n_layer, n_head, n_embd, dropout, bias: override single fields of the named size
            (``n_positions`` is ``GPTConfig.block_size``: the longest context the model can see).
        init_from: start from these weights (a Hugging Face GPT-2 directory or a lit_gpt5 ``.ckpt``); the
            architecture is theirs, so ``model_name`` and the sizes are not used. Only weights are loaded: the
            optimizer, the LR schedule and the step start fresh (``--ckpt_path`` resumes a run instead).
        learning_rate: peak learning rate, reached after ``warmup_steps``.
        min_lr: learning rate at the end of the cosine decay.
        warmup_steps: optimizer steps of linear warmup.
        lr_decay_steps: optimizer step at which the cosine reaches ``min_lr``; default: the Trainer's ``max_steps``.
        weight_decay: AdamW decoupled weight decay, applied to matrices and embeddings only (not biases, norms).
        beta1, beta2: AdamW betas; 0.95 (not 0.999) keeps large-batch GPT training stable.
        activation_checkpointing: recompute block activations in backward to save memory.
        loss_chunk_size: project to the vocabulary and take the cross-entropy this many positions at a time, so the
            loss never holds a (batch x T x 50,257) float32 logits tensor (``lit_gpt5.loss``); same loss and
            gradients. 0: the plain full-logits loss.
        compile: compile each transformer block with ``torch.compile`` on a GPU (training, evaluation and
            generation); the loss over the vocabulary stays eager (the chunked loss is one matmul and one softmax
            per chunk already). Ignored on a CPU, with a warning: torch 2.13's CPU compiler corrupts the heap on a
            GPT-2 block at some sequence lengths (33, 64) and gets a 50,257-way cross-entropy wrong (``-inf``).
            Off by default: compiling costs minutes.
        on_nonfinite: what a NaN/inf loss or gradient does. ``stop``: end the run before the bad update, naming the
            step and the checkpoint to resume from. ``skip``: that optimizer step makes no update; training goes on.
        lora_r: LoRA rank; 0 (the default) trains every weight. With r > 0 the base weights are frozen (and held in
            16 bits under mixed precision) and only low-rank adapters on ``lora_targets`` train (``lit_gpt5.lora``).
        lora_alpha, lora_dropout: the adapters' scale (alpha / r) and input dropout.
        lora_targets: which layers get adapters: ``c_attn`` (attention q, k, v), ``c_proj`` (attention and MLP
            outputs), ``c_fc`` (MLP input), default these three; and ``wte``, the token embedding and the output head
            tied to it (one adapter on the shared matrix): in a small model most weights are there.
    """

    unit_name = "supervised_tokens"  # what the loss of a step is the mean over (logged as train/<unit_name>)
    batch_kind = "tokens"  # the batches it trains on: (x, y); a data module that says otherwise is refused

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
        loss_chunk_size: int = 512,
        compile: bool = False,
        on_nonfinite: Literal["stop", "skip"] = "stop",
        lora_r: int = 0,
        lora_alpha: float = 16.0,
        lora_dropout: float = 0.0,
        lora_targets: list[str] | None = None,
    ) -> None:
        super().__init__()
        self.save_hyperparameters()
        check_schedule(learning_rate, min_lr, warmup_steps, lr_decay_steps)
        if not isinstance(loss_chunk_size, int) or loss_chunk_size < 0:
            raise UserError(f"--model.loss_chunk_size must be >= 0 (0: no chunking), got {loss_chunk_size!r}")
        if on_nonfinite not in ("stop", "skip"):
            raise UserError(f"on_nonfinite must be 'stop' or 'skip', got {on_nonfinite!r}")
        sizes = dict(block_size=n_positions, n_layer=n_layer, n_head=n_head, n_embd=n_embd, bias=bias)
        check_model_args(model_name, dropout, sizes, init_from)
        if init_from:
            self.model = self._load_weights(init_from, sizes, dropout)
        else:
            self.model = GPT(GPTConfig.from_name(model_name, dropout=dropout, **sizes))
        self.model.gradient_checkpointing = activation_checkpointing
        if lora_r:
            apply_lora(self.model, lora_r, lora_alpha, lora_dropout, tuple(lora_targets or TARGETS))
        self.step_mean = StepMean()
        self.eval_loss = torch.nn.ModuleDict({"val": MeanMetric(), "test": MeanMetric()})
        self.eval_loss_by_set = torch.nn.ModuleDict()  # one MeanMetric per held-out set, when there are several
        self.tokens_seen = 0
        self.skipped_steps = 0
        self.resumed_at: tuple[int, int] | None = None  # (step, global batches trained) of the checkpoint resumed
        self._rng_seed: int | None = None
        self._last_batch_shape = (0, 0)
        # The gradient norm of the current optimizer step, (step, norm), from on_before_optimizer_step (which
        # computes it while finishing the step's mean) for configure_gradient_clipping, which Lightning calls right
        # after it: its public signature carries no norm, and a second pass over every gradient would cost 2-3% of a
        # CPU step. Tagged with the step, so a norm is never used for any other step.
        self._grad_norm: tuple[int, torch.Tensor] | None = None

    @staticmethod
    def _load_weights(path: str, sizes: dict, dropout: float | None) -> GPT:
        """Weights only (no optimizer state, no step): the architecture is the checkpoint's own."""
        from lit_gpt5.checkpoints import load_model

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

    def loss_sum(
        self,
        x: torch.Tensor,
        y: torch.Tensor,
        input_pos: torch.Tensor | None = None,
        segments: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Sum of token losses over the supervised targets of a batch, and their number (``GPT.loss_sum``); a packed
        batch also gives its positions and segments."""
        self._last_batch_shape = tuple(x.shape)
        return self.model.loss_sum(x, y, self.hparams.loss_chunk_size, input_pos=input_pos, segments=segments)

    def prepare_data(self) -> None:
        # Checked here, before Lightning creates the run's log directory, so bad input leaves no empty run behind.
        check_run(self.trainer, self)

    def compile_blocks(self, device_type: str) -> bool:
        """Compile each transformer block in place (parameter names and checkpoints stay the eager model's) on a GPU;
        on a CPU say why not. Returns whether it compiled."""
        if device_type == "cpu":
            log.warning(
                "lit_gpt5: --model.compile is ignored on a CPU: torch's CPU compiler crashes or miscomputes GPT-2's "
                "blocks and loss at some sequence lengths (seen with torch 2.13); training runs eager"
            )
            return False
        for block in self.model.transformer.h:
            block.compile()
        return True

    def setup(self, stage: str) -> None:
        if self.hparams.lora_r:
            # Frozen weights in the autocast dtype: half their memory, and the very matmuls autocast would run.
            hold_frozen_in(self.model, str(self.trainer.precision))
        if self.hparams.compile and not getattr(self, "_blocks_compiled", False):
            self._blocks_compiled = self.compile_blocks(self.trainer.strategy.root_device.type)
        names = getattr(getattr(self.trainer, "datamodule", None), "val_set_names", [])
        if len(names) > 1 and not self.eval_loss_by_set:
            for name in names:
                self.eval_loss_by_set[name] = MeanMetric()

    def on_fit_start(self) -> None:
        if self._rng_seed is None:  # not restored from a checkpoint: the seed of this run (seed_everything)
            self._rng_seed = torch.initial_seed()
        if self.trainer.is_global_zero:
            from lit_gpt5.startup import describe_run

            log.info(describe_run(self.trainer, self))

    def seed_dropout(self, batch_idx: int) -> None:
        """Seed the global RNG from (run seed, rank, micro-batch index): dropout then depends on where in the run a
        micro-batch is, not on what drew random numbers before it, so a resumed run draws the same masks."""
        index = micro_batches_trained(self.trainer) + batch_idx % self.trainer.accumulate_grad_batches
        state = np.random.SeedSequence([self._rng_seed, self.global_rank, index]).generate_state(2, dtype=np.uint32)
        torch.manual_seed(int(state[0]) << 31 | int(state[1]) >> 1)

    def training_step(self, batch: tuple[torch.Tensor, ...], batch_idx: int) -> torch.Tensor:
        x, y, *packed = batch  # (x, y), or (x, y, positions, segments) of packed rows
        self.seed_dropout(batch_idx)
        loss_sum, supervised = self.loss_sum(x, y, *packed)
        return self.step_mean.add(loss_sum, supervised, x.numel())

    def on_before_optimizer_step(self, optimizer: torch.optim.Optimizer) -> None:
        # Runs once per optimizer step, after the last micro-batch's backward and before the Trainer clips.
        step = self.step_mean.finish(
            self.parameters(), self.trainer.strategy, self.trainer.accumulate_grad_batches, self.trainer.world_size
        )
        scaler_active = getattr(self.trainer.precision_plugin, "scaler", None) is not None
        self._grad_norm = None
        if not check_step(step, self.parameters(), self.hparams.on_nonfinite, self.global_step, scaler_active):
            self.skipped_steps += 1
            self.log("train/skipped_steps", float(self.skipped_steps))
        else:
            self._grad_norm = (self.global_step, step.grad_norm)
            self.log("train/loss", step.loss, prog_bar=True)
            self.log("train/grad_norm", step.grad_norm)  # before clipping: the Trainer clips after this hook
        self.tokens_seen += int(step.tokens)
        self.log(f"train/{self.unit_name}", step.units)
        self.log("train/tokens", float(self.tokens_seen))
        self.log("lr", optimizer.param_groups[0]["lr"])

    def validation_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int, dataloader_idx: int = 0):
        self._eval_step(batch, "val", dataloader_idx)

    def test_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int, dataloader_idx: int = 0):
        self._eval_step(batch, "test", dataloader_idx)

    def _eval_step(self, batch: tuple[torch.Tensor, torch.Tensor], stage: str, dataloader_idx: int) -> None:
        loss_sum, count = self.loss_sum(*batch)
        mean = mean_loss(loss_sum, count)
        self.eval_loss[stage].update(mean, weight=count)
        if self.eval_loss_by_set:
            list(self.eval_loss_by_set.values())[dataloader_idx].update(mean, weight=count)

    def eval_metrics(self, stage: str) -> dict[str, float]:
        """This evaluation's figures (``val`` or ``test``): token-weighted means, already reduced across ranks; the
        metrics are reset for the next evaluation."""
        metrics = {}
        for name, metric in [(f"{stage}/loss", self.eval_loss[stage])] + [
            (f"{stage}/loss/{set_name}", m) for set_name, m in self.eval_loss_by_set.items()
        ]:
            metrics[name] = metric.compute().item()
            metric.reset()
        metrics[f"{stage}/ppl"] = math.exp(min(metrics[f"{stage}/loss"], 50.0))
        return metrics

    # What the console line of each validation shows (None: every metric).
    reported_metrics: tuple[str, ...] | None = ("val/loss",)

    def report(self, metrics: dict[str, float]) -> None:
        """One line per validation on rank 0: ``step 100: val/loss 5.1234``."""
        if self.trainer.is_global_zero:
            shown = metrics if self.reported_metrics is None else {k: metrics[k] for k in self.reported_metrics}
            log.info(f"step {self.global_step}: " + ", ".join(f"{k} {v:.4f}" for k, v in shown.items()))

    def on_validation_epoch_end(self) -> None:
        metrics = self.eval_metrics("val")
        if self.trainer.sanity_checking:
            # A sanity check over the whole held-out split (num_sanity_val_steps=-1) is the starting model's figures:
            # the first point of every curve, at the current step.
            if math.isinf(self.trainer.num_sanity_val_steps) and self.trainer.is_global_zero:
                log_during_sanity_check(self.trainer, metrics)
                self.report(metrics)
            return
        for name, value in metrics.items():
            self.log(name, value, prog_bar=name == "val/loss", sync_dist=False)
        # Plot validation at the number of optimizer steps taken (100, 200, ...), not Lightning's last batch index.
        self.log("step", float(self.global_step))
        if self.trainer.state.fn != "validate":
            self.report(metrics)

    def on_test_epoch_end(self) -> None:
        for name, value in self.eval_metrics("test").items():
            self.log(name, value)

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        checkpoint["lit_gpt5"] = {
            "tokens_seen": self.tokens_seen,
            **self.step_mean.state_dict(),
            "rng_seed": self._rng_seed,
            "skipped_steps": self.skipped_steps,
            # Where the batch stream stands, so a resume with other accumulation continues it exactly.
            "global_batches": global_batches_trained(self.trainer),
            "accumulate_grad_batches": self.trainer.accumulate_grad_batches,
            # The architecture itself, so a checkpoint is usable without the arguments that built it.
            "model_config": asdict(self.config),
            "lora": lora_settings(self.model),
        }

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        from lit_gpt5.checkpoints import checkpoint_config

        theirs = checkpoint_config(checkpoint)
        for f in fields(theirs):
            if f.name != "dropout" and getattr(theirs, f.name) != getattr(self.config, f.name):
                raise UserError(
                    f"the checkpoint holds a model with {f.name}={getattr(theirs, f.name)}, but this run builds "
                    f"{f.name}={getattr(self.config, f.name)}; use the --model arguments of the run that saved it"
                )
        changed = apply_policy_changes(checkpoint, dict(self.hparams), self._lr_at)
        if changed and self.global_rank == 0:
            log.info(f"lit_gpt5: the restored optimizer and schedule now follow this run's {', '.join(changed)}")
        state = checkpoint.get("lit_gpt5", {})
        self.tokens_seen = state.get("tokens_seen", 0)
        self.step_mean.load_state_dict(state)
        self._rng_seed = state.get("rng_seed")
        self.skipped_steps = state.get("skipped_steps", 0)
        if "global_batches" in state:
            self.resumed_at = (checkpoint.get("global_step", 0), state["global_batches"])
        try:
            accumulate = self.trainer.accumulate_grad_batches
        except RuntimeError:  # loaded outside a Trainer (load_from_checkpoint): no loop to resume
            return
        if align_accumulation_window(checkpoint, accumulate) and self.global_rank == 0:
            log.info(f"lit_gpt5: the resumed run starts on a whole window of {accumulate} micro-batches per step")

    def decay_steps(self) -> int:
        """The optimizer step at which the cosine reaches ``min_lr``."""
        if self.hparams.lr_decay_steps is not None:
            return self.hparams.lr_decay_steps
        max_steps = self.trainer.max_steps
        if max_steps is None or max_steps < 0:
            raise UserError(
                f"--trainer.max_steps must be a positive number of optimizer steps, got {max_steps}: the cosine "
                "schedule needs an end (or give --model.lr_decay_steps)"
            )
        return max_steps

    def _lr_at(self, step: int) -> float:
        hp = self.hparams
        return lr_at(step, hp.learning_rate, hp.min_lr, hp.warmup_steps, self.decay_steps())

    def configure_optimizers(self):
        hp = self.hparams
        return adamw_with_schedule(
            self.parameters(),
            hp.learning_rate,
            hp.min_lr,
            hp.warmup_steps,
            self.decay_steps(),
            hp.weight_decay,
            (hp.beta1, hp.beta2),
            # One fused kernel for all parameters: several times faster than the per-tensor loop on GPU, and 3x on
            # CPU (GPT-2 small: 0.24 -> 0.07 s per step). transformers' Trainer defaults to it too.
            fused=fused_adamw_possible(self),
        )

    def configure_gradient_clipping(self, optimizer, gradient_clip_val=None, gradient_clip_algorithm=None) -> None:
        step, norm = self._grad_norm or (None, None)
        norm = norm if step == self.global_step else None
        clip_gradients(self, optimizer, gradient_clip_val, gradient_clip_algorithm, norm)
