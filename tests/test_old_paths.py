"""The paths of 0.1 (before the package was split into subpackages) keep working for one release, each with one line
naming its new path: imports, ``python -m`` commands, and class paths in configs and checkpoints."""

from __future__ import annotations

import importlib
import re
import subprocess
import sys
import warnings

import pytest

from lit_gpt5 import old_paths
from lit_gpt5.old_paths import COMMANDS, MOVED, LitGPT5DeprecationWarning

pytestmark = pytest.mark.filterwarnings("default::lit_gpt5.old_paths.LitGPT5DeprecationWarning")


def resolve_new(path: str) -> object:
    try:
        return importlib.import_module(path)
    except ImportError:
        module, _, name = path.rpartition(".")
        return getattr(importlib.import_module(module), name)


@pytest.mark.parametrize("old", sorted(MOVED))
def test_every_new_path_exists_and_the_old_one_gives_the_same_object_with_a_warning(old, monkeypatch):
    monkeypatch.setattr(old_paths, "_warned", set())
    new = resolve_new(MOVED[old])
    with pytest.warns(LitGPT5DeprecationWarning, match=f"{old} moved to {MOVED[old]}"):
        assert old_paths.resolve(old) is new


def test_old_imports_of_every_kind(monkeypatch):
    from lit_gpt5.data.preferences import PreferenceDataModule
    from lit_gpt5.model.gpt import GPT
    from lit_gpt5.training.module import GPTLitModule

    monkeypatch.setattr(old_paths, "_warned", set())
    for name in [n for n in sys.modules if n in MOVED]:
        monkeypatch.delitem(sys.modules, name)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        import lit_gpt5.stats  # noqa: F401, I001 - `import` of a module that moved
        from lit_gpt5.dpo import PreferenceDataModule as old_data  # a name a module re-exported
        from lit_gpt5.lit_module import GPTLitModule as old_module  # a module that moved
        from lit_gpt5.model import GPT as old_gpt  # a module that became a package
    assert old_module is GPTLitModule and old_gpt is GPT and old_data is PreferenceDataModule
    said = "\n".join(str(w.message) for w in caught if w.category is LitGPT5DeprecationWarning)
    for old, new in [
        ("lit_gpt5.lit_module", "lit_gpt5.training.module"),
        ("lit_gpt5.model.GPT", "lit_gpt5.model.gpt.GPT"),
        ("lit_gpt5.dpo.PreferenceDataModule", "lit_gpt5.data.preferences.PreferenceDataModule"),
        ("lit_gpt5.stats", "lit_gpt5.tools.stats"),
    ]:
        assert f"{old} moved to {new}" in said, said


def test_a_name_that_never_existed_is_still_an_import_error():
    with pytest.raises(ImportError):
        from lit_gpt5.lit_module import NoSuchThing  # noqa: F401
    with pytest.raises(ImportError):
        from lit_gpt5.model import no_such_module  # noqa: F401


def test_class_paths_of_checkpoints_and_configs_read_as_the_new_ones(monkeypatch):
    monkeypatch.setattr(old_paths, "_warned", set())
    with pytest.warns(LitGPT5DeprecationWarning):
        assert old_paths.current_path("lit_gpt5.lit_module.GPTLitModule") == "lit_gpt5.training.module.GPTLitModule"
        assert old_paths.current_path("lit_gpt5.sft.SFTDataModule") == "lit_gpt5.data.instructions.SFTDataModule"
    assert old_paths.current_path("lit_gpt5.data.GutenbergDataModule") == "lit_gpt5.data.GutenbergDataModule"


def test_a_config_of_0_1_parses(tmp_path, capsys, monkeypatch):
    from lit_gpt5.cli import main

    monkeypatch.setattr(old_paths, "_warned", set())
    config = tmp_path / "dpo.yaml"
    config.write_text(
        "model:\n  class_path: lit_gpt5.dpo.DPOLitModule\n  init_args:\n    init_from: sft.ckpt\n    beta: 0.2\n"
        "data:\n  class_path: lit_gpt5.dpo.PreferenceDataModule\n  init_args:\n    train_path: pairs.jsonl\n"
    )
    warned = pytest.warns(LitGPT5DeprecationWarning, match=r"lit_gpt5\.dpo\.PreferenceDataModule moved to")
    with warned, pytest.raises(SystemExit) as exit_:
        main(["fit", "--config", str(config), "--print_config"])
    assert exit_.value.code in (0, None)
    assert "beta: 0.2" in capsys.readouterr().out


@pytest.mark.parametrize("old", sorted(COMMANDS))
def test_python_m_of_an_old_command_module_runs_the_command_and_says_its_new_name(old, monkeypatch, capsys):
    """What ``python -m <old>`` does, in this process: runpy finds the old module through the same finder and runs
    the code the loader gives it as ``__main__``."""
    import runpy

    monkeypatch.setattr(old_paths, "_warned", set())
    monkeypatch.setattr(sys, "argv", [old, "--help"])
    new = COMMANDS[old]
    said = f"python -m {old} moved to lit-gpt5 {new.rsplit('.', 1)[-1]} (python -m {new})"
    with pytest.warns(LitGPT5DeprecationWarning, match=re.escape(said)), pytest.raises(SystemExit) as exit_:
        runpy.run_module(old, run_name="__main__", alter_sys=True)
        raise SystemExit(0)  # a command without --help (the machine line) returns instead
    assert exit_.value.code in (0, None)
    out = capsys.readouterr().out
    assert "usage:" in out or out.startswith("machine: ")


@pytest.mark.slow  # a process of its own: the real `python -m`, once
def test_python_m_of_an_old_command_module_in_a_process_of_its_own():
    done = subprocess.run([sys.executable, "-m", "lit_gpt5.memory", "--help"], capture_output=True, text=True,
                          timeout=120)  # fmt: skip
    assert done.returncode == 0 and "usage: lit-gpt5 memory" in done.stdout, done.stderr[-2000:]
    assert "python -m lit_gpt5.memory moved to lit-gpt5 memory (python -m lit_gpt5.commands.memory)" in done.stderr


OLD_COMMIT = "061db38b86a97fa5fccbec1c6e94e6623745f2bf"  # main before the 0.2 layout


def public_names_of_0_1() -> list[str]:
    """Every public class, function and constant the modules of 0.1 defined or exported, as dotted paths (read
    from git history)."""
    import ast
    import shutil

    from tests.conftest import REPO

    if shutil.which("git") is None or not (REPO / ".git").exists():
        pytest.skip("the names of 0.1 are read from git history: this needs a git checkout")
    listed = subprocess.run(["git", "ls-tree", "-r", "--name-only", OLD_COMMIT, "lit_gpt5"], cwd=REPO,
                            capture_output=True, text=True)  # fmt: skip
    if listed.returncode != 0:
        pytest.skip(f"commit {OLD_COMMIT} is not in this checkout's history")
    names = []
    for path in [p for p in listed.stdout.split() if p.endswith(".py") and not p.endswith("__main__.py")]:
        source = subprocess.run(["git", "show", f"{OLD_COMMIT}:{path}"], cwd=REPO, capture_output=True, text=True)
        module = path.removesuffix(".py").removesuffix("/__init__").replace("/", ".")
        tree = ast.parse(source.stdout)
        exported = next((ast.literal_eval(n.value) for n in tree.body if isinstance(n, ast.Assign)
                         and any(getattr(t, "id", None) == "__all__" for t in n.targets)), [])  # fmt: skip
        defined = [n.name for n in tree.body if isinstance(n, ast.ClassDef | ast.FunctionDef)]
        defined += [t.id for n in tree.body if isinstance(n, ast.Assign) for t in n.targets if isinstance(t, ast.Name)]
        names += [f"{module}.{name}" for name in dict.fromkeys([*exported, *defined]) if not name.startswith("_")]
    return names


def test_every_public_name_of_0_1_still_resolves(monkeypatch):
    monkeypatch.setattr(old_paths, "_warned", set())
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", LitGPT5DeprecationWarning)
        missing = []
        for name in public_names_of_0_1():
            module, _, attr = name.rpartition(".")
            try:  # what `from <module> import <attr>` does
                getattr(importlib.import_module(module), attr)
            except (ImportError, AttributeError) as err:
                missing.append(f"{name}: {err}")
    assert not missing, "names of 0.1 that no longer resolve (map them in lit_gpt5/old_paths.py):\n" + "\n".join(
        missing
    )


def test_the_data_modules_window_sampler_is_now_window_starts(monkeypatch):
    import torch

    from lit_gpt5.data import TokenWindowDataModule

    monkeypatch.setattr(old_paths, "_warned", set())
    dm = TokenWindowDataModule(torch.arange(2000) % 50257, block_size=16, batch_size=4)
    dm.setup("fit")
    with pytest.warns(LitGPT5DeprecationWarning, match="window_sampler moved to TokenWindowDataModule.window_starts"):
        old = dm.window_sampler
    assert torch.equal(old.starts(3), dm.window_starts.starts(3))
