"""Callbacks: text samples during training, the best checkpoint, progress in optimizer steps, tokens/s, and how much
of the text was seen.

``last.ckpt``, the checkpoint a run resumes from, is ``lit_gpt5.resume.last_checkpoint.ResumableCheckpoint``'s.
"""

from __future__ import annotations

import re
from pathlib import Path

import lightning as L
import torch
from lightning.pytorch.callbacks import ModelCheckpoint, ThroughputMonitor, TQDMProgressBar
from lightning.pytorch.loggers import TensorBoardLogger
from lightning.pytorch.utilities import rank_zero_only

from lit_gpt5.compat import set_available_flops
from lit_gpt5.data.starts import window_targets
from lit_gpt5.errors import UserError
from lit_gpt5.log import get_logger
from lit_gpt5.resume.state import global_batches_trained
from lit_gpt5.training.peak import device_peak

log = get_logger(__name__)


def batch_size(batch) -> int:
    """Sequences in a batch ``(x, y)``; for ThroughputMonitor's ``batch_size_fn``."""
    return batch[0].size(0)


def batch_tokens(batch) -> int:
    """Tokens in a batch ``(x, y)``; for ThroughputMonitor's ``length_fn`` (its "items" are then tokens)."""
    return batch[0].numel()


class TokenThroughput(ThroughputMonitor):
    """Lightning's ThroughputMonitor counting tokens: ``train/device/items_per_sec`` is tokens/s, and
    ``train/device/mfu`` the model FLOP utilisation on every device: against Lightning's table of GPU peaks where it
    knows the GPU, else (a CPU, an unknown GPU) against this machine's matmul speed on a GEMM of the model's shape,
    measured once and cached (``lit_gpt5.training.peak.device_peak``)."""

    def __init__(self, window_size: int = 10) -> None:
        super().__init__(batch_size_fn=batch_size, length_fn=batch_tokens, window_size=window_size)

    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        super().setup(trainer, pl_module, stage)
        model = getattr(pl_module, "model", None)
        if self.available_flops is None and model is not None and hasattr(model, "config"):
            set_available_flops(self, device_peak(trainer, model))


class BestCheckpoint(ModelCheckpoint):
    """The best checkpoint by a monitored value (default: lowest ``val/loss``). A NaN or infinite value is never the
    best: a diverged model's checkpoint would otherwise be kept as ``…val_lossnan.ckpt``."""

    def __init__(
        self,
        monitor: str = "val/loss",
        mode: str = "min",
        save_top_k: int = 1,
        filename: str = "step{step:05d}-val_loss{val/loss:.4f}",
        dirpath: str | None = None,
        auto_insert_metric_name: bool = False,
    ) -> None:
        super().__init__(
            dirpath=dirpath,
            monitor=monitor,
            mode=mode,
            save_top_k=save_top_k,
            filename=filename,
            auto_insert_metric_name=auto_insert_metric_name,
        )

    def check_monitor_top_k(self, trainer: L.Trainer, current: torch.Tensor | None = None) -> bool:
        if current is not None and not torch.isfinite(torch.as_tensor(current)).all():
            return False
        return super().check_monitor_top_k(trainer, current)


def newest_best_checkpoint(root: str | Path) -> Path:
    """The best checkpoint (``BestCheckpoint``'s, lowest ``val_loss`` in its name) of the newest run under
    ``root/lightning_logs``: what ``validate``/``test --ckpt_path best`` evaluate in a process that did not fit."""
    logs = Path(root).expanduser() / "lightning_logs"
    runs = sorted(logs.glob("version_*/checkpoints"), key=lambda p: _version(p.parent.name), reverse=True)
    for folder in runs:
        found = [p for p in folder.glob("*.ckpt") if not p.name.startswith((".", "last"))]
        scored = [(float(m.group(1)), p) for p in found if (m := re.search(r"val_loss(\d+(?:\.\d+)?)", p.name))]
        if scored:
            return min(scored)[1]
    raise UserError(
        f"--ckpt_path best: no best checkpoint (step*-val_loss*.ckpt) in any run under {logs}; fit a run with "
        "validation there (or pass --trainer.default_root_dir of the run), or pass the checkpoint file itself"
    )


def _version(name: str) -> int:
    digits = name.removeprefix("version_")
    return int(digits) if digits.isdigit() else -1


class StepProgressBar(TQDMProgressBar):
    """The training bar counts optimizer steps out of ``max_steps``: the stream of batches is endless, so Lightning's
    epoch bar has nothing to count ("Epoch 0/-2")."""

    def on_train_epoch_start(self, trainer: L.Trainer, *_) -> None:
        super().on_train_epoch_start(trainer)
        bar = self.train_progress_bar
        bar.reset(total=trainer.max_steps if trainer.max_steps and trainer.max_steps > 0 else None)
        bar.initial = trainer.global_step
        bar.n = trainer.global_step
        bar.set_description("steps")

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, outputs, batch, batch_idx) -> None:
        bar = self.train_progress_bar
        if bar is None or bar.disable or bar.n == trainer.global_step:
            return  # inside an accumulated step: no optimizer step was taken
        if trainer.global_step % max(self.refresh_rate, 1) == 0 or trainer.global_step == trainer.max_steps:
            bar.n = trainer.global_step
            bar.set_postfix(self.get_metrics(trainer, pl_module), refresh=False)
            bar.refresh()


class TextSampler(L.Callback):
    """Generates text from a fixed prompt before training and after every validation.

    Printed to the console and logged to TensorBoard (TEXT tab, tag ``samples``), so the run shows the model going
    from repeated random tokens to lines, punctuation and sentences. A fixed seed makes samples comparable across
    steps: what changes is the model, not the dice. For instruction tuning, give ``instruction`` (and ``input``)
    instead of ``prompt``: they are formatted with ``template`` as in training, and generation stops at
    ``<|endoftext|>``. ``max_new_tokens: 0`` turns sampling off.
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
        from lit_gpt5.errors import UserError
        from lit_gpt5.model.generate import check_sampling
        from lit_gpt5.model.prompts import check_template, format_prompt

        check_sampling(max_new_tokens, temperature, top_k, top_p, flags="--sampler.")
        check_template(template)  # even unused: a typo in a config is found now, not when it is next used
        if instruction is not None:
            prompt = format_prompt(instruction, input, template)
        if not prompt:
            raise UserError("the sampler's prompt is empty; give --sampler.prompt at least one character")
        self.prompt = prompt
        self.max_new_tokens = max_new_tokens
        self.temperature = temperature
        self.top_k = top_k
        self.top_p = top_p
        self.seed = seed
        self.samples: list[tuple[int, str]] = []

    def sample(self, pl_module: L.LightningModule) -> str:
        from lit_gpt5.model.generate import generate
        from lit_gpt5.model.tokenizer import EOT_ID, get_tokenizer

        if not all(torch.isfinite(p).all() for p in pl_module.model.parameters()):
            return "(no sample: the model's weights are not finite)"
        tokenizer = get_tokenizer()
        idx = torch.tensor([tokenizer.encode_ordinary(self.prompt)], device=pl_module.device)
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
        if self.max_new_tokens == 0:
            return
        text = self.sample(pl_module)
        step = trainer.global_step
        self.samples.append((step, text))
        log.info(f"\n----- sample at step {step} -----\n{text}\n-----")
        for logger in trainer.loggers:
            if isinstance(logger, TensorBoardLogger):
                # TensorBoard renders text as Markdown; a code block keeps the newlines the model learned.
                logger.experiment.add_text("samples", "```\n" + text + "\n```", step)

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._log(trainer, pl_module)

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if not trainer.sanity_checking and trainer.state.fn == "fit":
            self._log(trainer, pl_module)


class CoverageMonitor(L.Callback):
    """``train/coverage``: the share of the training split's target tokens seen at least once so far, and
    ``train/epochs``: target tokens trained on / training target tokens. Across all ranks.

    Batches are a pure function of (seed, global batch index), so the seen tokens are recomputed from the data
    module's window starts (``window_starts``) rather than read from the batches: no communication between ranks,
    and a resumed run replays the batches before its checkpoint to continue the same figures. Does nothing for data
    without windows.
    """

    # Beyond this many training tokens (a large token store) a bit per token is not kept: coverage is not logged.
    MAX_TOKENS = 200_000_000

    def __init__(self) -> None:
        self.starts = None
        self.seen: torch.Tensor | None = None
        self.seen_count = 0  # targets seen at least once
        self.global_batches = 0

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.starts = getattr(trainer.datamodule, "window_starts", None) if trainer.datamodule else None
        if self.starts is None or not trainer.is_global_zero or int(self.starts.lengths.sum()) > self.MAX_TOKENS:
            self.starts = None
            return
        self.seen = torch.zeros(int(self.starts.lengths.sum()) + 1, dtype=torch.bool)
        self.seen_count = 0
        self.global_batches = 0
        self._mark(global_batches_trained(trainer))

    def _mark(self, count: int) -> None:
        """Mark the targets of the next ``count`` global batches as seen, and count the ones seen for the first time
        (a running count: summing the whole bool tensor each step would allocate 8 bytes per training token)."""
        for index in range(self.global_batches, self.global_batches + count):
            targets = torch.unique(window_targets(self.starts.starts(index), self.starts.block_size))
            self.seen_count += int((~self.seen[targets]).sum())
            self.seen[targets] = True
        self.global_batches += count

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, outputs, batch, batch_idx) -> None:
        if self.starts is None:
            return
        self._mark(trainer.world_size)  # one micro-batch on every rank
        targets = self.starts.target_tokens
        trained = self.global_batches * self.starts.batch_size * self.starts.block_size
        pl_module.log("train/coverage", self.seen_count / targets, rank_zero_only=True)
        pl_module.log("train/epochs", trained / targets, rank_zero_only=True)
