"""The experiment: evaluate -> harden -> evaluate -> attack -> evaluate -> report."""
