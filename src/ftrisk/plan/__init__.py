"""``ftrisk plan``: memory, devices, hours and dollars of an attack and its evaluations, before money is spent.

Reads only a model's config.json (no weights; torch only to measure a CPU). One idea per module:
:mod:`.shape` (the model's sizes and parameter counts), :mod:`.job` (what is planned), :mod:`.memory` (bytes and
devices), :mod:`.roofline` (the seconds of one pass), :mod:`.attack`, :mod:`.generation` and :mod:`.capability`
(the seconds of each workload), :mod:`.devices` (gpus.yaml and this CPU, measured), :mod:`.inputs` (the model and
the job from the command's arguments or a run config), :mod:`.estimate` (the plan, its verdict and ``ftrisk run``'s
line). The command line and its table are :mod:`ftrisk.cli.plan`.

Units: GiB = 2**30 B; e = bytes per element of the model dtype; N = non-embedding parameters; h, i, L, V = hidden,
MLP, layers, vocabulary; s = tokens per sequence.
"""
