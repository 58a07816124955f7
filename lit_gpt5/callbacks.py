"""Callbacks: text samples during training, resumable checkpoints, and the batch measures ThroughputMonitor needs."""

from __future__ import annotations

import signal
import sys
import threading
from pathlib import Path

import lightning as L
import torch
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.loggers import TensorBoardLogger
from lightning.pytorch.utilities import rank_zero_only
from lightning.pytorch.utilities.exceptions import SIGTERMException


def batch_size(batch) -> int:
    """Sequences in a batch ``(x, y)``; for ThroughputMonitor's ``batch_size_fn``."""
    return batch[0].size(0)


def batch_tokens(batch) -> int:
    """Tokens in a batch ``(x, y)``; for ThroughputMonitor's ``length_fn`` (its "items" are then tokens)."""
    return batch[0].numel()


class TextSampler(L.Callback):
    """Generates text from a fixed prompt before training and after every validation.

    Printed to the console and logged to TensorBoard (TEXT tab, tag ``samples``), so the run shows the model going
    from repeated random tokens to lines, punctuation and sentences. A fixed seed makes samples comparable across
    steps: what changes is the model, not the dice. For instruction tuning, give ``instruction`` (and ``input``)
    instead of ``prompt``: they are formatted with ``template`` as in training, and generation stops at
    ``<|endoftext|>``.
    """

    def __init__(
        self,
        prompt: str = "The Emperor of Lilliput",
        max_new_tokens: int = 120,
        temperature: float = 0.8,
        top_k: int | None = 50,
        top_p: float | None = None,
        seed: int = 1234,
        instruction: str | None = None,
        input: str = "",
        template: str = "alpaca",
    ) -> None:
        if instruction is not None:
            from lit_gpt5.sft import format_prompt

            prompt = format_prompt(instruction, input, template)
        self.prompt = prompt
        self.max_new_tokens = max_new_tokens
        self.temperature = temperature
        self.top_k = top_k
        self.top_p = top_p
        self.seed = seed
        self.samples: list[tuple[int, str]] = []

    def sample(self, pl_module: L.LightningModule) -> str:
        from lit_gpt5.generate import generate
        from lit_gpt5.tokenizer import EOT_ID, get_tokenizer

        tokenizer = get_tokenizer()
        idx = torch.tensor([tokenizer.encode(self.prompt)], device=pl_module.device)
        out = generate(
            pl_module.model,
            idx,
            self.max_new_tokens,
            temperature=self.temperature,
            top_k=self.top_k,
            top_p=self.top_p,
            seed=self.seed,
            stop_token=EOT_ID,
        )
        return tokenizer.decode(out[0].tolist())

    @rank_zero_only
    def _log(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        text = self.sample(pl_module)
        step = trainer.global_step
        self.samples.append((step, text))
        print(f"\n----- sample at step {step} -----\n{text}\n-----", flush=True)
        for logger in trainer.loggers:
            if isinstance(logger, TensorBoardLogger):
                # TensorBoard renders text as Markdown; a code block keeps the newlines the model learned.
                logger.experiment.add_text("samples", "```\n" + text + "\n```", step)

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._log(trainer, pl_module)

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if not trainer.sanity_checking and trainer.state.fn == "fit":
            self._log(trainer, pl_module)


class ResumableCheckpoint(ModelCheckpoint):
    """``last.ckpt``, always resumable: every ``every_n_train_steps``, at the end of training, and when a run stops.

    A ``ModelCheckpoint`` that saves no "best" files (``save_top_k=0``; keep a second, monitoring ModelCheckpoint
    for those), plus three things resuming needs:

    * It saves at the end of training even when the last step is not a multiple of ``every_n_train_steps``.
    * It saves when an exception ends ``fit`` (a non-finite loss before the bad update, a crash) if the run is at
      an optimizer-step boundary; inside an accumulated step it keeps the last boundary checkpoint instead (see
      ``saves_on_exception``).
    * Ctrl-C (SIGINT) and SIGTERM (a preempted job) stop the run at the end of the current optimizer step, then
      save: never inside a step, where Lightning's own handling can stop (mid-update for Ctrl-C, between the
      micro-batches of an accumulated step for SIGTERM), which a resume cannot continue exactly. A second Ctrl-C
      stops at once. SIGTERM exits with status 143, SIGINT with 1.

    Resume with ``--ckpt_path <dir>/last.ckpt``: the stream of batches, the optimizer, the LR schedule and the
    dropout randomness continue exactly where they stopped.
    """

    def __init__(self, dirpath: str | None = None, every_n_train_steps: int = 50, **kwargs) -> None:
        kwargs.setdefault("filename", "interrupted-step{step:05d}")
        kwargs.setdefault("auto_insert_metric_name", False)
        super().__init__(
            dirpath=dirpath,
            every_n_train_steps=every_n_train_steps,
            save_top_k=0,
            save_last=True,
            save_on_exception=True,
            **kwargs,
        )
        self._stop_signal: int | None = None
        self._previous_handlers: dict[int, object] = {}
        self._training = False

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
        print(
            f"\n{name}: finishing this optimizer step, then saving a checkpoint (Ctrl-C again to stop at once)",
            file=sys.stderr,
            flush=True,
        )

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, outputs, batch, batch_idx) -> None:
        super().on_train_batch_end(trainer, pl_module, outputs, batch, batch_idx)
        if self._stop_signal is not None and (batch_idx + 1) % trainer.accumulate_grad_batches == 0:
            # Lightning turns either into on_exception (which saves) and ends the run.
            if self._stop_signal == signal.SIGTERM:
                raise SIGTERMException()
            raise KeyboardInterrupt("stopped by Ctrl-C")

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
        completed = trainer.fit_loop.epoch_loop.batch_progress.current.completed
        return completed % trainer.accumulate_grad_batches == 0

    def describe_resume_point(self, trainer: L.Trainer) -> str:
        if self.saves_on_exception(trainer):
            return f"the weights before this step are saved to {Path(self.dirpath or '.') / 'last.ckpt'}"
        if self.last_model_path:
            return f"last good checkpoint: {self.last_model_path} (step {self._last_global_step_saved})"
        return f"no checkpoint was saved yet (one is taken every {self._every_n_train_steps} steps)"

    def on_exception(self, trainer: L.Trainer, pl_module: L.LightningModule, exception: BaseException) -> None:
        self._restore_handlers()
        if not self.saves_on_exception(trainer):
            return
        super().on_exception(trainer, pl_module, exception)
        if trainer.is_global_zero and self.last_model_path:
            print(
                f"lit_gpt5: stopped at step {trainer.global_step}; checkpoint: {self.last_model_path} "
                f"(resume with --ckpt_path {self.last_model_path})",
                file=sys.stderr,
                flush=True,
            )

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._restore_handlers()
        self._training = False
        if self._last_global_step_saved != trainer.global_step:
            self._save_last_checkpoint(trainer, self._monitor_candidates(trainer))
            self._last_global_step_saved = trainer.global_step

    def _restore_handlers(self) -> None:
        for signum, handler in self._previous_handlers.items():
            signal.signal(signum, handler)
        self._previous_handlers.clear()
