"""Every use of another library's internals, each behind a named function: the one file to read on an upgrade.

Lightning, PyTorch and tiktoken keep these names private or undocumented, so a new release may move or remove them
without notice. ``tests/test_compat.py`` pins each one by name, so an upgrade that breaks one fails there, loudly,
instead of silently somewhere in a training run. Nothing else in the package reaches past a library's public API.
Imports of heavy or optional modules happen inside the functions: importing this module costs nothing.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Literal

if TYPE_CHECKING:
    import torch

StrategyKind = Literal["single", "ddp", "fsdp", "deepspeed", "other"]

# --- Lightning ---------------------------------------------------------------------------------------------------


class CheckpointArgumentsKept:
    """A LightningCLI mixin that turns off ``LightningCLI._parse_ckpt_path``.

    Lightning's private hook overwrites every ``--model.*`` argument with the checkpoint's hyperparameters when
    ``--ckpt_path`` is given, so a resumed run would silently ignore a new learning rate. ``lit_gpt5.resume.arguments``
    does that merge itself, with the command line winning (called from ``GPT5CLI.parse_arguments``)."""

    def _parse_ckpt_path(self) -> None:
        return None


def lightning_precision_type():
    """The type of ``Trainer(precision=...)``: every value Lightning accepts (its private ``_PRECISION_INPUT``). A
    Lightning that moved it still imports and runs: the type is then any string or number (Lightning checks the value
    itself), and ``tests/test_compat.py`` fails to say it moved."""
    try:
        from lightning.fabric.connector import _PRECISION_INPUT
    except ImportError:
        return str | int
    return _PRECISION_INPUT


def set_available_flops(monitor, flops: float) -> None:
    """Give Lightning's ``ThroughputMonitor`` (after its ``setup``) the device's peak FLOP/s, which it looks up only
    for GPUs it knows: its per-stage ``Throughput`` objects live in the private ``_throughputs``. With it,
    ``train/device/mfu`` is logged on a CPU too."""
    monitor.available_flops = flops
    for throughput in monitor._throughputs.values():
        throughput.available_flops = flops


def completed_micro_batches(trainer) -> int:
    """Training micro-batches completed in this run so far (Lightning's fit loop progress counter)."""
    return trainer.fit_loop.epoch_loop.batch_progress.current.completed


def validation_due(trainer) -> bool:
    """Whether the fit loop runs a validation after the current training batch (Lightning's own decision)."""
    loop = trainer.fit_loop
    return bool(loop.epoch_loop._should_check_val_fx(loop._data_fetcher))


def mark_validation_pending(checkpoint: dict) -> None:
    """Make a checkpoint's fit-loop state say "stopped in the middle of a validation".

    Lightning resumes such a checkpoint by running that validation again, from its first batch, before training on.
    A checkpoint saved after a training step whose validation had not finished (saved at the step, or while the
    validation ran) otherwise resumes by skipping that validation: its loss would be missing from the curves."""
    progress = checkpoint["loops"]["fit_loop"]["epoch_loop.val_loop.batch_progress"]
    for part in ("total", "current"):
        done = progress[part]["completed"]
        progress[part].update(ready=done + 1, started=done + 1, processed=done, completed=done)


def end_of_run_logger_step(checkpoint: dict) -> None:
    """Make a checkpoint saved at the end of a run resume with the logger's step where an uninterrupted run has it.

    Lightning counts the steps its loggers see in ``_batches_that_stepped``, raised after a step's validation. It
    expects a checkpoint whose last step was validated to be saved at that validation's end, before the raise, and
    raises the count again on resume. A checkpoint written at the end of training (after the raise) would resume one
    step ahead: every curve of the extended run would be drawn one step to the right."""
    checkpoint["loops"]["fit_loop"]["epoch_loop.state_dict"]["_batches_that_stepped"] -= 1


def align_accumulation_window(checkpoint: dict, accumulate: int) -> bool:
    """Make a checkpoint's fit-loop micro-batch counters a multiple of this run's ``accumulate_grad_batches``.

    Lightning steps the optimizer when its count of micro-batches in the epoch is a multiple of the accumulation; a
    run saved with another accumulation or another number of ranks (3 micro-batches per rank after 3 steps on 2 ranks)
    and resumed with 2 micro-batches a step would take its first optimizer step after one micro-batch: half a
    gradient. Rounding the counters down starts the resumed run on a whole accumulation window (the batch stream
    itself is positioned by ``lit_gpt5.resume.state.RunState``, not by these counters). Returns whether anything
    changed."""
    progress = checkpoint.get("loops", {}).get("fit_loop", {}).get("epoch_loop.batch_progress")
    if progress is None:
        return False
    current = progress["current"]
    # A checkpoint saved in a batch-end hook (ModelCheckpoint's periodic saves) holds completed = processed - 1;
    # Lightning counts that batch as completed when it resumes, so the window is judged on the count it will use.
    at_batch_end = current["ready"] == current["started"] == current["processed"] == current["completed"] + 1
    excess = (current["completed"] + at_batch_end) % accumulate
    if excess == 0:
        return False
    for part in ("total", "current"):  # every counter moves by the same amount: the saved stage is kept
        for counter in ("ready", "started", "processed", "completed"):
            progress[part][counter] -= excess
    return True


def strategy_kind(strategy) -> StrategyKind:
    """What a Lightning strategy does with the model, by its (public) class rather than by its class name."""
    from lightning.pytorch.strategies import DDPStrategy, DeepSpeedStrategy, FSDPStrategy, SingleDeviceStrategy

    if isinstance(strategy, DeepSpeedStrategy):  # a DDPStrategy subclass: tested first
        return "deepspeed"
    if isinstance(strategy, FSDPStrategy):
        return "fsdp"
    if isinstance(strategy, DDPStrategy):
        return "ddp"
    if isinstance(strategy, SingleDeviceStrategy):
        return "single"
    return "other"


def deepspeed_zero(strategy) -> tuple[int, bool]:
    """(ZeRO stage, optimizer offloaded to the CPU) of a Lightning ``DeepSpeedStrategy``, read from its config."""
    zero = (getattr(strategy, "config", None) or {}).get("zero_optimization", {})
    return int(zero.get("stage", 0)), bool(zero.get("offload_optimizer"))


def fsdp_offloads_parameters(strategy) -> bool:
    """Whether a Lightning ``FSDPStrategy`` keeps parameter shards in CPU memory."""
    return bool(getattr(getattr(strategy, "cpu_offload", None), "offload_params", False))


def log_during_sanity_check(trainer, metrics: dict[str, float]) -> None:
    """Send ``metrics`` to the loggers at the current step while Lightning runs its sanity check.

    Lightning drops whatever ``self.log`` records during the sanity check (pinned by a test). With
    ``num_sanity_val_steps=-1`` that check covers the whole held-out split, so its result is the untrained model's
    loss at step 0: the first point of every curve, which would otherwise be lost."""
    for logger in trainer.loggers:
        logger.log_metrics(metrics, step=trainer.global_step)


def set_scheduler_last_lr(scheduler_state: dict, lrs: Sequence[float]) -> None:
    """Overwrite the learning rates a saved ``LRScheduler`` state reports (``get_last_lr()`` after loading)."""
    scheduler_state["_last_lr"] = list(lrs)


# --- PyTorch -----------------------------------------------------------------------------------------------------


def scale_(tensors: list[torch.Tensor], factor: float) -> None:
    """``t *= factor`` for every tensor, in one fused call where PyTorch has one."""
    import torch

    torch._foreach_mul_(tensors, factor)


def norms(tensors: list[torch.Tensor]) -> list[torch.Tensor]:
    """The 2-norm of every tensor, in one fused call where PyTorch has one."""
    import torch

    return list(torch._foreach_norm(tensors))


def softmax_backward(grad: torch.Tensor, output: torch.Tensor, dim: int) -> torch.Tensor:
    """d(loss)/d(input) of ``output = softmax(input, dim)`` given d(loss)/d(output): ``output * (grad - sum(grad *
    output, dim))`` in one kernel, accumulated in float32 for 16-bit tensors (as autograd's own softmax backward)."""
    import torch

    return torch._softmax_backward_data(grad, output, dim, output.dtype)


def cpu_has_native_bf16() -> bool:
    """Whether oneDNN computes bfloat16 matmuls natively on this CPU (AVX-512 BF16 or AMX). Without it PyTorch falls
    back to a reference GEMM an order of magnitude slower than float32. ``ONEDNN_MAX_CPU_ISA=AVX2`` makes it
    answer as an AVX2-only CPU would."""
    import torch

    return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())


def fake_tensor_mode():
    """A ``FakeTensorMode``: tensors with shapes and dtypes but no storage."""
    from torch._subclasses.fake_tensor import FakeTensorMode

    return FakeTensorMode()


def memory_tracker():
    """PyTorch's ``MemTracker``: follows every tensor a module's step allocates and frees. Its per-parameter gradient
    hooks are left out: torch 2.13 registers one on every parameter, which fails for a frozen one (LoRA); they only
    label gradients by category, and the peak (``Total``) counts every tensor allocated either way."""
    from torch.distributed._tools.mem_tracker import MemTracker

    class Tracker(MemTracker):
        def _track_module_params_and_buffers(self, module, install_grad_hooks: bool = True):
            return super()._track_module_params_and_buffers(module, install_grad_hooks=False)

    return Tracker()


def fsdp_memory_tracker(model: torch.nn.Module, optimizer: torch.optim.Optimizer):
    """PyTorch's ``FSDPMemTracker`` for a ``fully_shard``-ed model: one rank's view of an FSDP2 step."""
    from torch.distributed._tools.fsdp2_mem_tracker import FSDPMemTracker

    return FSDPMemTracker(model, optimizer)


def fake_process_group_store():
    """The store of PyTorch's test-only ``fake`` process group, whose collectives do nothing: simulated ranks."""
    from torch.testing._internal.distributed.fake_pg import FakeStore

    return FakeStore()


# --- tiktoken ------------------------------------------------------------------------------------------------------


def r50k_split_pattern() -> str:
    """The pre-tokenization regex of OpenAI's r50k (GPT-2) encoding, as the installed tiktoken defines it."""
    from tiktoken_ext.openai_public import r50k_pat_str

    return r50k_pat_str
