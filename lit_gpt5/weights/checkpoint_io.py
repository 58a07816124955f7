"""How every checkpoint file of a run is written: whole or not at all.

``AtomicCheckpointIO`` writes each checkpoint to a temporary file in its own directory, flushed, fsynced and renamed,
so a full disk, a crash or a kill never leaves a truncated ``.ckpt`` (nor a stray copy in ``$TMPDIR``); running out of
space is one line that names the directory and the last good checkpoint.
"""

from __future__ import annotations

import errno
import io
import os
import tempfile
from pathlib import Path
from typing import Any

import torch
from lightning.pytorch.plugins.io import TorchCheckpointIO

from lit_gpt5.errors import UserError
from lit_gpt5.files import current_umask


class CheckpointWriteError(UserError):
    """A checkpoint could not be written (no space, no permission); nothing partial was left behind."""


class AtomicCheckpointIO(TorchCheckpointIO):
    """``torch.save`` into a temporary file beside the destination, flush + fsync, then an atomic rename.

    Lightning's own writer stages the file elsewhere and moves it, which is a copy when ``$TMPDIR`` is on another file
    system: a full disk then leaves a truncated checkpoint under the final name. Here the destination is either the
    old file or the complete new one.
    """

    def __init__(self) -> None:
        super().__init__()
        self.last_written: tuple[str, int | None] | None = None  # (path, global step) of the last good write

    def save_checkpoint(self, checkpoint: dict[str, Any], path, storage_options: Any | None = None) -> None:
        if storage_options is not None:
            raise TypeError(f"{type(self).__name__} takes no storage_options")
        dest = Path(path)
        buffer = io.BytesIO()
        torch.save(checkpoint, buffer)  # serialized first, so a failing disk raises a plain OSError on write
        try:
            dest.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=dest.parent, prefix=f".{dest.name}.", suffix=".part")
        except OSError as err:
            raise self._error(err, dest) from None
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(buffer.getbuffer())
                f.flush()
                os.fsync(f.fileno())
            os.chmod(tmp, 0o666 & ~current_umask())  # mkstemp makes 0600: a checkpoint is as shareable as any file
            os.replace(tmp, dest)
        except BaseException as err:
            Path(tmp).unlink(missing_ok=True)
            if isinstance(err, OSError):
                raise self._error(err, dest) from None
            raise
        self.last_written = (str(dest), checkpoint.get("global_step"))

    def _error(self, err: OSError, dest: Path) -> CheckpointWriteError:
        if self.last_written is not None:
            good = f"the last good checkpoint is {self.last_written[0]} (step {self.last_written[1]})"
        else:
            good = "no checkpoint was written by this run"
        problem = "no space left on" if err.errno in (errno.ENOSPC, errno.EDQUOT) else f"{err.strerror} in"
        return CheckpointWriteError(
            f"{problem} {dest.parent} while saving {dest.name}; {good}; free some space (or pass another "
            "--trainer.default_root_dir) and resume with --ckpt_path"
        )
