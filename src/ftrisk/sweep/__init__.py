"""``ftrisk sweep``: the cheapest way to undo safety found by searching the attacker's choices.

An Optuna study (:mod:`.study`) over ``sweep.space`` (:mod:`.space`); each trial (:mod:`.trial`) measures its own cost
to undo on a grid of checkpoints by a galloping search, a confirmation and a bisection (:mod:`.crossing`), with
capability, over-refusal and KL measured at the crossing only (:mod:`.measure`). The best configurations are re-run
with ``sweep.seeds``; :mod:`.results` turns the study into ``results.json`` and its worst case, :mod:`.report` into
the report. Many workers share one study through Optuna's storages (:mod:`.storage`).
"""
