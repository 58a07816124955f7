"""A full disk while saving a checkpoint: one line, no partial file anywhere, the earlier checkpoint intact."""

import os
import subprocess
import sys

import pytest
import torch

from tests.conftest import REPO
from tests.helpers import tmpfs

pytestmark = pytest.mark.slow


@pytest.fixture
def small_disk(tmp_path):
    """A 14 MiB tmpfs: room for one checkpoint of the model below (about 9.8 MB), not for a second beside it."""
    with tmpfs(tmp_path / "disk", "size=14m") as disk:
        yield disk


def test_no_space_left_is_one_line_and_leaves_no_partial_file(book_path, small_disk, tmp_path):
    tmpdir = tmp_path / "tmp"
    tmpdir.mkdir()
    env = {**os.environ, "PYTHONPATH": str(REPO), "TMPDIR": str(tmpdir), "LIT_GPT5_CACHE": str(tmp_path / "cache")}
    args = [
        "--model.model_name=gpt-nano",
        "--model.n_layer=1",
        "--model.n_embd=16",
        "--model.n_head=2",
        f"--data.text_path={book_path}",
        "--data.block_size=16",
        "--data.batch_size=2",
        "--data.val_batch_size=1024",
        "--trainer.max_steps=8",
        "--trainer.val_check_interval=1000",
        "--trainer.accelerator=cpu",
        "--trainer.enable_progress_bar=false",
        f"--trainer.default_root_dir={small_disk}",
        "--sampler.max_new_tokens=0",
        "--last_checkpoint.every_n_train_steps=2",
    ]
    done = subprocess.run(
        [sys.executable, "-m", "lit_gpt5.cli", "fit", *args], env=env, capture_output=True, text=True, timeout=300
    )
    checkpoints = small_disk / "lightning_logs" / "version_0" / "checkpoints"
    last = checkpoints / "last.ckpt"
    assert done.returncode == 2, done.stderr[-3000:]
    assert "Traceback" not in done.stderr
    errors = [line for line in done.stderr.splitlines() if line.startswith("error: ")]
    assert errors == [
        f"error: no space left on {checkpoints} while saving last.ckpt; the last good checkpoint is {last} (step 2); "
        "free some space (or pass another --trainer.default_root_dir) and resume with --ckpt_path"
    ]
    assert sorted(p.name for p in checkpoints.iterdir()) == ["last.ckpt"]  # no .part, no 0-byte file
    assert torch.load(last, weights_only=True)["global_step"] == 2  # whole, and still the step-2 checkpoint
    assert [p for p in tmpdir.rglob("*") if p.is_file()] == []  # nothing staged in $TMPDIR either
