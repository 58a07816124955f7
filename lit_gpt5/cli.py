"""``python -m lit_gpt5.cli fit|validate|test`` (or ``lit-gpt5 fit ...``): the LightningCLI of the project.

Defaults (lit_gpt5/cli_defaults.yaml) reproduce the Model 5 experiment; ``--data.*`` and ``--model.*`` take the
arguments of the configured data module and LightningModule directly. A ``--config`` may name other classes
(``data: {class_path: ...}``, ``model: {class_path: ...}``), which is how instruction and preference tuning swap in
their own. The standard callbacks are always there, each with its own config section, so a config states only what
differs: ``checkpoint`` (best by val/loss), ``last_checkpoint`` (resumable ``last.ckpt``), ``sampler`` (text
samples), ``throughput`` (tokens/s); plus the step progress bar and the coverage monitor. Resuming with
``--ckpt_path`` is ``lit_gpt5.resume``'s.
"""

from __future__ import annotations

import os
import re
import sys
import warnings
from importlib import resources

import lightning as L
from lightning.pytorch.callbacks import ProgressBar
from lightning.pytorch.cli import LightningArgumentParser, LightningCLI
from lightning.pytorch.plugins.io import CheckpointIO

from lit_gpt5.compat import CheckpointArgumentsKept
from lit_gpt5.errors import UserError
from lit_gpt5.files import check_output_dir
from lit_gpt5.log import LIGHTNING_RANK_ZERO, get_logger, no_advert, to_console
from lit_gpt5.resume.arguments import resume_arguments
from lit_gpt5.resume.last_checkpoint import ResumableCheckpoint
from lit_gpt5.training.callbacks import (
    BestCheckpoint,
    CoverageMonitor,
    StepProgressBar,
    TextSampler,
    TokenThroughput,
    newest_best_checkpoint,
)
from lit_gpt5.training.trainer import Trainer, keep_freed_memory
from lit_gpt5.weights.checkpoint_io import AtomicCheckpointIO

_KEY = re.compile(r'Parser key "([^"]+)"')
_EXPECTED = re.compile(r"Expected a (.+?)\. Got value: (.*)$", re.MULTILINE)
_NOT_ACCEPTED = re.compile(r"Option '([^']+)' is not accepted")
_SUBCOMMAND_OPTION = re.compile(r"Subcommand '([^']+)' does not accept option '([^']+)'")
_CLASS_PATH = re.compile(r"Problem with given class_path '([^']+)'")


def _allowed(typename: str) -> str:
    """jsonargparse's type name as a reader says it: 'one of "tail", "interleaved"', 'an integer', ..."""
    literal = re.fullmatch(r"typing\.Literal\[(.*)\]", typename)
    if literal:
        return f"one of {literal.group(1)}"
    plain = re.fullmatch(r"<class '([\w.]+)'>", typename)
    name = plain.group(1) if plain else typename.replace("typing.", "")
    return {"int": "an integer", "float": "a number", "bool": "true or false", "str": "a string"}.get(name, name)


def one_line(message: str, prog: str) -> str:
    """jsonargparse's (multi-line, nested) error message as one line naming the argument, the value and the fix."""
    keys = [k for k in _KEY.findall(message) if k != "config"]
    flag = "--" + ".".join(keys) if keys else None
    help_hint = f"see {prog} --help"
    if m := _SUBCOMMAND_OPTION.search(message):
        return f"--{m.group(2)} is not an argument of {m.group(1)}; {help_hint}"
    if m := _NOT_ACCEPTED.search(message):
        owner = _CLASS_PATH.search(message)
        where = f" of {owner.group(1)}" if owner else ""
        return f"{flag + '.' if flag else '--'}{m.group(1)} is not an argument{where}; {help_hint}"
    if m := _EXPECTED.search(message):
        return f"{flag or 'an argument'}: expected {_allowed(m.group(1))}, got {m.group(2).strip()!r}; {help_hint}"
    if message.startswith('Parser key "config":'):
        return "--config: " + " ".join(message.split(":", 1)[1].split())
    if message.startswith("Unexpected config"):
        return (
            "a --config file must hold a YAML mapping of sections (trainer:, model:, data:, ...), got: "
            + " ".join(message.split(":", 1)[1].split())[:80]
        )
    if message.startswith("Problems parsing config"):
        return "a --config file is not valid YAML: " + " ".join(message.split(":", 1)[1].split())
    return " ".join(message.split())


class CLIParser(LightningArgumentParser):
    """LightningCLI's parser, with one-line errors (raised as ``UserError``, printed by ``run_main``): a bad argument
    is one line that names it, the value given and what is allowed, instead of jsonargparse's usage text (60 lines)
    with the problem at the end. (``lit_gpt5.commands.arguments.CommandParser`` does the same for the other
    commands.)"""

    def error(self, message: str, ex: Exception | None = None):
        if not self.exit_on_error:  # jsonargparse's own inner parsers: they catch and combine these
            return super().error(message, ex)
        raise UserError(one_line(message, self.prog.replace(" [options]", "")))

    def parse_args(self, *args, **kwargs):
        try:
            return super().parse_args(*args, **kwargs)
        except UnicodeDecodeError as err:  # a binary --config file
            raise UserError(
                f"a --config file is not text (YAML): {err.reason} at byte {err.start}; pass a YAML file"
            ) from None


log = get_logger(__name__)


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
    arguments given with ``--ckpt_path`` (``lit_gpt5.resume.arguments.resume_arguments``, called from
    ``parse_arguments``; Lightning's own merge of the checkpoint's arguments is turned off by
    ``CheckpointArgumentsKept``)."""

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
        if subcommand in ("validate", "test") and self.config[subcommand].get("ckpt_path") == "best":
            args = self._best_checkpoint(args, subcommand)
        self.config = resume_arguments(parser, args, self.config, subcommand)

    def _best_checkpoint(self, args, subcommand: str):
        # Lightning knows "best" only in the process that fitted: here it is the newest run's best checkpoint.
        root = self.config[subcommand].trainer.get("default_root_dir") or os.getcwd()
        path = str(newest_best_checkpoint(root))
        log.info(f"--ckpt_path best: {path}")
        self.config[subcommand].ckpt_path = path
        if not isinstance(args, list):
            return args
        args = ["--ckpt_path=" + path if a == "--ckpt_path=best" else a for a in args]
        return [path if a == "best" and i and args[i - 1] == "--ckpt_path" else a for i, a in enumerate(args)]

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
    to_console()  # a program: the package's messages on its console, whatever logging a caller configured
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
        # Any LightningModule and data module, by class_path: GPTLitModule and GutenbergDataModule by default
        # (cli_defaults.yaml); DPOLitModule and RLOOLitModule compose the same parts, they do not subclass it.
        L.LightningModule,
        L.LightningDataModule,
        subclass_mode_model=True,
        subclass_mode_data=True,
        trainer_class=Trainer,  # Lightning's, with --trainer.precision auto (the default)
        parser_kwargs={"prog": prog, **{cmd: {"default_config_files": [defaults]} for cmd in SUBCOMMANDS}},
        save_config_kwargs={"overwrite": True},
        auto_configure_optimizers=False,
        parser_class=CLIParser,
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
