"""Capability before and after (MMLU, HellaSwag) through lm-evaluation-harness."""
