"""Before a run starts: what cannot work is refused, and what will run is said.

``check_run`` runs in ``prepare_data``, before Lightning creates the run's folder, so a run that cannot work, or would
do nothing, leaves nothing behind (the model's own arguments were checked when it was built:
``lit_gpt5.training.settings``). ``describe_run`` is the start-up lines of ``fit``: the device and roughly how long
the run takes there, the precision in effect (and why, when ``auto`` chose it) and the estimated memory of this run's
training step per device, from the Trainer's and the modules' own settings.
"""

from __future__ import annotations

from lit_gpt5.compat import deepspeed_zero, fsdp_offloads_parameters, strategy_kind
from lit_gpt5.errors import UserError
from lit_gpt5.training.memory_estimate import PRECISIONS, GiB, estimate
from lit_gpt5.training.peak import run_length_note


def check_run(trainer, module) -> None:
    """The Trainer's and the data module's settings against the module that is about to train on them."""
    if trainer.state.fn == "fit":
        if trainer.max_steps == 0:
            raise UserError("--trainer.max_steps 0 trains nothing; give a positive number of optimizer steps")
        module.optimization.decay_steps(trainer)  # a schedule needs an end: max_steps or lr_decay_steps
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
    bound, vocab = getattr(datamodule, "token_id_bound", None), module.config.vocab_size
    if bound is not None and bound > vocab:
        # Otherwise an IndexError inside the embedding, once the run's folder exists.
        raise UserError(
            f"the data holds token ids up to {bound - 1:,}, but the model's vocabulary has {vocab:,} ids "
            f"(0 to {vocab - 1:,}); start from a model with the data's vocabulary, or tokenize the data with the "
            "model's tokenizer"
        )


def run_settings(trainer, module) -> dict | None:
    """The ``estimate`` arguments of a Lightning run (None when the data module does not say its batch shape)."""
    datamodule = getattr(trainer, "datamodule", None)
    block_size, batch_size = getattr(datamodule, "block_size", None), getattr(datamodule, "batch_size", None)
    if not block_size or not batch_size:
        return None
    strategy, cpu_offload = "ddp", False
    kind = strategy_kind(trainer.strategy)
    if kind == "fsdp":
        strategy, cpu_offload = "fsdp", fsdp_offloads_parameters(trainer.strategy)
    elif kind == "deepspeed":
        stage, cpu_offload = deepspeed_zero(trainer.strategy)
        strategy = "deepspeed_stage_3" if stage == 3 else "deepspeed_stage_2"
    precision = str(trainer.precision)
    return dict(
        model=module.config,
        block_size=min(block_size, module.config.block_size),
        micro_batch_size=batch_size,
        precision=precision if precision in PRECISIONS else "32-true",
        activation_checkpointing=module.model.gradient_checkpointing,
        strategy=strategy,
        devices=trainer.world_size,
        cpu_offload=cpu_offload,
        # ZeRO-3 gathers the output matrix only inside its module's forward: the loss falls back to full logits.
        loss_chunk_size=0 if strategy == "deepspeed_stage_3" else module.settings.loss_chunk_size,
        lora_r=module.settings.lora_r if strategy == "ddp" else 0,
    )


def describe_run(trainer, module) -> str:
    """The start of ``fit``: the device and, for a run of more than minutes, roughly how long it takes there
    (``lit_gpt5.training.peak``); then the precision in effect (and why, when ``auto`` chose it) and the estimated
    memory of this run's training step per device."""
    precision = getattr(trainer, "precision_note", None) or str(trainer.precision)
    settings = run_settings(trainer, module)
    if settings is None:
        return f"lit_gpt5: precision {precision}"
    return describe_device(trainer, module, settings) + "\n" + describe_memory(precision, settings)


def describe_device(trainer, module, settings: dict) -> str:
    """``lit_gpt5: training on cpu (no GPU found, 2 threads); 500 steps: roughly 110 min here (…)``."""
    import torch

    device = next(module.model.parameters()).device
    where = device.type
    if device.type == "cpu":
        where += f" ({'no GPU found, ' if not torch.cuda.is_available() else ''}{torch.get_num_threads()} threads)"
    elif device.type == "cuda":
        where += f" ({torch.cuda.get_device_name(device)} x{trainer.world_size})"
    steps = trainer.max_steps - trainer.global_step if trainer.max_steps and trainer.max_steps > 0 else 0
    tokens = settings["micro_batch_size"] * settings["block_size"] * trainer.accumulate_grad_batches
    length = run_length_note(module, trainer, tokens, settings["block_size"], steps, settings["micro_batch_size"])
    line = f"lit_gpt5: training on {where}" + (f"; {length}" if length else "")
    if length and device.type == "cpu":
        line += "; a run of minutes instead: --config configs/cpu-demo.yaml (a 7M-parameter GPT-2)"
    return line


def describe_memory(precision: str, settings: dict) -> str:
    """The precision and the estimated memory of this run's training step per device (``estimate``)."""
    est = estimate(**settings)
    parts = ", ".join(
        f"{k} {getattr(est, k) / GiB:.2f}" for k in ("params", "grads", "optimizer", "activations", "logits")
    )
    shape = f"micro-batch {settings['micro_batch_size']} x {settings['block_size']} tokens"
    return (
        f"lit_gpt5: precision {precision}; estimated memory per device: peak {est.peak / GiB:.2f} GiB ({parts}, "
        f"other {est.other / GiB:.2f} GiB; {settings['strategy']} x{settings['devices']}, {shape}, "
        f"{settings['precision']}); lit-gpt5 memory --help for what-ifs"
    )
