"""The repository holds only what belongs to its layout: a stray file (a stale copy, a scratch script, a book) fails
here, in CI, instead of sitting unnoticed where no linter looks."""

from __future__ import annotations

import fnmatch
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
