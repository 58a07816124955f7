"""``python -m lit_gpt5.cli fit|validate|test`` (or ``lit-gpt5 fit ...``): the LightningCLI of the project.

Defaults (lit_gpt5/cli_defaults.yaml) reproduce the Model 5 experiment; ``--data.*`` and ``--model.*`` take the
arguments of the configured data module and LightningModule directly. A ``--config`` may name other classes
(``data: {class_path: ...}``, ``model: {class_path: ...}``), which is how instruction and preference tuning swap in
their own. The standard callbacks are always there, each with its own config section, so a config states only what
differs: ``checkpoint`` (best by val/loss), ``last_checkpoint`` (resumable ``last.ckpt``), ``sampler`` (text
samples), ``throughput`` (tokens/s); plus the step progress bar and the coverage monitor.
"""

from __future__ import annotations

import os
import sys
import warnings
from importlib import resources

import lightning as L
from jsonargparse import Namespace
from lightning.pytorch.callbacks import ProgressBar
from lightning.pytorch.cli import LightningCLI
from lightning.pytorch.plugins.io import CheckpointIO

from lit_gpt5.callbacks import CoverageMonitor, StepProgressBar, TextSampler, TokenThroughput
from lit_gpt5.checkpointing import AtomicCheckpointIO, BestCheckpoint, ResumableCheckpoint
from lit_gpt5.checkpoints import check_checkpoint
from lit_gpt5.cli_parser import ArgumentParser
from lit_gpt5.compat import CheckpointArgumentsKept
from lit_gpt5.errors import UserError
from lit_gpt5.files import check_output_dir
from lit_gpt5.lit_module import GPTLitModule
from lit_gpt5.log import LIGHTNING_RANK_ZERO, no_advert
from lit_gpt5.precision import Trainer
from lit_gpt5.resume import checkpoint_defaults, local_checkpoint, settle_resumed_data, settle_resumed_model
from lit_gpt5.runtime import keep_freed_memory

SUBCOMMANDS = ("fit", "validate", "test", "predict")
# Sections of the config that configure the standard callbacks: name -> class.
STANDARD_CALLBACKS = {
    "checkpoint": BestCheckpoint,
    "last_checkpoint": ResumableCheckpoint,
    "sampler": TextSampler,
    "throughput": TokenThroughput,
}


class GPT5CLI(CheckpointArgumentsKept, LightningCLI):
    """LightningCLI with the project's standard callbacks, atomic checkpoint files, and resuming that honours the
    arguments given with ``--ckpt_path`` (``lit_gpt5.resume``, called from ``parse_arguments``; Lightning's own
    merge of the checkpoint's arguments is turned off by ``CheckpointArgumentsKept``)."""

    def add_arguments_to_parser(self, parser) -> None:
        for name, cls in STANDARD_CALLBACKS.items():
            parser.add_class_arguments(cls, name, instantiate=True, sub_configs=True)

    def parse_arguments(self, parser, args) -> None:
        super().parse_arguments(parser, args)
        subcommand = self.config.get("subcommand")
        if subcommand == "fit":  # before Lightning creates the run's folder there
            check_output_dir(
                self.config.fit.trainer.get("default_root_dir") or os.getcwd(), "--trainer.default_root_dir"
            )
        ckpt_path = local_checkpoint(self.config[subcommand].get("ckpt_path")) if subcommand else None
        if ckpt_path is None or isinstance(args, dict | Namespace):
            return
        # A bad --ckpt_path is found here, before Lightning creates the run's log directory, as one line.
        ckpt = check_checkpoint(ckpt_path, resuming=subcommand == "fit")
        # Parse again on top of the checkpoint's model arguments: those given in a config or on the command line win.
        self.config = parser.parse_args(
            args, namespace=checkpoint_defaults(ckpt, subcommand, self.config[subcommand].model)
        )
        config = self.config[subcommand]
        config.model = settle_resumed_model(config.model, ckpt, ckpt_path)
        if subcommand == "fit":
            settle_resumed_data(config.data, config.trainer, ckpt, ckpt_path)
            max_steps, done = config.trainer.get("max_steps"), ckpt.get("global_step", 0)
            if max_steps is not None and 0 <= max_steps <= done:
                raise UserError(
                    f"--ckpt_path {ckpt_path} is at step {done} and --trainer.max_steps is {max_steps}: nothing is "
                    "left to train; raise --trainer.max_steps to continue the run, or evaluate it with validate or test"
                )

    def instantiate_trainer(self, **kwargs):
        config = self.config_init[self.subcommand] if self.subcommand else self.config_init
        trainer = config["trainer"]
        given = trainer.get("callbacks") or []
        callbacks = list(given) if isinstance(given, list) else [given]
        for name, cls in STANDARD_CALLBACKS.items():
            if issubclass(cls, BestCheckpoint | ResumableCheckpoint) and trainer.get("enable_checkpointing") is False:
                continue
            callbacks.append(config[name])
        callbacks.append(CoverageMonitor())
        if trainer.get("enable_progress_bar") is not False and not any(isinstance(c, ProgressBar) for c in callbacks):
            callbacks.append(StepProgressBar())
        plugins = trainer.get("plugins") or []
        plugins = list(plugins) if isinstance(plugins, list) else [plugins]
        strategy = trainer.get("strategy")
        if not any(isinstance(p, CheckpointIO) for p in plugins) and not (
            isinstance(strategy, str) and strategy.startswith("deepspeed")
        ):
            plugins.append(AtomicCheckpointIO())
        return super().instantiate_trainer(callbacks=callbacks, plugins=plugins or None, **kwargs)


def main(args: list[str] | None = None) -> None:
    import logging

    import torch

    # The datasets yield whole batches by a single gather; worker processes would only add start-up time.
    warnings.filterwarnings("ignore", ".*does not have many workers.*")
    logging.getLogger(LIGHTNING_RANK_ZERO).addFilter(no_advert)  # the whole CLI process
    keep_freed_memory()
    if torch.cuda.is_available():
        torch.set_float32_matmul_precision("high")  # float32 runs use TF32 tensor cores (Ampere and newer)
    defaults = str(resources.files("lit_gpt5").joinpath("cli_defaults.yaml"))
    if args is not None and list(args) == sys.argv[1:]:
        # The console script passes on its own command line: let LightningCLI read it from sys.argv, as it does for
        # `python -m lit_gpt5.cli`, instead of warning that both were given (twice, with the whole command line).
        args = None
    prog = "lit-gpt5" if os.path.basename(sys.argv[0]) == "lit-gpt5" else "python -m lit_gpt5.cli"
    GPT5CLI(
        GPTLitModule,
        L.LightningDataModule,
        subclass_mode_model=True,
        subclass_mode_data=True,
        trainer_class=Trainer,  # Lightning's, with --trainer.precision auto (the default)
        parser_kwargs={"prog": prog, **{cmd: {"default_config_files": [defaults]} for cmd in SUBCOMMANDS}},
        save_config_kwargs={"overwrite": True},
        auto_configure_optimizers=False,
        parser_class=ArgumentParser,
        args=args,
    )
    # Lightning leaves the process group of a multi-process run open; torn down at interpreter exit instead, gloo's
    # threads sometimes abort the process after a successful run ("terminate called without an active exception",
    # seen 1 in 4 two-process CPU runs).
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        torch.distributed.destroy_process_group()


if __name__ == "__main__":
    from lit_gpt5.errors import run_main

    run_main(main)
