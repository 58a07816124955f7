"""Where every module, class and function that moved in the 0.2 layout went: the one mapping of old paths to new.

Old paths keep working for one release, each with one ``LitGPT5DeprecationWarning`` naming the new path:

* imports: ``from lit_gpt5.lit_module import GPTLitModule``, ``import lit_gpt5.dpo``, ``from lit_gpt5.model import
  GPT`` (a module that became a package: its old names are looked up here);
* ``python -m lit_gpt5.memory ...`` and the other old command modules (``COMMANDS``);
* class paths in configs and inside checkpoints (``class_path: lit_gpt5.dpo.DPOLitModule``): jsonargparse and
  Lightning import them like any other path; ``current_path`` gives the new spelling to code that compares them.

Checkpoints written before the move record old class paths for good, so the part of the mapping they use stays as
long as those checkpoints resume (``tests/weights/test_old_checkpoints.py``).
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.machinery
import importlib.util
import sys
import types
import warnings
from collections.abc import Callable

# Old dotted path -> new dotted path. A module maps to the module that holds most of what it held; a name listed on
# its own overrides its module's mapping (it went somewhere else).
MOVED: dict[str, str] = {
    # model/
    "lit_gpt5.model": "lit_gpt5.model.gpt",
    "lit_gpt5.loss": "lit_gpt5.model.loss",
    "lit_gpt5.lora": "lit_gpt5.model.lora",
    "lit_gpt5.lora.save_peft_adapter": "lit_gpt5.weights.peft.save_peft_adapter",
    "lit_gpt5.lora.BaseView": "lit_gpt5.tuning.reference.BaseView",
    "lit_gpt5.generate": "lit_gpt5.model.generate",
    "lit_gpt5.generate.main": "lit_gpt5.commands.generate.main",
    "lit_gpt5.generate.check_device": "lit_gpt5.commands.arguments.check_device",
    "lit_gpt5.tokenizer": "lit_gpt5.model.tokenizer",
    "lit_gpt5.prompts": "lit_gpt5.model.prompts",
    "lit_gpt5.known_reward": "lit_gpt5.tuning.rewards",
    "lit_gpt5.known_reward.BigramLM": "lit_gpt5.model.bigram.BigramLM",
    # weights/
    "lit_gpt5.checkpoints": "lit_gpt5.weights.checkpoints",
    "lit_gpt5.checkpoints.check_checkpoint": "lit_gpt5.resume.arguments.check_checkpoint",
    "lit_gpt5.convert": "lit_gpt5.weights.hf",
    "lit_gpt5.convert.main": "lit_gpt5.commands.convert.main",
    "lit_gpt5.checkpointing": "lit_gpt5.resume.last_checkpoint",
    "lit_gpt5.checkpointing.AtomicCheckpointIO": "lit_gpt5.weights.checkpoint_io.AtomicCheckpointIO",
    "lit_gpt5.checkpointing.CheckpointWriteError": "lit_gpt5.weights.checkpoint_io.CheckpointWriteError",
    "lit_gpt5.checkpointing.BestCheckpoint": "lit_gpt5.training.callbacks.BestCheckpoint",
    # resume/
    "lit_gpt5.resume": "lit_gpt5.resume.arguments",
    # training/
    "lit_gpt5.lit_module": "lit_gpt5.training.module",
    "lit_gpt5.lit_module.NonFiniteLossError": "lit_gpt5.errors.NonFiniteLossError",
    "lit_gpt5.step": "lit_gpt5.training.step",
    "lit_gpt5.step.NonFiniteLossError": "lit_gpt5.errors.NonFiniteLossError",
    "lit_gpt5.optim": "lit_gpt5.training.optim",
    "lit_gpt5.precision": "lit_gpt5.training.trainer",
    "lit_gpt5.runtime": "lit_gpt5.training.trainer",
    "lit_gpt5.strategies": "lit_gpt5.training.strategies",
    "lit_gpt5.callbacks": "lit_gpt5.training.callbacks",
    "lit_gpt5.run_checks": "lit_gpt5.training.preflight",
    "lit_gpt5.run_checks.check_model_args": "lit_gpt5.training.settings.check_model_args",
    "lit_gpt5.startup": "lit_gpt5.training.preflight",
    "lit_gpt5.memory": "lit_gpt5.training.memory_estimate",
    "lit_gpt5.memory.main": "lit_gpt5.commands.memory.main",
    "lit_gpt5.memory.parse_size": "lit_gpt5.commands.memory.parse_size",
    "lit_gpt5.memory_tracking": "lit_gpt5.training.memory_tracking",
    # tuning/
    "lit_gpt5.dpo": "lit_gpt5.tuning.dpo",
    "lit_gpt5.dpo.PreferenceDataModule": "lit_gpt5.data.preferences.PreferenceDataModule",
    "lit_gpt5.dpo.PreferenceDataset": "lit_gpt5.data.preferences.PreferenceDataset",
    "lit_gpt5.rloo": "lit_gpt5.tuning.rloo",
    "lit_gpt5.rloo.PromptDataModule": "lit_gpt5.data.rollout_prompts.PromptDataModule",
    "lit_gpt5.rollouts": "lit_gpt5.tuning.rollouts",
    "lit_gpt5.stage_metrics": "lit_gpt5.tuning.metrics",
    # tools/ and commands/
    "lit_gpt5.experiments": "lit_gpt5.tools.studies",
    "lit_gpt5.stats": "lit_gpt5.tools.stats",
    "lit_gpt5.machine": "lit_gpt5.tools.machine",
    "lit_gpt5.machine.FLAGS": "lit_gpt5.training.peak.FLAGS",
    "lit_gpt5.reward_cli": "lit_gpt5.commands.reward",
    "lit_gpt5.sft": "lit_gpt5.commands.sft",
    "lit_gpt5.sft.TEMPLATES": "lit_gpt5.model.prompts.TEMPLATES",
    "lit_gpt5.sft.format_prompt": "lit_gpt5.model.prompts.format_prompt",
    "lit_gpt5.sft.GulliverInstructDataModule": "lit_gpt5.data.gulliver.GulliverInstructDataModule",
    "lit_gpt5.sft.gulliver_instructions": "lit_gpt5.data.gulliver.gulliver_instructions",
    "lit_gpt5.sft.SFTBatches": "lit_gpt5.data.batching.SFTBatches",
    "lit_gpt5.sft.collate": "lit_gpt5.data.batching.collate",
    "lit_gpt5.sft.SFTDataModule": "lit_gpt5.data.instructions.SFTDataModule",
    "lit_gpt5.sft.SFTDataset": "lit_gpt5.data.instructions.SFTDataset",
    "lit_gpt5.sft.SFTStats": "lit_gpt5.data.instructions.SFTStats",
    "lit_gpt5.sft.read_records": "lit_gpt5.data.instructions.read_records",
    "lit_gpt5.cli_parser": "lit_gpt5.cli",
    "lit_gpt5.cli_parser.ArgumentParser": "lit_gpt5.cli.CLIParser",
    "lit_gpt5.errors.ArgumentParser": "lit_gpt5.commands.arguments.CommandParser",
    "lit_gpt5.files.os_error_message": "lit_gpt5.errors.os_error_message",
    # data/
    "lit_gpt5.data.IGNORE_INDEX": "lit_gpt5.model.loss.IGNORE_INDEX",
    "lit_gpt5.data.samplers": "lit_gpt5.data.starts",
    "lit_gpt5.data.samplers.WindowSampler": "lit_gpt5.data.starts.WindowStarts",
    "lit_gpt5.data.samplers.make_sampler": "lit_gpt5.data.starts.make_starts",
    "lit_gpt5.data.books": "lit_gpt5.data.book_module",
    "lit_gpt5.data.windows.TokenWindowDataModule": "lit_gpt5.data.window_module.TokenWindowDataModule",
    "lit_gpt5.data.windows.TokenSource": "lit_gpt5.data.window_module.TokenSource",
    "lit_gpt5.data.store.FORMAT": "lit_gpt5.data.store_manifest.FORMAT",
    "lit_gpt5.data.store.CLEANING_VERSION": "lit_gpt5.data.store_manifest.CLEANING_VERSION",
    "lit_gpt5.data.store.MANIFEST": "lit_gpt5.data.store_manifest.MANIFEST",
    "lit_gpt5.data.store.LOCK": "lit_gpt5.data.store_manifest.LOCK",
    "lit_gpt5.data.store.Document": "lit_gpt5.data.store_manifest.Document",
    "lit_gpt5.data.store.tokenizer_identity": "lit_gpt5.data.store_manifest.tokenizer_identity",
    "lit_gpt5.data.store.token_dtype": "lit_gpt5.data.store_manifest.token_dtype",
    "lit_gpt5.data.store.read_manifest": "lit_gpt5.data.store_manifest.read_manifest",
    "lit_gpt5.data.store.check_compatible": "lit_gpt5.data.store_manifest.check_compatible",
    "lit_gpt5.data.store_build.main": "lit_gpt5.commands.data.main",
    "lit_gpt5.data.store_build.info": "lit_gpt5.commands.data.info",
    "lit_gpt5.data.streams.global_batches_trained": "lit_gpt5.resume.state.global_batches_trained",
    "lit_gpt5.data.streams.micro_batches_trained": "lit_gpt5.resume.state.micro_batches_trained",
}

# ``python -m <old module>`` -> the module whose ``__main__`` block now runs that command.
COMMANDS: dict[str, str] = {
    "lit_gpt5.memory": "lit_gpt5.commands.memory",
    "lit_gpt5.generate": "lit_gpt5.commands.generate",
    "lit_gpt5.convert": "lit_gpt5.commands.convert",
    "lit_gpt5.sft": "lit_gpt5.commands.sft",
    "lit_gpt5.reward_cli": "lit_gpt5.commands.reward",
    "lit_gpt5.machine": "lit_gpt5.tools.machine",
}


class LitGPT5DeprecationWarning(FutureWarning):
    """An old path of lit_gpt5 was used; it works for this release and names the new one. A ``FutureWarning``, so
    Python shows it to users by default (a ``DeprecationWarning`` would be hidden outside ``__main__``)."""


_warned: set[str] = set()


def deprecated(old: str, new: str, what: str = "") -> None:
    """The deprecation line of an old name (once per process): ``old`` moved to ``new``."""
    if old in _warned:
        return
    _warned.add(old)
    warnings.warn(
        f"{old} moved to {new}{what}; the old path works for this release only: use the new one",
        LitGPT5DeprecationWarning,
        stacklevel=4,
    )


def new_path(old: str) -> str | None:
    """The new dotted path of an old one, or None when ``old`` did not move."""
    if old in MOVED:
        return MOVED[old]
    module, _, name = old.rpartition(".")
    return f"{MOVED[module]}.{name}" if module in MOVED and name else None


def current_path(path: str) -> str:
    """``path`` as it is spelled now: an old class path (a config's or a checkpoint's) gives its new one, with the
    deprecation line; any other path is returned as it is."""
    new = new_path(path)
    if new is None:
        return path
    deprecated(path, new)
    return new


def resolve(path: str) -> object:
    """The object at a dotted path (new or old): ``lit_gpt5.training.module.GPTLitModule``."""
    path = current_path(path)
    try:
        return importlib.import_module(path)
    except ImportError:
        module, _, name = path.rpartition(".")
        return getattr(importlib.import_module(module), name)


def moved_names(module_name: str, warn_default: bool = True) -> Callable[[str], object]:
    """A module's ``__getattr__`` that answers the names it no longer holds (listed in ``MOVED``), with the
    deprecation line: ``__getattr__ = moved_names(__name__)`` in a module or package that lost names. A name that is
    not where the mapping says (a submodule being imported, a typo) is an ``AttributeError``, as without it."""

    def __getattr__(name: str) -> object:
        old = f"{module_name}.{name}"
        listed = MOVED.get(old)
        new = listed or (f"{MOVED[module_name]}.{name}" if module_name in MOVED else None)
        if new is None or name.startswith("__"):
            raise AttributeError(f"module {module_name!r} has no attribute {name!r}")
        module, _, attr = new.rpartition(".")
        value = getattr(importlib.import_module(module), attr, _MISSING)
        if value is _MISSING:
            raise AttributeError(f"module {module_name!r} has no attribute {name!r}")
        if listed or warn_default:
            deprecated(old, new)
        return value

    return __getattr__


_MISSING = object()


class _OldModule(types.ModuleType):
    """What ``import lit_gpt5.<old module>`` gives: every name it held, each looked up where it went (the import
    itself said where the module went; a name that went elsewhere says so again)."""

    def __getattr__(self, name: str) -> object:
        return moved_names(self.__name__, warn_default=False)(name)


class _OldModuleLoader(importlib.abc.Loader):
    def create_module(self, spec: importlib.machinery.ModuleSpec) -> types.ModuleType:
        deprecated(spec.name, MOVED[spec.name])
        return _OldModule(spec.name)

    def exec_module(self, module: types.ModuleType) -> None:
        pass

    def get_code(self, fullname: str) -> types.CodeType | None:
        """What ``python -m <old command module>`` runs: the new command module's code, as ``__main__``."""
        target = COMMANDS.get(fullname)
        if target is None:
            raise ImportError(f"{fullname} is no longer a command; see lit-gpt5 --help")
        deprecated(f"python -m {fullname}", f"lit-gpt5 {target.rsplit('.', 1)[-1]}", f" (python -m {target})")
        spec = importlib.util.find_spec(target)
        return spec.loader.get_code(target)


class OldPathFinder(importlib.abc.MetaPathFinder):
    """Finds old module paths, after Python's own finders have found no module of that name."""

    def find_spec(self, fullname: str, path=None, target=None) -> importlib.machinery.ModuleSpec | None:
        if fullname not in MOVED or not fullname.startswith("lit_gpt5.") or not _is_module(MOVED[fullname]):
            return None  # not ours, or a name that moved (a class, a function): no module to import
        return importlib.machinery.ModuleSpec(fullname, _OldModuleLoader(), origin=f"moved to {MOVED[fullname]}")


def _is_module(path: str) -> bool:
    try:
        return importlib.util.find_spec(path) is not None
    except ImportError:  # its parent is a module, not a package: path is a name inside it
        return False


def install() -> None:
    """Put the finder at the end of ``sys.meta_path`` (once): real modules are always found first."""
    if not any(isinstance(finder, OldPathFinder) for finder in sys.meta_path):
        sys.meta_path.append(OldPathFinder())
