"""Old entry points of ``ftrisk report`` and ``ftrisk compare``, until the command line's dispatch table names
:mod:`ftrisk.cli.report` and :mod:`ftrisk.cli.compare`; then this file goes. The comparison itself lives in
:mod:`ftrisk.report.comparison` and :mod:`ftrisk.report.comparison_page`."""

from ftrisk.cli.compare import add_arguments as add_compare_arguments
from ftrisk.cli.compare import main as compare_main
from ftrisk.cli.report import add_arguments as add_report_arguments
from ftrisk.cli.report import main as report_main

__all__ = ["add_compare_arguments", "add_report_arguments", "compare_main", "report_main"]
