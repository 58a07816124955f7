"""Checks of a run's settings before anything is built or written: each a one-line error naming the fix.

``check_model_args`` runs before a model is built; ``check_run`` in ``prepare_data``, before Lightning creates the
run's folder, so a run that cannot work, or would do nothing, leaves nothing behind.
"""

from __future__ import annotations

from lit_gpt5.errors import UserError
from lit_gpt5.model import GPTConfig


def check_model_args(model_name: str, dropout: float | None, sizes: dict, init_from: str | None) -> None:
    """One-line errors for model arguments that cannot build a model (before anything is built or loaded)."""
    if dropout is not None and not 0.0 <= dropout < 1.0:
        raise UserError(f"--model.dropout must be in [0, 1), got {dropout}")
    for name in ("n_layer", "n_head", "n_embd", "block_size"):
        value = sizes[name]
        if value is not None and (not isinstance(value, int) or value <= 0):
            flag = "n_positions" if name == "block_size" else name
            raise UserError(f"--model.{flag} must be a positive integer, got {value!r}")
    if init_from:
        return
    config = GPTConfig.from_name(model_name)
    n_embd, n_head = sizes["n_embd"] or config.n_embd, sizes["n_head"] or config.n_head
    if n_embd % n_head:
        divisors = sorted(
            sorted((d for d in range(1, n_embd + 1) if n_embd % d == 0), key=lambda d: abs(d - n_head))[:3]
        )
        raise UserError(
            f"n_embd {n_embd} is not divisible by n_head {n_head} (model {model_name}); choose --model.n_head "
            f"among {', '.join(map(str, divisors))}, or change --model.n_embd"
        )


def check_run(trainer, module) -> None:
    """The Trainer's and the data module's settings against the module that is about to train on them."""
    if trainer.state.fn == "fit":
        if trainer.max_steps == 0:
            raise UserError("--trainer.max_steps 0 trains nothing; give a positive number of optimizer steps")
        module.decay_steps()  # a schedule needs an end: max_steps or lr_decay_steps
        interval = trainer.val_check_interval
        if isinstance(interval, int | float) and not isinstance(interval, bool) and interval <= 0:
            raise UserError(
                f"--trainer.val_check_interval must be a positive number of training batches, got {interval}; "
                "to train without validation pass --trainer.limit_val_batches 0"
            )
    if trainer.accumulate_grad_batches < 1:  # Lightning itself would fail later with a ZeroDivisionError
        raise UserError(f"accumulate_grad_batches must be a positive integer, got {trainer.accumulate_grad_batches}")
    datamodule = getattr(trainer, "datamodule", None)
    data_kind = getattr(datamodule, "batch_kind", None)
    if data_kind is not None and data_kind != module.batch_kind:
        wanted = {
            "pairs": "preference pairs (a PreferenceDataModule, e.g. GulliverPreferenceDataModule)",
            "tokens": "token batches (GutenbergDataModule, TokenWindowDataModule or SFTDataModule)",
            "prompts": "prompts (a PromptDataModule, e.g. the train_prompts.jsonl of lit-gpt5 reward pairs)",
        }
        raise UserError(
            f"{type(module).__name__} trains on {wanted[module.batch_kind]}, but the data module "
            f"{type(datamodule).__name__} gives {data_kind}; pass a matching --data (or the matching --model)"
        )
    data_block = getattr(datamodule, "block_size", None)
    if data_block is not None and data_block > module.config.block_size:
        raise UserError(
            f"data block_size {data_block} is larger than the model's {module.config.block_size} positions; "
            f"lower --data.block_size or raise --model.n_positions"
        )
