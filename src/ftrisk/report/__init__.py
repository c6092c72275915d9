"""Reports of a finished run from its results.json: report.md (:mod:`.markdown`), report.html (:mod:`.html`, its
sections in :mod:`.sections`, plots in :mod:`.plots`), the release-risk headline (:mod:`.summary`) and the
comparison of runs (:mod:`.comparison`). Every number is printed through :mod:`ftrisk.formatting`."""
