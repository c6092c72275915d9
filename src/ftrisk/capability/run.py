"""Old entry points of ``ftrisk eval capability``, until the command line's dispatch table names
:mod:`ftrisk.cli.capability`; then this file goes. The capability code lives in :mod:`.harness` (lm-eval),
:mod:`.deltas`, :mod:`.report` and :mod:`.labels`."""

from ftrisk.cli.capability import add_arguments, main

__all__ = ["add_arguments", "main"]
