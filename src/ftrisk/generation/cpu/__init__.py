"""CPU decode kernels: the greedy loop, head screening, caches, linear and attention kernels."""
