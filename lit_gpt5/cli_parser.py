"""The CLI's argument parser: a bad argument is one line that names it, the value given and what is allowed, instead
of jsonargparse's usage text (60 lines) with the problem at the end."""

from __future__ import annotations

import re

from lightning.pytorch.cli import LightningArgumentParser

from lit_gpt5.errors import UserError

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


class ArgumentParser(LightningArgumentParser):
    """LightningCLI's parser, with one-line errors (raised as ``UserError``, printed by ``run_main``)."""

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
