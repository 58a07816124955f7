"""``RunState``: what a run has done beyond its weights, its optimizer and Lightning's loop counters, saved in every
checkpoint and restored on resume, and the one object the rest of the package asks where a run stands.

A checkpoint of this package holds, under ``checkpoint["lit_gpt5"]``:

* the architecture (``model_config``, ``lora``), so its weights are usable without the arguments that built them;
* the data position: the global batches trained (all ranks, all micro-batches) and the accumulation they were
  trained with, so a run resumed with other ranks or other accumulation continues the very same batch stream
  (``lit_gpt5.data.streams``);
* the run's seed, from which every dropout mask and every on-policy sample is derived by where in the run it is
  (``seed_for``), so a resumed run draws what the uninterrupted one would have;
* the counters (``tokens_seen``, ``skipped_steps``) and the state of the parts that asked to be saved with it
  (``add``): the step mean's reference count, DPO's precomputed reference log-probabilities.

``restore`` puts all of it back and makes the run's own arguments take effect: it refuses another architecture,
applies a changed learning rate, schedule, weight decay or betas to the restored optimizer and scheduler
(``lit_gpt5.resume.arguments.apply_policy_changes``), and patches Lightning's loop counters so that the first resumed
step accumulates a whole window of micro-batches (``lit_gpt5.compat``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, fields
from typing import Protocol

import lightning as L
import numpy as np
import torch

from lit_gpt5.compat import align_accumulation_window
from lit_gpt5.errors import UserError
from lit_gpt5.log import get_logger
from lit_gpt5.model.gpt import GPT
from lit_gpt5.model.lora import lora_settings
from lit_gpt5.resume.arguments import apply_policy_changes
from lit_gpt5.weights.checkpoints import checkpoint_config

log = get_logger(__name__)

KEY = "lit_gpt5"  # where a checkpoint holds the run state


class Stateful(Protocol):
    """A part whose state is saved with the run state: ``state_dict`` gives flat keys of its own."""

    def state_dict(self) -> dict: ...

    def load_state_dict(self, state: dict) -> None: ...


class RunState:
    """Where a run stands, beyond weights and optimizer: held by every LightningModule of the package as
    ``run_state``, saved in its checkpoints, restored from them (see the module docstring)."""

    def __init__(self) -> None:
        self.rng_seed: int | None = None  # the run's seed: every dropout mask and rollout is derived from it
        self.tokens_seen = 0  # input tokens of every optimizer step so far, all ranks
        self.skipped_steps = 0  # optimizer steps dropped by on_nonfinite=skip
        # (global step, global batches trained) of the checkpoint this run resumed from; None for a fresh run.
        self.resumed_at: tuple[int, int] | None = None
        self.parts: list[Stateful] = []

    def add(self, part: Stateful) -> None:
        """Save ``part``'s state with the run's (its keys beside the run state's own) and restore it on resume."""
        self.parts.append(part)

    # --- where the run is ---------------------------------------------------------------------------------------

    def global_batches_trained(self, trainer: L.Trainer) -> int:
        """Global batches (all ranks together) trained before the current optimizer step, counted from where a
        resumed run's checkpoint left off: a run resumed with other accumulation or ranks continues the same stream."""
        per_step = trainer.accumulate_grad_batches * trainer.world_size
        if self.resumed_at is None:
            return trainer.global_step * per_step
        step, done = self.resumed_at
        return done + (trainer.global_step - step) * per_step

    def micro_batch_index(self, trainer: L.Trainer, batch_idx: int) -> int:
        """The index, in this rank's stream, of the micro-batch ``batch_idx`` of the current optimizer step."""
        return micro_batches_trained(trainer) + batch_idx % trainer.accumulate_grad_batches

    def begin(self) -> None:
        """At the start of ``fit``: a run not restored from a checkpoint takes its seed (``seed_everything``'s)."""
        if self.rng_seed is None:
            self.rng_seed = torch.initial_seed()

    def seed_for(self, *where: int) -> int:
        """A 63-bit seed for a place in the run (rank, micro-batch index, ...): a pure function of the run's seed and
        ``where``, so a resumed run gets the seeds the uninterrupted one did."""
        if self.rng_seed is None:
            raise RuntimeError("RunState.seed_for before begin(): the run's seed is not known yet")
        state = np.random.SeedSequence([self.rng_seed, *where]).generate_state(2, dtype=np.uint32)
        return int(state[0]) << 31 | int(state[1]) >> 1

    def seed_dropout(self, trainer: L.Trainer, batch_idx: int) -> None:
        """Seed the global RNG from (run seed, rank, micro-batch index): dropout then depends on where in the run a
        micro-batch is, not on what drew random numbers before it, so a resumed run draws the same masks."""
        torch.manual_seed(self.seed_for(trainer.global_rank, self.micro_batch_index(trainer, batch_idx)))

    def count_step(self, tokens: int, skipped: bool) -> None:
        """An optimizer step happened: ``tokens`` input tokens (all ranks), skipped or not."""
        self.tokens_seen += int(tokens)
        self.skipped_steps += int(skipped)

    # --- checkpoints ----------------------------------------------------------------------------------------------

    def save(self, checkpoint: dict, trainer: L.Trainer, model: GPT) -> None:
        """Write the run state into a checkpoint being saved (``on_save_checkpoint``)."""
        state = {"tokens_seen": self.tokens_seen}
        for part in self.parts:
            state.update(part.state_dict())
        state.update(
            rng_seed=self.rng_seed,
            skipped_steps=self.skipped_steps,
            # Where the batch stream stands, so a resume with other accumulation continues it exactly.
            global_batches=self.global_batches_trained(trainer),
            accumulate_grad_batches=trainer.accumulate_grad_batches,
            # The architecture itself, so a checkpoint is usable without the arguments that built it.
            model_config=asdict(model.config),
            lora=lora_settings(model),
        )
        checkpoint[KEY] = state

    def restore(
        self,
        checkpoint: dict,
        model: GPT,
        hparams: dict,
        schedule: Callable[[L.Trainer], Callable[[int], float]],
        trainer: L.Trainer | None,
    ) -> None:
        """Put a checkpoint's run state back (``on_load_checkpoint``), making this run's arguments take effect.

        ``hparams``: this run's arguments; ``schedule(trainer)``: this run's learning rate at each optimizer step
        (``Optimization.schedule``); ``trainer``: None when the checkpoint is loaded outside a Trainer
        (``load_from_checkpoint``): there is no optimizer or loop to restore then."""
        theirs = checkpoint_config(checkpoint)
        for f in fields(theirs):
            if f.name != "dropout" and getattr(theirs, f.name) != getattr(model.config, f.name):
                raise UserError(
                    f"the checkpoint holds a model with {f.name}={getattr(theirs, f.name)}, but this run builds "
                    f"{f.name}={getattr(model.config, f.name)}; use the --model arguments of the run that saved it"
                )
        rank_zero = trainer is None or trainer.global_rank == 0
        if trainer is not None:
            changed = apply_policy_changes(checkpoint, hparams, lambda step: schedule(trainer)(step))
            if changed and rank_zero:
                log.info(f"lit_gpt5: the restored optimizer and schedule now follow this run's {', '.join(changed)}")
        state = checkpoint.get(KEY) or {}
        self.tokens_seen = state.get("tokens_seen", 0)
        self.rng_seed = state.get("rng_seed")
        self.skipped_steps = state.get("skipped_steps", 0)
        for part in self.parts:
            part.load_state_dict(state)
        if "global_batches" in state:
            self.resumed_at = (checkpoint.get("global_step", 0), state["global_batches"])
        if trainer is None:
            return
        accumulate = trainer.accumulate_grad_batches
        if align_accumulation_window(checkpoint, accumulate) and rank_zero:
            log.info(f"lit_gpt5: the resumed run starts on a whole window of {accumulate} micro-batches per step")


def run_state(trainer: L.Trainer | None) -> RunState | None:
    """The run state of the LightningModule a Trainer runs (None without one, or for a module of your own)."""
    module = getattr(trainer, "lightning_module", None) if trainer is not None else None
    state = getattr(module, "run_state", None)
    return state if isinstance(state, RunState) else None


def global_batches_trained(trainer: L.Trainer | None) -> int:
    """Global batches (all ranks together) the run has trained before the current optimizer step: what the batch
    stream of every data module of the package continues after. A module of your own without a ``RunState`` counts
    ``global_step x accumulate_grad_batches x world_size`` (exact unless it was resumed with other settings)."""
    if trainer is None:
        return 0
    state = run_state(trainer)
    if state is not None:
        return state.global_batches_trained(trainer)
    return trainer.global_step * trainer.accumulate_grad_batches * trainer.world_size


def micro_batches_trained(trainer: L.Trainer) -> int:
    """Micro-batches this rank has trained before the current optimizer step (``global_batches_trained`` over the
    ranks; exact unless the number of ranks changed on resume)."""
    return global_batches_trained(trainer) // trainer.world_size
