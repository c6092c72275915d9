"""Prompt sets: benchmarks as data (data/benchmarks.yaml), selection and splits."""
