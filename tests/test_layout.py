"""The repository holds only what belongs to its layout: a stray file (a stale copy, a scratch script, a book) fails
here, in CI, instead of sitting unnoticed where no linter looks."""

from __future__ import annotations

import ast
import fnmatch
import importlib.util
import re
import shutil
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]

# Where each kind of file may live (fnmatch patterns on the path from the repository root; '*' crosses '/').
LAYOUT = {
    "top-level metadata": [
        "README.md",
        "CONTRIBUTING.md",
        "LICENSE",
        "setup.cfg",
        "pyproject.toml",
        ".gitignore",
        ".gitattributes",
    ],
    "CI": [".ci/*"],
    "package": ["lit_gpt5/*.py", "lit_gpt5/assets/gpt2.tiktoken", "lit_gpt5/cli_defaults.yaml"],
    "tests": ["tests/*.py"],
    "configs": ["configs/*.yaml"],
    "notebooks": [
        "notebooks/*.ipynb",
        "notebooks/results/*.csv",
        "notebooks/results/*.json",
        "notebooks/results/*.txt",
        "notebooks/results/*.png",
        "notebooks/results/*.md",
    ],  # fmt: skip
    "benchmarks": [
        "benchmarks/*.py",
        "benchmarks/results/*.json",
        "benchmarks/results/*.csv",
        "benchmarks/results/*.md",
        "benchmarks/results/*.txt",
    ],  # fmt: skip
    "docs": ["docs/*.md", "docs/*.png", "docs/*.svg"],
}


def layout_problems(paths: list[str]) -> list[str]:
    """The tracked paths that fit no place of ``LAYOUT``."""
    allowed = [pattern for patterns in LAYOUT.values() for pattern in patterns]
    return [p for p in paths if not any(fnmatch.fnmatchcase(p, pattern) for pattern in allowed)]


def tracked_files(repo: Path) -> list[str]:
    """Files git tracks (or is about to: staged), minus those deleted in the work tree."""
    if shutil.which("git") is None or not (repo / ".git").exists():
        pytest.skip(f"{repo} is not a git checkout: the layout check reads git's list of tracked files")
    out = subprocess.run(["git", "ls-files", "-z"], cwd=repo, capture_output=True, check=True).stdout
    return [p for p in out.decode().split("\0") if p and (repo / p).exists()]


def test_every_tracked_file_has_its_place():
    problems = layout_problems(tracked_files(REPO))
    assert not problems, f"files outside the known layout (move them, or add their place to LAYOUT): {problems}"


def test_a_stray_file_fails_the_check(tmp_path):
    if shutil.which("git") is None:
        pytest.skip("git is not installed")
    for path in ("README.md", "lit_gpt5/model.py", "lib", "lit_gpt5/notes.txt", "tests/data/829-0.txt"):
        (tmp_path / path).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / path).write_text("x")
    subprocess.run(["git", "init", "-q"], cwd=tmp_path, check=True)
    subprocess.run(["git", "add", "."], cwd=tmp_path, check=True)
    assert layout_problems(tracked_files(tmp_path)) == ["lib", "lit_gpt5/notes.txt", "tests/data/829-0.txt"]


# --- the package's own layout ------------------------------------------------------------------------------------

PACKAGE = REPO / "lit_gpt5"
MOVED = importlib.import_module("lit_gpt5.old_paths").MOVED
# Subpackages, lowest first: a module may import from its own subpackage and those before it, never from a later one.
LAYERS = ("model", "weights", "resume", "data", "training", "tuning", "tools", "commands")
# Top-level modules below every subpackage (importable from anywhere, importing none of the subpackages) ...
BASE = ("__init__", "errors", "log", "files", "compat", "old_paths")
# ... and the entry points above all of them.
ENTRY = ("cli", "__main__")
MAX_TOP_LEVEL = 8


def module_name(path: Path, root: Path) -> str:
    parts = path.relative_to(root.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports_of(path: Path, root: Path) -> list[tuple[int, str]]:
    """(line, module) of every import of the package in a file: top-level and inside functions alike (a lazy import
    is a dependency too). ``from lit_gpt5.x import y`` counts as ``lit_gpt5.x.y`` when that is a module."""
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names if alias.name.startswith(root.name)]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and (node.module or "").startswith(root.name):
            for alias in node.names:
                sub = f"{node.module}.{alias.name}"
                is_module = (root.parent / Path(*sub.split("."))).with_suffix(".py").exists() or (
                    root.parent / Path(*sub.split("."))
                ).is_dir()
                found.append((node.lineno, sub if is_module else node.module))
    return found


def layer_of(module: str, root_name: str = "lit_gpt5") -> tuple[int, str]:
    """(rank, name) of a module's place: BASE modules rank -1, subpackages by LAYERS, entry points last."""
    parts = module.split(".")[1:]
    if not parts:
        return -1, "__init__"
    if parts[0] in LAYERS:
        return LAYERS.index(parts[0]), parts[0]
    if parts[0] in ENTRY:
        return len(LAYERS), parts[0]
    return -1, parts[0]


def dependency_problems(root: Path) -> list[str]:
    """Upward imports (a module importing from a subpackage later in ``LAYERS``, or a base module importing a
    subpackage) and import cycles between modules, in the package at ``root``."""
    problems, graph = [], {}
    for path in sorted(root.rglob("*.py")):
        module = module_name(path, root)
        rank, _ = layer_of(module)
        graph[module] = set()
        for line, imported in imports_of(path, root):
            graph[module].add(imported)
            their_rank, their_place = layer_of(imported)
            if their_rank > rank:
                problems.append(f"{path.relative_to(root.parent)}:{line}: {module} imports {imported} ({their_place} "
                                f"is above {layer_of(module)[1]})")  # fmt: skip
    problems += [f"import cycle: {' -> '.join(cycle)}" for cycle in cycles(graph)]
    return problems


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """One cycle through each strongly connected component of more than one module (Tarjan)."""
    index, low, stack, on_stack, found = {}, {}, [], set(), []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph.get(v, ()):
            if w not in graph:
                continue
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component) + [sorted(component)[0]])

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def test_dependencies_run_one_way_and_never_in_a_circle():
    problems = dependency_problems(PACKAGE)
    assert not problems, "\n".join(problems)


@pytest.mark.parametrize(
    "planted, expected",
    [
        ("from lit_gpt5.training.module import GPTLitModule", "lit_gpt5.model.gpt imports lit_gpt5.training.module"),
        ("from lit_gpt5.cli import main", "lit_gpt5.model.gpt imports lit_gpt5.cli"),
        ("from lit_gpt5.model.generate import stream", "import cycle: lit_gpt5.model.generate -> lit_gpt5.model.gpt"),
    ],
)
def test_an_upward_import_or_a_cycle_planted_in_a_copy_fails_the_check(tmp_path, planted, expected):
    copy = tmp_path / "lit_gpt5"
    shutil.copytree(PACKAGE, copy, ignore=shutil.ignore_patterns("__pycache__"))
    gpt = copy / "model" / "gpt.py"
    gpt.write_text(gpt.read_text() + f"\n\ndef planted():\n    {planted}\n")
    problems = "\n".join(dependency_problems(copy))
    assert expected in problems, problems


def test_the_top_level_holds_a_handful_of_modules_and_every_subpackage_says_what_it_holds():
    top = sorted(p.stem for p in PACKAGE.glob("*.py"))
    assert set(top) == set(BASE) | set(ENTRY) and len(top) <= MAX_TOP_LEVEL, top
    folders = sorted(p.name for p in PACKAGE.iterdir() if p.is_dir() and (p / "__init__.py").exists())
    assert folders == sorted(LAYERS), folders
    for folder in folders:
        doc = ast.get_docstring(ast.parse((PACKAGE / folder / "__init__.py").read_text())) or ""
        modules = sorted(p.stem for p in (PACKAGE / folder).glob("*.py") if p.stem != "__init__")
        missing = [m for m in modules if f"``{m}``" not in doc]
        assert not missing, f"lit_gpt5/{folder}/__init__.py's table does not say what {missing} hold"


def private_writes(root: Path) -> list[str]:
    """Assignments to an attribute with a leading underscore on anything but ``self``/``cls`` (another object's
    private field), including ``setattr(obj, "_name", ...)``."""
    found = []
    for path in sorted(root.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            targets = []
            if isinstance(node, ast.Assign):
                targets = node.targets
            elif isinstance(node, ast.AugAssign | ast.AnnAssign):
                targets = [node.target]
            elif isinstance(node, ast.Call) and getattr(node.func, "id", None) == "setattr" and len(node.args) >= 2:
                name = node.args[1]
                if isinstance(name, ast.Constant) and str(name.value).startswith("_"):
                    targets = [ast.Attribute(value=node.args[0], attr=name.value)]
            for target in targets:
                for t in ast.walk(target):
                    if (
                        isinstance(t, ast.Attribute)
                        and t.attr.startswith("_")
                        and not t.attr.startswith("__")
                        and not (isinstance(t.value, ast.Name) and t.value.id in ("self", "cls"))
                    ):
                        found.append(f"{path.relative_to(root.parent)}:{node.lineno}: {ast.unparse(t)}")
    return found


def test_no_module_writes_another_objects_private_fields():
    found = private_writes(PACKAGE)
    assert not found, "private fields of other objects written:\n" + "\n".join(found)


def test_a_planted_private_write_is_found(tmp_path):
    (tmp_path / "pkg").mkdir()
    (tmp_path / "pkg" / "m.py").write_text("def f(module):\n    module._last_batch_shape = (1, 2)\n    self_x = 1\n")
    assert private_writes(tmp_path / "pkg") == ["pkg/m.py:2: module._last_batch_shape"]


def test_our_subclasses_of_library_classes_add_private_fields_of_their_own():
    """``self._name = ...`` in a class of ours that subclasses a library class (a Lightning callback, CheckpointIO)
    must not be a field the library class itself uses: that would be writing its private state."""
    import importlib
    import inspect

    found = []
    for path in sorted(PACKAGE.rglob("*.py")):
        module = importlib.import_module(module_name(path, PACKAGE))
        for node in ast.walk(ast.parse(path.read_text())):
            if not isinstance(node, ast.ClassDef) or not hasattr(module, node.name):
                continue
            cls = getattr(module, node.name)
            written = {
                t.attr
                for t in ast.walk(node)
                if isinstance(t, ast.Attribute) and isinstance(t.ctx, ast.Store) and t.attr.startswith("_")
                and not t.attr.startswith("__") and isinstance(t.value, ast.Name) and t.value.id == "self"
            }  # fmt: skip
            for base in inspect.getmro(cls)[1:]:
                if base is object or base.__module__.startswith("lit_gpt5"):
                    continue
                try:
                    source = inspect.getsource(base)
                except (OSError, TypeError):
                    continue
                found += [f"{cls.__name__}.{name} (also {base.__name__}'s)" for name in written
                          if re.search(rf"\bself\.{name}\b", source)]  # fmt: skip
    assert not found, found


def imported_from_elsewhere(paths: list[Path]) -> list[str]:
    """``from lit_gpt5.x import Name`` where ``Name`` is not defined in ``lit_gpt5.x`` (it only imports it): a second
    import path for a public name. ``lit_gpt5.data`` is the one exception, the data API its ``__all__`` exports."""
    import importlib

    found = []
    for path in paths:
        for node in ast.walk(ast.parse(path.read_text())):
            if not (
                isinstance(node, ast.ImportFrom) and node.level == 0 and (node.module or "").startswith("lit_gpt5")
            ):
                continue
            if node.module == "lit_gpt5.data" or node.module in MOVED:
                continue
            module = importlib.import_module(node.module)
            tree = ast.parse(Path(module.__file__).read_text())
            defined = {n.name for n in tree.body if isinstance(n, ast.ClassDef | ast.FunctionDef)}
            for n in tree.body:
                targets = n.targets if isinstance(n, ast.Assign) else [n.target] if isinstance(n, ast.AnnAssign) else []
                defined |= {t.id for t in targets if isinstance(t, ast.Name)}
            for alias in node.names:
                is_module = (
                    importlib.util.find_spec(f"{node.module}.{alias.name}") is not None
                    if hasattr(module, "__path__")
                    else False
                )
                if alias.name not in defined and not is_module:
                    found.append(f"{path.relative_to(REPO)}:{node.lineno}: {alias.name} from {node.module}")
    return found


def test_every_public_name_is_imported_from_the_module_that_defines_it():
    paths = [p for folder in ("lit_gpt5", "tests", "benchmarks") for p in sorted((REPO / folder).rglob("*.py"))]
    paths = [p for p in paths if p.name != "test_old_paths.py"]  # old paths on purpose
    found = imported_from_elsewhere(paths)
    assert not found, "import each name from the module that defines it:\n" + "\n".join(found)


def test_the_data_api_exports_only_its_own_names():
    import inspect

    import lit_gpt5.data

    objects = {n: getattr(lit_gpt5.data, n) for n in lit_gpt5.data.__all__}
    defined = {n: o for n, o in objects.items() if inspect.isclass(o) or inspect.isfunction(o)}
    foreign = [n for n, o in defined.items() if not o.__module__.startswith("lit_gpt5.data")]
    assert not foreign, foreign
