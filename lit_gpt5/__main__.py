"""``lit-gpt5 <command> ...`` (installed by pip) and ``python -m lit_gpt5 <command> ...``: one entry point for every
command of the project. ``fit``, ``validate``, ``test`` and ``predict`` are the LightningCLI (``lit_gpt5.cli``); every
other command is a module of ``lit_gpt5.commands``, which also runs on its own (``python -m
lit_gpt5.commands.memory``)."""

from __future__ import annotations

import importlib
import sys

from lit_gpt5.errors import run_main

# command -> (module whose main() runs it, whether the command name is passed on, what it does)
COMMANDS = {
    "fit": ("lit_gpt5.cli", True, "train (LightningCLI: --config, --model.*, --data.*, --trainer.*)"),
    "validate": ("lit_gpt5.cli", True, "held-out loss of a checkpoint"),
    "test": ("lit_gpt5.cli", True, "test loss of a checkpoint"),
    "predict": ("lit_gpt5.cli", True, "LightningCLI predict"),
    "generate": ("lit_gpt5.commands.generate", False, "generate text from a checkpoint or a Hugging Face directory"),
    "convert": ("lit_gpt5.commands.convert", False, "weights to and from Hugging Face GPT-2 and PEFT directories"),
    "sft": ("lit_gpt5.commands.sft", False, "instruction and preference data: what the loss sees, the built-in sets"),
    "memory": ("lit_gpt5.commands.memory", False, "estimate the GPU memory of a training run before starting it"),
    "reward": ("lit_gpt5.commands.reward", False, "the known-reward experiment: pairs, a policy's reward and KL"),
    "data": ("lit_gpt5.commands.data", False, "token stores: build one (books, text files, JSONL, Parquet) or inspect"),
}


def usage() -> str:
    width = max(map(len, COMMANDS))
    lines = [f"  {name:<{width}}  {what}" for name, (_, _, what) in COMMANDS.items()]
    return (
        "usage: lit-gpt5 <command> [arguments]\n\ncommands:\n"
        + "\n".join(lines)
        + "\n\n'lit-gpt5 <command> --help' for more; 'lit-gpt5 --version' for the version"
    )


def version() -> str:
    from importlib.metadata import PackageNotFoundError
    from importlib.metadata import version as installed

    try:
        return installed("lit_gpt5")
    except PackageNotFoundError:  # run from a checkout that was not installed
        return "unknown (not installed)"


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    if not argv or argv[0] in ("-h", "--help"):
        print(usage())
        return
    if argv[0] in ("-V", "--version"):
        print(f"lit-gpt5 {version()}")
        return
    if argv[0] not in COMMANDS:
        from lit_gpt5.errors import UserError

        raise UserError(f"unknown command {argv[0]!r}; choose one of: {', '.join(COMMANDS)} (lit-gpt5 --help)")
    module, pass_name, _ = COMMANDS[argv[0]]
    importlib.import_module(module).main(argv if pass_name else argv[1:])


def console_script() -> None:
    run_main(main)


if __name__ == "__main__":
    console_script()
