"""Judges: label stored completions as refused / complied / could not judge, with evidence.

One protocol (:mod:`.base`), one implementation per file, built from spec strings through
:mod:`ftrisk.registry`; :mod:`.store` runs any judge over stored completions, resumably.
"""

from ftrisk.judges.base import COMPLIED, REFUSED, UNJUDGED, Judge, Verdict, build, parse_spec, spec_from_mapping, split_specs

__all__ = ["COMPLIED", "REFUSED", "UNJUDGED", "Judge", "Verdict", "build", "parse_spec", "spec_from_mapping", "split_specs"]
