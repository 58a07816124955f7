"""Sharded training set up from a config: FSDP with the transformer ``Block`` as the unit.

DeepSpeed needs nothing of ours: ``strategy: deepspeed_stage_2`` (or ``deepspeed_stage_3``, ``…_offload``) or
Lightning's ``DeepSpeedStrategy`` with its own arguments, after ``pip install ".[deepspeed]"``.
"""

from __future__ import annotations

from typing import Literal

from lightning.pytorch.strategies import FSDPStrategy

from lit_gpt5.model.gpt import Block


class BlockFSDPStrategy(FSDPStrategy):
    """Lightning's FSDP with each GPT-2 ``Block`` as one sharding unit, and a config's choices as flat arguments.

    Args:
        activation_checkpointing: recompute each block in backward (FSDP's own checkpoint wrapper around each
            ``Block``; leave the model's ``--model.activation_checkpointing`` off then).
        cpu_offload: keep the parameter and gradient shards (and so the optimizer step) in CPU memory.
        sharding_strategy: ``FULL_SHARD`` (ZeRO-3: parameters, gradients and optimizer state sharded),
            ``SHARD_GRAD_OP`` (ZeRO-2), ``HYBRID_SHARD`` (full shard within a node, replicas across nodes),
            ``NO_SHARD`` (DDP).
        state_dict_type: ``sharded`` (each rank writes its shard: fast, for resuming; the default) or ``full``
            (one file; gathered on rank 0, which needs the whole model in its CPU memory).
    """

    def __init__(
        self,
        activation_checkpointing: bool = False,
        cpu_offload: bool = False,
        sharding_strategy: Literal["FULL_SHARD", "SHARD_GRAD_OP", "HYBRID_SHARD", "NO_SHARD"] = "FULL_SHARD",
        state_dict_type: Literal["full", "sharded"] = "sharded",
    ) -> None:
        super().__init__(
            auto_wrap_policy={Block},
            activation_checkpointing_policy={Block} if activation_checkpointing else None,
            cpu_offload=cpu_offload,
            sharding_strategy=sharding_strategy,
            state_dict_type=state_dict_type,
        )
