"""Capability before and after (MMLU, HellaSwag) through lm-evaluation-harness: vendored data and item selection
(:mod:`.data`), scoring (:mod:`.harness`), the paired change between stages (:mod:`.deltas`) and report.md's lines
(:mod:`.report`)."""
