"""results.json -> report.md / report.html, run comparison, shared summaries."""
