"""Library output: every message of the package goes through the ``lit_gpt5`` logger, never ``print``.

Progress (validation losses, samples, what a resumed run changed, the estimated memory) is logged at INFO and goes
to stdout; problems the run recovers from (a damaged cache rebuilt, a skipped step, a stop requested) at WARNING to
stderr. The messages read as they always did: the handler writes the bare message. Silence or redirect them as with
any library::

    logging.getLogger("lit_gpt5").setLevel(logging.WARNING)       # only warnings
    logging.getLogger("lit_gpt5").disabled = True                 # nothing
    logging.getLogger("lit_gpt5").propagate = True                # also to your own handlers (root logger)

The console handler belongs to the ``lit_gpt5`` logger alone, and only when the program has configured no logging of
its own, exactly as Lightning does for ``lightning.pytorch``: with a handler on the root logger (``logging.basicConfig``
called first) the messages propagate there instead. Nothing is set on the root logger or on any other library's.
The commands (``lit-gpt5 ...``, ``python -m lit_gpt5.cli``) are programs, not a library: they always show the
package's messages on the console (``to_console``), and print their own results (``print``): that output is what they
exist for.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Iterator
from contextlib import contextmanager

ROOT = "lit_gpt5"


class _ConsoleHandler(logging.Handler):
    """INFO and below to ``sys.stdout``, WARNING and above to ``sys.stderr``, looked up when a record is written (so
    redirections made after import, e.g. a notebook's or pytest's, are honoured)."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            stream = sys.stderr if record.levelno >= logging.WARNING else sys.stdout
            stream.write(self.format(record) + "\n")
            stream.flush()
        except Exception:  # noqa: BLE001 - logging must never raise into the run
            self.handleError(record)


def to_console() -> logging.Logger:
    """Write the package's messages to the console with our own handler (and not also to the root logger's). What a
    command does at its start; idempotent."""
    logger = logging.getLogger(ROOT)
    if not any(isinstance(h, _ConsoleHandler) for h in logger.handlers):
        handler = _ConsoleHandler()
        handler.setFormatter(logging.Formatter("%(message)s"))
        logger.addHandler(handler)
    logger.propagate = False
    return logger


def _configure() -> None:
    logging.getLogger(ROOT).setLevel(logging.INFO)
    # As Lightning (lightning/pytorch/__init__.py): a console handler of our own only when the root logger has none,
    # so a program that configured logging gets our messages through its own handlers, formatted its own way.
    if not logging.getLogger().hasHandlers():
        to_console()


_configure()


def get_logger(name: str) -> logging.Logger:
    """The logger of a module of the package (``lit_gpt5.<module>``): it inherits the ``lit_gpt5`` logger's level
    and handler."""
    return logging.getLogger(name if name.startswith(ROOT) else f"{ROOT}.{name}")


def no_advert(record) -> bool:
    """Drop the advertisement Lightning logs at every start: it would sit between the user and one-line errors."""
    return not str(record.msg).startswith("💡 Tip")


# Where Lightning logs its rank-zero messages, the advertisement among them (a Lightning internal: named here only).
LIGHTNING_RANK_ZERO = "lightning.pytorch.utilities.rank_zero"


@contextmanager
def without_advert() -> Iterator[None]:
    """Lightning's advertisement filtered out for the enclosed code only (it is logged while a Trainer is built)."""
    lightning_log = logging.getLogger(LIGHTNING_RANK_ZERO)
    lightning_log.addFilter(no_advert)
    try:
        yield
    finally:
        lightning_log.removeFilter(no_advert)
