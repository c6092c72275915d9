"""Where log records go: the console keeps ftrisk's own lines; library warnings go to the run's log.

Python warnings (a library's ``FutureWarning`` or deprecation notice) would otherwise be printed on
stderr, in the middle of the progress line. :func:`setup` captures them into logging (the
``py.warnings`` logger) and keeps them off the console unless ``-v``. Until the command knows its
output folder they are held in memory; :func:`log_to` then writes them, and every later warning,
to ``<folder>/ftrisk.log`` (made at the first record). A command that fails before it has a folder
writes no log.
"""

from __future__ import annotations

import collections
import logging
from pathlib import Path

LOG_FILE = "ftrisk.log"
FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
#: records held at most before the output folder is known (Python shows a warning once per place)
HELD = 1000

_warnings = logging.getLogger("py.warnings")


class RunLog(logging.Handler):
    """Warnings held in memory until the output folder is known, then written to its log file."""

    def __init__(self):
        super().__init__(logging.WARNING)
        self.held: collections.deque = collections.deque(maxlen=HELD)
        self.file: logging.FileHandler | None = None

    def emit(self, record: logging.LogRecord) -> None:
        if self.file is None:
            self.held.append(record)
        else:
            self.file.handle(record)

    def write_to(self, path: Path) -> None:
        new = logging.FileHandler(path, encoding="utf-8", delay=True)
        new.setFormatter(logging.Formatter(FORMAT))
        if self.file is not None:
            self.file.close()
        self.file = new
        while self.held:
            new.handle(self.held.popleft())

    def close(self) -> None:
        if self.file is not None:
            self.file.close()
        self.held.clear()
        super().close()


_handler: RunLog | None = None


def setup(verbose: bool = False) -> None:
    """Capture Python warnings into logging, off the console (on it with ``verbose``), held for the run's log with
    ftrisk's own warnings."""
    global _handler
    close()
    logging.captureWarnings(False)  # installed afresh: a test harness may have replaced warnings.showwarning since
    logging.captureWarnings(True)
    _handler = RunLog()
    logging.getLogger().addHandler(_handler)
    _warnings.propagate = verbose
    if not verbose:  # (with -v they reach the root logger's handlers, this one among them)
        _warnings.addHandler(_handler)


def log_to(folder: str | Path) -> None:
    """From now on the run's log is ``folder/ftrisk.log``: the warnings held so far are written there first.
    Does nothing outside a command (no :func:`setup`)."""
    if _handler is not None:
        _handler.write_to(Path(folder) / LOG_FILE)


def close() -> None:
    """The end of a command: detach and close what :func:`setup` installed (held records are dropped)."""
    global _handler
    if _handler is None:
        return
    _warnings.removeHandler(_handler)
    logging.getLogger().removeHandler(_handler)
    _handler.close()
    _handler = None
    _warnings.propagate = True
    logging.captureWarnings(False)
