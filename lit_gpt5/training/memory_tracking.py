"""Measuring a training step's memory without a GPU: PyTorch's memory tracker on fake tensors.

PyTorch's ``MemTracker`` (private: reached through ``lit_gpt5.compat``) follows every tensor a real training step
of the real model allocates and frees, while ``FakeTensorMode`` makes those tensors shapes only: a GPT-2 XL step is
"measured" in seconds on a laptop. ``FSDPMemTracker`` does the same for one rank of an FSDP2 (``fully_shard``) run,
with a fake process group standing in for the other ranks. Allocations are rounded to 512 bytes, as CUDA's caching
allocator does.

The step measured: ``GPT`` built from the config (dropout 0), fused AdamW, forward under ``torch.autocast(bfloat16)``
for ``bf16-mixed`` (for FSDP: ``MixedPrecisionPolicy(param_dtype=bfloat16)``, as FSDP runs), the loss as
``GPTLitModule`` computes it, backward, ``optimizer.step()``, ``zero_grad(set_to_none=True)``. Its optimizer state
exists already, as in every step after the first: it is allocated first by a step on zero gradients, which leaves
behind exactly what a first real step would (the moments), and takes a fraction of the time.
"""

from __future__ import annotations

import torch

from lit_gpt5.compat import (
    fake_process_group_store,
    fake_tensor_mode,
    fsdp_memory_tracker,
    memory_tracker,
)
from lit_gpt5.model.gpt import GPT, GPTConfig
from lit_gpt5.model.lora import TARGETS as LORA_TARGETS
from lit_gpt5.model.lora import apply_lora, hold_frozen_in
from lit_gpt5.training.memory_estimate import DEFAULT_LOSS_CHUNK


class _GPTWithLoss(torch.nn.Module):
    """The model and its loss in one forward, as a LightningModule's training step runs inside the root FSDP unit."""

    def __init__(self, gpt: GPT, loss_chunk_size: int) -> None:
        super().__init__()
        self.gpt, self.loss_chunk_size = gpt, loss_chunk_size

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        # One softmax pass per chunk, as on a GPU (the estimate's device); a CPU works through a chunk in blocks.
        total, count = self.gpt.loss_sum(x, y, self.loss_chunk_size, softmax_rows=self.loss_chunk_size or None)
        return total / count


def tracked_peak(
    model: str | GPTConfig,
    block_size: int,
    micro_batch_size: int,
    precision: str = "bf16-mixed",
    activation_checkpointing: bool = False,
    loss_chunk_size: int = DEFAULT_LOSS_CHUNK,
    fsdp_ranks: int = 0,
    lora_r: int = 0,
    lora_targets: tuple[str, ...] = LORA_TARGETS,
) -> int:
    """Peak bytes of one training step, tracked on fake tensors; ``fsdp_ranks`` > 0: on one of that many FSDP ranks;
    ``lora_r`` > 0: LoRA of that rank on ``lora_targets``, as ``GPTLitModule(lora_r=...)`` trains (frozen weights
    held in bf16 under ``bf16-mixed``, AdamW over the adapters only)."""
    if precision not in ("bf16-mixed", "32-true"):
        raise ValueError(f"tracked precisions are bf16-mixed and 32-true, got {precision}")
    cfg = GPTConfig.from_name(model) if isinstance(model, str) else model
    cfg = GPTConfig(**{**cfg.__dict__, "dropout": 0.0})
    mesh, own_group = _fake_mesh(fsdp_ranks) if fsdp_ranks else (None, False)
    try:
        with fake_tensor_mode():
            gpt = GPT(cfg)
            gpt.gradient_checkpointing = activation_checkpointing
            if lora_r:
                apply_lora(gpt, lora_r, targets=lora_targets)
                hold_frozen_in(gpt, precision)
            step_model = _GPTWithLoss(gpt, loss_chunk_size)
            autocast = precision == "bf16-mixed"
            if mesh is not None:
                from torch.distributed.fsdp import MixedPrecisionPolicy, fully_shard

                policy = MixedPrecisionPolicy(
                    param_dtype=torch.bfloat16 if autocast else None, reduce_dtype=torch.float32
                )
                for block in gpt.transformer.h:
                    fully_shard(block, mesh=mesh, mp_policy=policy)
                fully_shard(step_model, mesh=mesh, mp_policy=policy)
                autocast = False  # FSDP's mixed precision casts the gathered parameters itself
            trainable = [p for p in step_model.parameters() if p.requires_grad]
            optimizer = torch.optim.AdamW(trainable, lr=1e-4, fused=True)
            for p in trainable:
                p.grad = torch.zeros_like(p)
            optimizer.step()  # allocates the moments, as a first step would
            optimizer.zero_grad(set_to_none=True)
            x = torch.randint(0, cfg.vocab_size, (micro_batch_size, block_size))
            y = torch.randint(0, cfg.vocab_size, (micro_batch_size, block_size))
            tracker = _tracker(step_model, optimizer, (x, y), mesh is not None)
            with tracker:
                with torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast):
                    loss = step_model(x, y)
                loss.backward()
                optimizer.step()
                optimizer.zero_grad(set_to_none=True)
            (snapshot,) = tracker.get_tracker_snapshot("peak").values()
    finally:
        if own_group:  # a process group left behind would make later code in this process think it is distributed
            torch.distributed.destroy_process_group()
    return int(snapshot["Total"])


def _tracker(model, optimizer, inputs, fsdp: bool):
    if fsdp:
        tracker = fsdp_memory_tracker(model, optimizer)
        tracker.track_inputs(inputs)
        return tracker
    tracker = memory_tracker()
    tracker.track_external(model, optimizer, *inputs)
    return tracker


def _fake_mesh(ranks: int):
    """A device mesh of ``ranks`` CPU ranks over PyTorch's fake process group (collectives do nothing), and whether
    the group was created here (the caller then destroys it)."""
    import torch.distributed as dist
    from torch.distributed.device_mesh import init_device_mesh

    if dist.is_initialized():
        if dist.get_backend() != "fake" or dist.get_world_size() != ranks:
            raise RuntimeError("tracking an FSDP step needs a fake process group: run it outside a distributed run")
        return init_device_mesh("cpu", (ranks,)), False
    dist.init_process_group("fake", rank=0, world_size=ranks, store=fake_process_group_store())
    return init_device_mesh("cpu", (ranks,)), True
