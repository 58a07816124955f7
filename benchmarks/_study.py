"""The resumable multi-run driver of every study in ``benchmarks/`` (the sampling study, the preference frontier, and
the next one): a grid of runs, each run a process of its own that appends its results when it finishes.

A study script names its grid and how one run goes; ``Study`` does the rest, the same way for every study:

* ``run_all`` runs every run of the grid that ``done`` does not list yet, one process at a time (``<script> --only
  KEY``, so a crash or a kill loses one run, never the study), most informative first as the grid orders them, and
  prints each run's wall time; a study can be stopped at any moment and continued by running it again;
* a run is done when its row is in the study's ``results`` CSV, which it appends *last*: a run that died half-way
  is run again;
* ``append`` writes rows to a CSV, its header first when the file is new.
"""

from __future__ import annotations

import csv
import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def append(path: Path, header: Sequence[str], rows: Iterable[dict]) -> None:
    """Rows appended to a CSV, the header first when the file is new."""
    new = not path.exists()
    with open(path, "a", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(header))
        if new:
            writer.writeheader()
        writer.writerows(rows)


@dataclass(frozen=True)
class Study:
    """One study: its script, the CSV whose rows mark runs as done, and the columns that key a run.

    Args:
        script: the study's own script; run as ``python <script> [args] --only KEY`` for each run.
        results: the CSV a run appends to last (``finals.csv``, ``frontier.csv``): its keys are the runs done.
        key: the columns of ``results`` that identify a run, e.g. ``("book", "sampler", "seed")``.
        types: how each key column reads back from the CSV (``str``, ``float``, ``int``), so keys compare equal.
    """

    script: Path
    results: Path
    key: tuple[str, ...]
    types: tuple[Callable[[str], object], ...]

    def done(self) -> set[tuple]:
        """The keys of the runs already in ``results``."""
        if not self.results.exists():
            return set()
        with open(self.results) as f:
            return {tuple(t(row[k]) for k, t in zip(self.key, self.types, strict=True)) for row in csv.DictReader(f)}

    def parse(self, text: str) -> tuple:
        """A key from ``--only``'s ``a:b:c``."""
        parts = text.split(":")
        if len(parts) != len(self.key):
            raise SystemExit(f"--only {text!r}: expected {':'.join(self.key)}")
        return tuple(t(p) for p, t in zip(parts, self.types, strict=True))

    def run_all(self, grid: Sequence[tuple], args: Sequence[str] = (), max_runs: int | None = None) -> None:
        """Every run of ``grid`` not done yet (at most ``max_runs``), each in a process of its own, in grid order."""
        todo = [key for key in grid if key not in self.done()][:max_runs]
        print(f"{len(todo)} runs to go", flush=True)
        for key in todo:
            start = time.perf_counter()
            only = ":".join(str(part) for part in key)
            cmd = [sys.executable, str(self.script), *args, "--only", only]
            subprocess.run(cmd, check=True, cwd=REPO, stdout=subprocess.DEVNULL, env=absolute_pythonpath())
            print(f"{only}: {time.perf_counter() - start:.0f} s", flush=True)


def absolute_pythonpath() -> dict[str, str]:
    """This process's environment with ``PYTHONPATH``'s relative entries made absolute. Each run starts in this
    checkout (``cwd=REPO``), so a relative entry, such as the ``.`` of a worktree of an older version a study is
    pinned to, would silently import this checkout's package instead."""
    env = dict(os.environ)
    if env.get("PYTHONPATH"):
        env["PYTHONPATH"] = os.pathsep.join(str(Path(e).resolve()) for e in env["PYTHONPATH"].split(os.pathsep) if e)
    return env
