"""The start-up line of ``fit``: the precision in effect (and why, when ``auto`` chose it) and the estimated memory
of this run's training step per device, from the Trainer's and the modules' own settings."""

from __future__ import annotations

from lit_gpt5.compat import deepspeed_zero, fsdp_offloads_parameters, strategy_kind
from lit_gpt5.memory import PRECISIONS, GiB, estimate


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
        loss_chunk_size=0 if strategy == "deepspeed_stage_3" else getattr(module.hparams, "loss_chunk_size", 0),
        lora_r=getattr(module.hparams, "lora_r", 0) if strategy == "ddp" else 0,
    )


def describe_run(trainer, module) -> str:
    """One line for the start of ``fit``: the precision in effect (and why, when ``auto`` chose it) and the estimated
    memory of this run's training step per device."""
    precision = getattr(trainer, "precision_note", None) or str(trainer.precision)
    settings = run_settings(trainer, module)
    if settings is None:
        return f"lit_gpt5: precision {precision}"
    est = estimate(**settings)
    parts = ", ".join(
        f"{k} {getattr(est, k) / GiB:.2f}" for k in ("params", "grads", "optimizer", "activations", "logits")
    )
    shape = f"micro-batch {settings['micro_batch_size']} x {settings['block_size']} tokens"
    return (
        f"lit_gpt5: precision {precision}; estimated memory per device: peak {est.peak / GiB:.2f} GiB ({parts}, "
        f"other {est.other / GiB:.2f} GiB; {settings['strategy']} x{settings['devices']}, {shape}, "
        f"{settings['precision']}); python -m lit_gpt5.memory --help for what-ifs"
    )
