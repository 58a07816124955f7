"""Errors that a user can fix.

Anything raised as a ``UserError`` is printed by the command-line entry points as one line (what is wrong and what
to do), with a non-zero exit and no traceback. Set ``LIT_GPT5_DEBUG=1`` to see the traceback as well.
"""

from __future__ import annotations

import errno
import os
import sys
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")

DEBUG_ENV = "LIT_GPT5_DEBUG"


class UserError(Exception):
    """A problem with the user's input or environment, with the fix in the message."""

    exit_code = 2


class NonFiniteLossError(UserError):
    """The loss or the gradient became NaN or infinite; the update was not applied.

    ``resume_point`` is filled in by whoever knows where the run was last saved (the last-checkpoint callback).
    """

    def __init__(self, what: str, step: int) -> None:
        super().__init__(what, step)
        self.what, self.step = what, step
        self.resume_point: str | None = None

    def __str__(self) -> str:
        where = self.resume_point or "no checkpoint callback is configured, so nothing was saved"
        return (
            f"{self.what} at step {self.step}: stopped before the update; {where}; resume from it with a lower "
            "--model.learning_rate, or pass --model.on_nonfinite skip"
        )


def os_error_message(err: OSError, what: str = "write") -> str:
    """An ``OSError`` on a path as one line: what failed, where, and what to do about it."""
    path = err.filename or "a file"
    if err.errno in (errno.ENOSPC, errno.EDQUOT):
        fix = "free some space or choose a folder on another disk"
    elif err.errno == errno.EROFS:
        fix = "it is on a read-only file system: choose a writable folder"
    elif err.errno in (errno.EACCES, errno.EPERM):
        fix = "you may not write there: choose a writable folder or fix its permissions"
    elif err.errno in (errno.ENOTDIR, errno.EEXIST):
        fix = "a file stands where a folder is needed (or the other way round): choose another path"
    else:
        fix = "check the path and the disk"
    return f"cannot {what} {path}: {err.strerror or err}; {fix}"


def debug_enabled() -> bool:
    return os.environ.get(DEBUG_ENV, "").strip().lower() not in ("", "0", "false", "no")


def run_main(main: Callable[[], T]) -> T:
    """Run a command's ``main``: a ``UserError`` (or a Lightning configuration error) becomes one line on stderr and
    exit code 2; a stop by SIGTERM exits with 143, as a killed process does, so a job scheduler sees it stopped. A
    command is a program: the package's messages go to its console (``lit_gpt5.log.to_console``)."""
    from lit_gpt5.log import to_console

    to_console()
    try:
        return main()
    except SystemExit as err:
        # Lightning's SIGTERMException; looked up rather than imported, to keep start-up light (it is loaded
        # whenever one can have been raised).
        lightning = sys.modules.get("lightning.pytorch.utilities.exceptions")
        if lightning is None or not isinstance(err, lightning.SIGTERMException):
            raise
        print("stopped by SIGTERM", file=sys.stderr)
        raise SystemExit(143) from None
    except KeyboardInterrupt:
        if debug_enabled():
            raise
        print("interrupted", file=sys.stderr)
        raise SystemExit(130) from None
    except Exception as err:
        # jsonargparse wraps what a class raises while it instantiates it; the UserError is still in the chain.
        # Lightning's configuration errors are user errors too; it is loaded whenever one can have been raised.
        lightning = sys.modules.get("lightning.fabric.utilities.exceptions")
        user_types = (UserError,) + ((lightning.MisconfigurationException,) if lightning else ())
        cause = _find(err, user_types)
        if cause is None:
            # A file-system error on a path (a read-only or full disk, a file where a folder should be) that no
            # check caught first: still one line naming the path and the fix.
            cause = _find(err, (OSError,))
            if cause is None or not cause.filename or debug_enabled():
                raise
            what = "write" if cause.errno in (errno.ENOSPC, errno.EDQUOT, errno.EROFS) else "use"
            print(f"error: {os_error_message(cause, what)}", file=sys.stderr)
            raise SystemExit(2) from None
        if debug_enabled():
            raise
        message = " ".join(str(cause).split())  # one line, whatever the library wrote
        print(f"error: {message}", file=sys.stderr)
        raise SystemExit(getattr(cause, "exit_code", 2)) from None


def _find(err: BaseException | None, types: tuple[type, ...]) -> BaseException | None:
    seen = set()
    while err is not None and id(err) not in seen:
        if isinstance(err, types):
            return err
        seen.add(id(err))
        err = err.__cause__ or err.__context__
    return None


def __getattr__(name: str) -> object:  # names of 0.1 that moved (lit_gpt5.old_paths)
    from lit_gpt5.old_paths import moved_names

    return moved_names(__name__)(name)
