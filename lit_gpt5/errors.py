"""Errors that a user can fix.

Anything raised as a ``UserError`` is printed by the command-line entry points as one line (what is wrong and what
to do), with a non-zero exit and no traceback. Set ``LIT_GPT5_DEBUG=1`` to see the traceback as well.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")

DEBUG_ENV = "LIT_GPT5_DEBUG"


class UserError(Exception):
    """A problem with the user's input or environment, with the fix in the message."""

    exit_code = 2


class ArgumentParser(argparse.ArgumentParser):
    """argparse, with a bad argument reported like every other user error: one line naming it, exit status 2."""

    def error(self, message: str):  # type: ignore[override]
        raise UserError(f"{message}; see {self.prog} --help")


def debug_enabled() -> bool:
    return os.environ.get(DEBUG_ENV, "").strip().lower() not in ("", "0", "false", "no")


def run_main(main: Callable[[], T]) -> T:
    """Run a command's ``main``: a ``UserError`` (or a Lightning configuration error) becomes one line on stderr and
    exit code 2; a stop by SIGTERM exits with 143, as a killed process does, so a job scheduler sees it stopped."""
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
            from lit_gpt5.files import os_error_message

            print(f"error: {os_error_message(cause, 'use')}", file=sys.stderr)
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
