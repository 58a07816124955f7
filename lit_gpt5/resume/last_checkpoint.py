"""``last.ckpt``, always resumable: saved every N steps, at the end, and when Ctrl-C or SIGTERM stops the run at an
optimizer-step boundary (on every rank together). What a checkpoint holds is ``lit_gpt5.resume.state``'s; how a file is
written, ``lit_gpt5.weights.checkpoint_io``'s.
"""

from __future__ import annotations

import signal
import threading
from pathlib import Path
from typing import Any

import lightning as L
import torch
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.utilities.exceptions import SIGTERMException

from lit_gpt5.compat import completed_micro_batches, end_of_run_logger_step, mark_validation_pending, validation_due
from lit_gpt5.errors import NonFiniteLossError
from lit_gpt5.log import get_logger
from lit_gpt5.weights.checkpoint_io import CheckpointWriteError

log = get_logger(__name__)


class ResumableCheckpoint(ModelCheckpoint):
    """``last.ckpt``, always resumable: every ``every_n_train_steps``, at the end of training, and when a run stops.

    A ``ModelCheckpoint`` that saves no "best" files (``save_top_k=0``; ``BestCheckpoint`` keeps those), plus what
    resuming needs:

    * It saves at the end of training even when the last step is not a multiple of ``every_n_train_steps``.
    * It saves when an exception ends ``fit`` (a non-finite loss before the bad update, a crash) if the run is at
      an optimizer-step boundary; inside an accumulated step it keeps the last boundary checkpoint instead (see
      ``saves_on_exception``), and names it in a non-finite-loss error.
    * Ctrl-C (SIGINT) and SIGTERM (a preempted job) stop the run at the end of the current optimizer step, then
      save: never inside a step, where Lightning's own handling can stop (mid-update for Ctrl-C, between the
      micro-batches of an accumulated step for SIGTERM), which a resume cannot continue exactly. A signal that
      reaches only one process of a multi-process run stops all of them at the same step. A second Ctrl-C stops at
      once. SIGTERM exits with status 143, SIGINT with 1.

    Resume with ``--ckpt_path <dir>/last.ckpt``: the stream of batches, the optimizer, the LR schedule and the
    dropout randomness continue exactly where they stopped.
    """

    def __init__(
        self, dirpath: str | None = None, every_n_train_steps: int = 50, filename: str = "interrupted-step{step:05d}"
    ) -> None:
        super().__init__(
            dirpath=dirpath,
            filename=filename,
            every_n_train_steps=every_n_train_steps,
            save_top_k=0,
            save_last=True,
            save_on_exception=True,
            auto_insert_metric_name=False,
        )
        self.every_n_steps = every_n_train_steps
        self._stop_signal: int | None = None
        self._previous_handlers: dict[int, Any] = {}
        self._training = False
        self._val_batches_seen = self._val_batches_everywhere = 0
        self._validated_step: int | None = None  # the step whose validation last finished
        self._pending_step: int | None = None  # the step of the last checkpoint saved with its validation pending
        self._saving_at_the_end = False

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        super().on_train_start(trainer, pl_module)
        self._stop_signal = None
        self._training = True
        if threading.current_thread() is threading.main_thread():
            # Installed after Lightning's own SIGTERM handler, which this replaces for the duration of training.
            for signum in (signal.SIGINT, signal.SIGTERM):
                self._previous_handlers[signum] = signal.signal(signum, self._on_signal)

    def _on_signal(self, signum: int, frame) -> None:
        if self._stop_signal is not None and signum == signal.SIGINT:
            raise KeyboardInterrupt
        self._stop_signal = signum
        name = "Ctrl-C" if signum == signal.SIGINT else "SIGTERM"
        log.warning(
            f"\n{name}: finishing this optimizer step (or validation batch), then saving a checkpoint "
            "(Ctrl-C again to stop at once)"
        )

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, outputs, batch, batch_idx) -> None:
        super().on_train_batch_end(trainer, pl_module, outputs, batch, batch_idx)
        if (batch_idx + 1) % trainer.accumulate_grad_batches:
            return  # inside an accumulated step
        # Every rank asks at every step boundary, so a signal that reached one process stops them all here.
        self._stop_if_asked(trainer, pl_module)

    def _stop_if_asked(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        """Raise the requested stop, on every rank together; Lightning turns it into on_exception (which saves)."""
        stop = self._stop_signal or 0
        if trainer.world_size > 1:
            stop = int(trainer.strategy.reduce(torch.tensor(stop, device=pl_module.device), reduce_op="max").item())
        if stop:
            self._stop_signal = stop
            if stop == signal.SIGTERM:
                raise SIGTERMException()
            raise KeyboardInterrupt("stopped by Ctrl-C")

    # A stop requested during a validation is taken at its next batch, not at its end: a long held-out set (or a
    # slow CPU) would otherwise use up a cluster's 30-90 s of grace. The weights are those of the last completed
    # optimizer step, and the checkpoint records the validation as interrupted, so a resumed run runs it again.

    def on_validation_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._val_batches_seen = 0
        self._val_batches_everywhere = 0
        if not self._training or trainer.sanity_checking:
            return
        if trainer.world_size == 1:
            self._val_batches_everywhere = float("inf")
            return
        # Ranks may hold different numbers of held-out batches: only the batches every rank has are checked
        # together (a collective on a batch one rank lacks would hang). Loaders of unknown length: none is.
        loaders = trainer.val_dataloaders
        loaders = loaders if isinstance(loaders, list | tuple) else [loaders]
        counts = [getattr(getattr(loader, "dataset", None), "num_batches", None) for loader in loaders]
        mine = sum(counts) if None not in counts else 0
        mine = int(trainer.strategy.reduce(torch.tensor(mine, device=pl_module.device), reduce_op="min").item())
        self._val_batches_everywhere = mine

    def on_validation_batch_start(
        self, trainer: L.Trainer, pl_module: L.LightningModule, batch, batch_idx: int, dataloader_idx: int = 0
    ) -> None:
        if self._val_batches_seen >= self._val_batches_everywhere:
            return
        self._val_batches_seen += 1
        if self._stop_signal is not None or trainer.world_size > 1:
            self._stop_if_asked(trainer, pl_module)

    def on_validation_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self._training and not trainer.sanity_checking:
            self._validated_step = trainer.global_step

    def on_save_checkpoint(self, trainer: L.Trainer, pl_module: L.LightningModule, checkpoint: dict) -> None:
        super().on_save_checkpoint(trainer, pl_module, checkpoint)
        # Any checkpoint of this run (ours, the best one, one saved on an exception) taken after a step whose
        # validation has not finished resumes by running that validation (see mark_validation_pending).
        pending = (
            self._training
            and not trainer.sanity_checking
            and self._validated_step != trainer.global_step
            and validation_due(trainer)
        )
        if pending and "loops" in checkpoint:
            mark_validation_pending(checkpoint)
            self._pending_step = trainer.global_step
        # A run that reached max_steps right after a validation (not one stopped early: its resume would not skip it)
        if self._saving_at_the_end and not trainer.should_stop and validation_due(trainer) and "loops" in checkpoint:
            end_of_run_logger_step(checkpoint)

    @property
    def last_path(self) -> Path:
        return Path(self.dirpath or ".") / f"{self.CHECKPOINT_NAME_LAST}{self.FILE_EXTENSION}"

    def saved_step(self) -> int | None:
        """The step of the ``last.ckpt`` on disk (read from the file itself), or None if there is none."""
        try:
            return torch.load(self.last_path, map_location="cpu", weights_only=True, mmap=True).get("global_step")
        except Exception:  # noqa: BLE001 - absent or unreadable: there is no good checkpoint to name
            return None

    def saves_on_exception(self, trainer: L.Trainer) -> bool:
        """Whether a run ending now with an exception can be saved so that a resume continues it exactly.

        Yes after a requested stop (raised in on_train_batch_end, which Lightning's restart logic handles) and
        when the completed micro-batches form whole optimizer steps. No in the middle of an accumulated step (a
        NaN found before the update, a crash): Lightning would restart its micro-batch count mid-step and take the
        next update after too few micro-batches. The last checkpoint taken at a step boundary is kept instead.
        """
        if not self._training:
            return False  # failed before training began (bad checkpoint, bad data): nothing new to save
        if self._stop_signal is not None:
            return True
        return completed_micro_batches(trainer) % trainer.accumulate_grad_batches == 0

    def describe_resume_point(self, trainer: L.Trainer) -> str:
        if self.saves_on_exception(trainer):
            return f"the weights before this step are saved to {self.last_path}"
        step = self.saved_step()
        if step is not None:
            return f"last good checkpoint: {self.last_path} (step {step})"
        return f"no checkpoint was saved yet (one is taken every {self.every_n_steps} steps)"

    def on_exception(self, trainer: L.Trainer, pl_module: L.LightningModule, exception: BaseException) -> None:
        self._restore_handlers()
        if isinstance(exception, CheckpointWriteError):
            return  # the disk refused a checkpoint: trying again would only fail again
        if isinstance(exception, NonFiniteLossError):
            exception.resume_point = self.describe_resume_point(trainer)
        if not self.saves_on_exception(trainer):
            return
        super().on_exception(trainer, pl_module, exception)
        if trainer.is_global_zero and self.last_model_path:
            log.warning(
                f"lit_gpt5: stopped at step {trainer.global_step}; checkpoint: {self.last_model_path} "
                f"(resume with --ckpt_path {self.last_model_path})"
            )

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._restore_handlers()
        self._training = False
        # Decided on rank 0, which writes the checkpoint; saving is collective, so every rank must agree. Saved again
        # when the last save was taken before the final validation, which has run since: a resume then does not
        # validate that step twice.
        revalidated = self._pending_step == trainer.global_step == self._validated_step
        stale = self.saved_step() != trainer.global_step or revalidated
        if self.dirpath and trainer.strategy.broadcast(stale):
            self._saving_at_the_end = True
            try:
                trainer.save_checkpoint(self.last_path, weights_only=False)
            finally:
                self._saving_at_the_end = False
            self.last_model_path = str(self.last_path)

    def _restore_handlers(self) -> None:
        for signum, handler in self._previous_handlers.items():
            signal.signal(signum, handler)
        self._previous_handlers.clear()
