"""The sections of report.html, one module each; :mod:`ftrisk.report.html` puts them on the page in order."""
