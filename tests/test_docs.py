"""The documentation cannot silently rot: every command shown in README.md, CONTRIBUTING.md and docs/ parses with the
flags it shows, every relative link resolves (anchors included), every config and script it names exists."""

from __future__ import annotations

import contextlib
import io
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import REPO

FENCE = re.compile(r"^```(\w*)\n(.*?)^```", re.S | re.M)
LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")
INVOCATION = re.compile(r"(?:\bpython3? )?-m (lit_gpt5[\w.]*)|\blit-gpt5\b|\bpython3? (benchmarks/\w+\.py)")
PLACEHOLDER = re.compile(r"<[^>]*>|…|\.\.\.")


def doc_files(root: Path) -> list[Path]:
    return [root / "README.md", root / "CONTRIBUTING.md", *sorted((root / "docs").glob("*.md"))]


def documented_commands(root: Path) -> list[tuple[str, list[str]]]:
    """(where, argv after the program) of every lit_gpt5 / benchmark command in the fenced code blocks."""
    found = []
    for path in doc_files(root):
        text = path.read_text()
        for block in FENCE.finditer(text):
            if block.group(1) not in ("bash", "console", "sh", ""):
                continue
            body = block.group(2).replace("\\\n", " ")
            for line in body.splitlines():
                line = line.split(" #", 1)[0].removeprefix("$ ").strip()
                for part in re.split(r"&&|\|", line):
                    m = INVOCATION.search(part)
                    if not m:
                        continue
                    program = m.group(1) or m.group(2) or "lit_gpt5.__main__"
                    lineno = text.count("\n", 0, block.start()) + 1
                    where = f"{path.relative_to(root)} (block at line {lineno}): {part.strip()}"
                    found.append((where, [program, *shlex.split(part[m.end() :])]))
    return found


def _run_main(module: str, argv: list[str]) -> tuple[int, str]:
    import importlib

    main = importlib.import_module(module).main
    out = io.StringIO()
    code = 0
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(out):
        try:
            main(argv)
        except SystemExit as err:
            code = err.code if isinstance(err.code, int) else (0 if err.code is None else 1)
        except Exception as err:  # noqa: BLE001 - a documented command that does not parse
            return 1, f"{type(err).__name__}: {err}"
    return code, out.getvalue()


def flags(argv: list[str]) -> list[str]:
    return [a.split("=", 1)[0] for a in argv if a.startswith("--")]


def without_flag(argv: list[str], flag: str) -> list[str]:
    """``argv`` without ``flag`` and its value (``--flag value`` or ``--flag=value``)."""
    out, skip = [], False
    for a in argv:
        if skip:
            skip = False
            continue
        if a == flag:
            skip = True
        elif not a.startswith(f"{flag}="):
            out.append(a)
    return out


def check_command(program: str, argv: list[str], root: Path) -> str | None:
    """None when the documented command parses, else what is wrong."""
    if program.startswith("benchmarks/"):
        script = root / program
        if not script.exists():
            return f"{program} does not exist"
        help_text = subprocess.run([sys.executable, str(script), "--help"], capture_output=True, text=True).stdout
        missing = [f for f in flags(argv) if f not in help_text]
        return f"{program} has no {', '.join(missing)}" if missing else None
    if program == "lit_gpt5.__main__":
        from lit_gpt5.__main__ import COMMANDS

        if not argv or argv[0] not in COMMANDS:
            return None if argv in ([], ["--help"], ["--version"]) else f"lit-gpt5 has no command {argv[:1]}"
        module, pass_name, _ = COMMANDS[argv[0]]
        program, argv = module, argv if pass_name else argv[1:]
    if program == "lit_gpt5.cli":
        # Parse everything the command shows (types, choices, class arguments), without running it.
        args = without_flag(argv, "--ckpt_path")  # a checkpoint would be read at parse time
        args = [PLACEHOLDER.sub("x", a) for a in args]
        args = [str(root / a) if a.startswith("configs/") else a for a in args]
        code, out = _run_main("lit_gpt5.cli", [*args, "--print_config"])
        return None if code == 0 else f"does not parse: {out.strip().splitlines()[-1] if out.strip() else code}"
    # argparse commands: every flag shown must be one its --help lists (for the subcommand shown).
    positionals = []
    for a in argv:
        if a.startswith("-"):
            break
        positionals.append(a)
    code, help_text = _run_main(program, [*positionals[:1], "--help"])
    if code != 0:
        return f"--help failed: {help_text.strip()[-200:]}"
    missing = [f for f in flags(argv) if not re.search(rf"{re.escape(f)}\b", help_text)]
    return f"no such flag: {', '.join(missing)}" if missing else None


def doc_problems(root: Path) -> list[str]:
    problems = []
    for where, (program, *argv) in documented_commands(root):
        problem = check_command(program, argv, root)
        if problem:
            problems.append(f"{where}: {problem}")
    for path in doc_files(root):
        text = path.read_text()
        for target in LINK.findall(text):
            if re.match(r"[a-z]+:", target):  # http:, https:, mailto:
                continue
            file, _, anchor = target.partition("#")
            dest = (path.parent / file).resolve() if file else path
            if not dest.exists():
                problems.append(f"{path.relative_to(root)}: broken link {target}")
            elif anchor and dest.suffix == ".md" and anchor not in anchors(dest):
                problems.append(f"{path.relative_to(root)}: no heading #{anchor} in {file or path.name}")
        for name in re.findall(r"configs/[\w.-]+\.yaml", text):
            if not (root / name).exists():
                problems.append(f"{path.relative_to(root)}: {name} does not exist")
    return problems


def anchors(path: Path) -> set[str]:
    """GitHub's heading anchors: lowercase, punctuation dropped, spaces to hyphens."""
    heads = re.findall(r"^#+ (.+)$", path.read_text(), re.M)
    return {re.sub(r"[^\w\- ]", "", h.strip().lower()).replace(" ", "-") for h in heads}


def command_module(program: str, argv: list[str]) -> str:
    """The module a documented command runs: ``lit-gpt5 memory ...`` is ``lit_gpt5.commands.memory``."""
    from lit_gpt5.__main__ import COMMANDS

    if program == "lit_gpt5.__main__" and argv and argv[0] in COMMANDS:
        return COMMANDS[argv[0]][0]
    return program


def test_the_docs_show_commands_of_every_kind():
    programs = {command_module(program, argv) for _, (program, *argv) in documented_commands(REPO)}
    commands = {f"lit_gpt5.commands.{name}" for name in ("memory", "generate", "convert", "sft", "reward", "data")}
    assert {"lit_gpt5.cli", *commands} <= programs, sorted({"lit_gpt5.cli", *commands} - programs)


@pytest.mark.slow
def test_every_documented_command_link_and_config_holds():
    problems = doc_problems(REPO)
    assert not problems, "\n".join(problems)


@pytest.mark.slow
def test_a_renamed_flag_fails_the_check(tmp_path):
    # The two pages changed below, and CONTRIBUTING (every check reads it); the other pages are not needed.
    for path in (REPO / "README.md", REPO / "CONTRIBUTING.md", REPO / "docs" / "memory-and-scale.md"):
        dest = tmp_path / path.relative_to(REPO)
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(path, dest)
    shutil.copytree(REPO / "configs", tmp_path / "configs")
    shutil.copytree(REPO / "benchmarks", tmp_path / "benchmarks")
    for other in ("notebooks", "benchmarks/results"):
        (tmp_path / other).mkdir(parents=True, exist_ok=True)
    readme = tmp_path / "README.md"
    readme.write_text(readme.read_text().replace("--data.sampling shuffled", "--data.sampler shuffled", 1))
    memory = tmp_path / "docs" / "memory-and-scale.md"
    memory.write_text(
        memory.read_text().replace("--micro_batch_size 8 --gpu_memory", "--micro_batch 8 --gpu_memory", 1)
    )
    problems = "\n".join(p for p in doc_problems(tmp_path) if "broken link" not in p)
    assert "--data.sampler" in problems and "--micro_batch" in problems
