"""A command's wall time and peak memory, measured in a process of its own.

Linux carries a process's peak RSS across ``exec`` (``exec_mmap`` keeps the larger of the old and new high-water
marks), and a child forked (or vforked, as ``subprocess`` does) from a benchmark inherits the benchmark's own peak:
``os.wait4(child).ru_maxrss`` is then at least the *benchmark's* peak, not the command's. (This made a training
process on a 1 GB token store look 1.2 GB bigger than on a 100 MB one: the benchmark had just tokenized the 1 GB.)
So the command runs under a small launcher, a fresh Python whose own peak is a few MB, and the launcher reports its
child's ``ru_maxrss``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

LAUNCHER = """
import json, os, subprocess, sys
proc = subprocess.Popen(sys.argv[2:])
_, status, usage = os.wait4(proc.pid, 0)
with open(sys.argv[1], "w") as f:
    json.dump({"code": os.waitstatus_to_exitcode(status), "maxrss_kb": usage.ru_maxrss}, f)
"""


def run_measured(cmd: list[str], cwd: str | os.PathLike, stdout=None, stderr=None, env: dict | None = None):
    """Run ``cmd``; return ``(exit code, wall seconds, peak RSS of the command in MB)``."""
    with tempfile.TemporaryDirectory() as tmp:
        report = Path(tmp) / "report.json"
        start = time.perf_counter()
        subprocess.run([sys.executable, "-c", LAUNCHER, str(report), *cmd], cwd=cwd, stdout=stdout, stderr=stderr,
                       env=env, check=False)  # fmt: skip
        wall = time.perf_counter() - start
        result = json.loads(report.read_text())
    return result["code"], wall, result["maxrss_kb"] / 1024  # Linux reports KB
