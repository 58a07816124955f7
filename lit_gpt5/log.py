"""Library output: every message of the package goes through the ``lit_gpt5`` logger, never ``print``.

Progress (validation losses, samples, what a resumed run changed, the estimated memory) is logged at INFO and goes
to stdout; problems the run recovers from (a damaged cache rebuilt, a skipped step, a stop requested) at WARNING to
stderr. The messages read as they always did: the handler writes the bare message. Silence or redirect them as with
any library::

    logging.getLogger("lit_gpt5").setLevel(logging.WARNING)       # only warnings
    logging.getLogger("lit_gpt5").disabled = True                 # nothing
    logging.getLogger("lit_gpt5").propagate = True                # also to your own handlers (root logger)

The console handler belongs to the ``lit_gpt5`` logger alone (as Lightning's belongs to ``lightning``): nothing is
set on the root logger or on any other library's. Commands (``lit-gpt5 ...``) still print their own results
(``print``): that output is what they exist for.
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


def _configure() -> logging.Logger:
    logger = logging.getLogger(ROOT)
    if not any(isinstance(h, _ConsoleHandler) for h in logger.handlers):  # idempotent on re-import
        handler = _ConsoleHandler()
        handler.setFormatter(logging.Formatter("%(message)s"))
        logger.addHandler(handler)
        logger.setLevel(logging.INFO)
        logger.propagate = False
    return logger


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
