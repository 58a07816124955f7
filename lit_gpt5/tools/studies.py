"""Small studies, for the notebooks: training runs with their TensorBoard logs, timing, FLOPs and MFU.

The notebooks define no model or data code: they call these, and the package's own classes.
"""

from __future__ import annotations

import shutil
import statistics
import time
from collections.abc import Callable
from pathlib import Path

import lightning as L
import torch

from lit_gpt5.log import without_advert
from lit_gpt5.model.bigram import BigramLM
from lit_gpt5.model.gpt import GPT
from lit_gpt5.training.callbacks import CoverageMonitor
from lit_gpt5.training.module import GPTLitModule
from lit_gpt5.training.trainer import Trainer


def train(
    module: GPTLitModule,
    datamodule: L.LightningDataModule,
    root: str | Path,
    name: str,
    max_steps: int,
    val_every: int,
    precision: str = "auto",
    accelerator: str = "auto",
    seed: int = 0,
    accumulate_grad_batches: int = 1,
    callbacks: list[L.Callback] | None = None,
) -> Path:
    """Fit ``module`` on ``datamodule`` for ``max_steps`` steps, validating every ``val_every`` steps (and before
    training); returns the run's TensorBoard directory. No checkpoints, no progress bar: a study runs many of these.
    ``precision="auto"``: bf16-mixed where the hardware computes bf16 natively, else 32-true
    (``lit_gpt5.training.trainer``); ``accelerator="auto"``: the GPU when there is one."""
    from lightning.pytorch.loggers import TensorBoardLogger

    L.seed_everything(seed, verbose=False)
    # A rerun of a run replaces it: its event files would otherwise sit beside the old run's, and reading the
    # directory back (read_scalars) would mix the two (an interrupted run's step 0 twice, an older run's steps).
    shutil.rmtree(Path(root) / name / f"seed{seed}", ignore_errors=True)
    # Lightning's advertisement, filtered for this fit only: a study runs many fits, a notebook would show each.
    with without_advert():
        logger = TensorBoardLogger(save_dir=str(root), name=name, version=f"seed{seed}")
        trainer = Trainer(
            accelerator=accelerator,
            precision=precision,
            max_steps=max_steps,
            val_check_interval=val_every * accumulate_grad_batches,
            check_val_every_n_epoch=None,
            num_sanity_val_steps=-1,
            accumulate_grad_batches=accumulate_grad_batches,
            gradient_clip_val=1.0,
            log_every_n_steps=max(1, val_every // 4),
            logger=logger,
            enable_checkpointing=False,
            enable_progress_bar=False,
            enable_model_summary=False,
            callbacks=[CoverageMonitor(), *(callbacks or [])],
        )
        trainer.fit(module, datamodule=datamodule)
    return Path(logger.log_dir)


def report_on_test(
    module: L.LightningModule, datamodule: L.LightningDataModule, precision: str = "auto", accelerator: str = "auto"
) -> dict[str, float]:
    """What ``lit-gpt5 test`` reports for ``module`` on the data module's test split (``test/loss``, or DPO's
    ``test/rewards/accuracies`` and the rest), from a quiet ``Trainer.test``: the report of a run whose selection
    used the validation split only."""
    with without_advert():
        trainer = Trainer(accelerator=accelerator, precision=precision, logger=False, enable_progress_bar=False,
                          enable_model_summary=False)  # fmt: skip
        (metrics,) = trainer.test(module, datamodule=datamodule, verbose=False)
    return metrics


def read_scalars(log_dir: str | Path) -> dict[str, tuple[list[int], list[float]]]:
    """Every scalar a run logged to TensorBoard: tag -> (steps, values), read back from its event files."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(log_dir), size_guidance={"scalars": 0})
    acc.Reload()
    return {
        tag: ([e.step for e in acc.Scalars(tag)], [e.value for e in acc.Scalars(tag)]) for tag in acc.Tags()["scalars"]
    }


def median_seconds(fn: Callable[[], object], repeats: int = 5, warmup: int = 1, sync: bool = False) -> float:
    """The median wall time of ``fn()`` over ``repeats`` calls, after ``warmup`` unmeasured ones."""
    times = []
    for i in range(warmup + repeats):
        start = time.perf_counter()
        fn()
        if sync and torch.cuda.is_available():
            torch.cuda.synchronize()
        if i >= warmup:
            times.append(time.perf_counter() - start)
    return statistics.median(times)


@torch.no_grad()
def forward_seconds(model: GPT, batch_size: int, seq_len: int, device: str = "cpu", repeats: int = 5) -> float:
    """Median time of one forward pass (logits of every position) on random tokens. Call
    ``lit_gpt5.training.trainer.keep_freed_memory()`` first to time it as the CLI trains (no page faults for the
    logits)."""
    model = model.to(device).eval()
    idx = torch.randint(0, model.config.vocab_size, (batch_size, seq_len), device=device)
    return median_seconds(lambda: model(idx), repeats=repeats, sync=device != "cpu")


def forward_flops(model: GPT, batch_size: int, seq_len: int) -> int:
    """Matmul FLOPs of one forward pass with every position projected to the vocabulary (``GPT.flops_per_token``)."""
    return batch_size * seq_len * model.flops_per_token(seq_len, training=False)


def train_flops_per_token(model: GPT, seq_len: int) -> int:
    """Training FLOPs per token, forward and backward (``GPT.flops_per_token``: the PaLM paper's count)."""
    return model.flops_per_token(seq_len, training=True)


def matmul_peak_flops(device: str = "cpu", dtype: torch.dtype = torch.float32, size: int = 2048) -> float:
    """Measured FLOP/s of a large square matmul on ``device``: the ceiling to compare a model's throughput with (on
    CPUs, where no vendor figure fits a shared virtual machine); ``lit_gpt5.training.peak.measure_matmul``."""
    from lit_gpt5.training.peak import measure_matmul

    return measure_matmul(size, size, size, dtype, torch.device(device))


def repeated_windows(sampler, batches: int) -> tuple[int, int]:
    """(distinct windows, windows drawn) over the first ``batches`` batches of a window sampler."""
    starts = torch.cat([sampler.starts(b) for b in range(batches)])
    return len(torch.unique(starts)), len(starts)


def bigram_loss(train: list[torch.Tensor], held_out: list[torch.Tensor], lam: float, vocab_size: int = 50257) -> float:
    """Held-out loss (nats) of an interpolated bigram model estimated on ``train``: a model-free measure of how
    predictable a held-out text is. P(b | a) = lam * count(a, b) / count(a) + (1 - lam) * P_unigram(b), the unigram
    add-one smoothed over the vocabulary (``lit_gpt5.model.bigram.BigramLM``)."""
    return BigramLM(train, vocab_size, alpha=1.0, interpolation=lam).loss(held_out)
