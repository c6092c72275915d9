"""A judge's error profile (its sensitivity and specificity on labelled data) and the refusal rate corrected for it.

Every rate ftrisk reports is a judge's count, and a judge errs: it misses some refusals (sensitivity < 1) and calls
some compliant replies refusals (specificity < 1). With both known, the Rogan–Gladen estimator (Rogan & Gladen
1978) turns the observed rate p into an estimate of the true rate::

    corrected = (p + specificity - 1) / (sensitivity + specificity - 1),  clipped to [0, 1]

Its interval must carry two uncertainties: the sample's (n replies) and the profile's (sensitivity and specificity
are themselves estimates from a labelled set of finite size). It is a seeded Monte Carlo over three independent
Jeffreys posteriors: the true observed-refusal probability ~ Beta(k + ½, n − k + ½), sensitivity ~
Beta(tp + ½, fn + ½) and specificity ~ Beta(tn + ½, fp + ½); each draw goes through the estimator (clipped; a draw
whose sensitivity + specificity ≤ 1 is left out and counted), and the 2.5th and 97.5th percentiles are the
interval. A raw rate below 1 − specificity or above sensitivity is one the judge's profile cannot produce at any
true rate; its corrected rate is clipped to 0 or 1 and marked ``clipped``: the profile does not fit these replies. Beta draws rather than a binomial bootstrap of the sample keep the interval from collapsing to a point
when every reply was refused (k = n), as the Wilson interval of the raw rate does not collapse either.

The correction assumes the judge errs on this model's replies as it erred on the labelled data: the same
sensitivity and specificity. Replies unlike the labelled set (another language, another model family's way of
refusing, full replies where the set holds openings) break that assumption, and no interval shows it.

A profile is keyed by the judge's name and checked against its :meth:`~ftrisk.judges.base.Judge.key` (name and
version, for a classifier its weights): a judge whose behaviour changed since its profile was measured gets no
correction. ``src/ftrisk/data/judges/profiles.json`` ships the profiles of the built-in judges
(``scripts/build_judge_profiles.py`` regenerates it); ``ftrisk judge --save-profile PATH`` writes one for any
judge from a labelled file.
"""

from __future__ import annotations

import functools
import hashlib
import json
from importlib import resources
from pathlib import Path

import numpy as np  # Beta draws: a vectorised sampler the standard library does not have

from ftrisk.errors import FtriskError
from ftrisk.io import write_json_atomic
from ftrisk.stats import wilson

SCHEMA = 1
DRAWS = 20000
SEED = 0
ASSUMPTION = ("The corrected rate assumes the judge errs on these replies as it erred on its labelled data "
              "(the same sensitivity and specificity).")
METHOD = ("Rogan–Gladen; 95% interval: seeded Monte Carlo over Jeffreys Beta posteriors of the observed rate, "
          "the judge's sensitivity and its specificity")


def _ci(k: int, n: int) -> list[float] | None:
    if n == 0:
        return None
    lo, hi = wilson(k, n)
    return [round(lo, 4), round(hi, 4)]


def from_counts(judge, tp: int, fn: int, tn: int, fp: int, *, data: str, n_unjudged: int = 0,
                data_sha256: str | dict | None = None, partial_as: str | None = None, note: str | None = None) -> dict:
    """The profile of ``judge`` from its confusion counts against gold labels (refusal = positive)."""
    out = {
        "judge": judge.name, "key": judge.key(), "version": judge.version, "measures": judge.measures,
        "data": data, "n": tp + fn + tn + fp, "n_refused": tp + fn, "n_complied": tn + fp, "n_unjudged": n_unjudged,
        "tp": tp, "fn": fn, "tn": tn, "fp": fp,
        "sensitivity": _round(_ratio(tp, tp + fn)), "sensitivity_ci95": _ci(tp, tp + fn),
        "specificity": _round(_ratio(tn, tn + fp)), "specificity_ci95": _ci(tn, tn + fp),
    }
    if data_sha256:
        out["data_sha256"] = data_sha256
    if partial_as:
        out["partial_as"] = partial_as
    if note:
        out["note"] = note
    return out


def file_sha256(path: str | Path) -> str:
    """The sha256 of a labelled file (a profile names the exact data it was measured on)."""
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def load(path: str | Path) -> dict[str, dict]:
    """The profiles in a profiles file, ``{judge name: profile}``; one-line error for a missing or bad file."""
    p = Path(path)
    try:
        doc = json.loads(p.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise FtriskError(f"judge profiles file '{p}' not found: write one with ftrisk judge --save-profile") from None
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise FtriskError(f"judge profiles file '{p}' is not valid JSON: write it again with ftrisk judge "
                          f"--save-profile") from None
    return _profiles(doc, str(p))


def _profiles(doc, where: str) -> dict[str, dict]:
    if not isinstance(doc, dict) or not isinstance(doc.get("profiles"), dict):
        raise FtriskError(f"judge profiles file '{where}' has no 'profiles' object: write it with ftrisk judge "
                          f"--save-profile")
    for name, prof in doc["profiles"].items():
        missing = [k for k in ("key", "tp", "fn", "tn", "fp", "data") if k not in (prof or {})]
        if missing:
            raise FtriskError(f"judge profiles file '{where}': profile '{name}' lacks '{missing[0]}': write it "
                              f"again with ftrisk judge --save-profile")
    return dict(doc["profiles"])


@functools.lru_cache(maxsize=1)
def _shipped_text() -> str:
    return resources.files("ftrisk").joinpath("data/judges/profiles.json").read_text(encoding="utf-8")


def shipped() -> dict[str, dict]:
    """The built-in judges' profiles (``data/judges/profiles.json``)."""
    return _profiles(json.loads(_shipped_text()), "ftrisk/data/judges/profiles.json")


def save(path: str | Path, profiles: dict[str, dict], about: str | None = None) -> Path:
    """Write ``profiles`` to ``path``, keeping the profiles of other judges an existing file there holds."""
    p = Path(path)
    old = load(p) if p.exists() else {}
    doc = {"schema": SCHEMA, "about": about or ("Judge error profiles: sensitivity (refusals labelled refused) and "
                                                "specificity (compliant replies labelled complied) on labelled data."),
           "profiles": {**old, **profiles}}
    return write_json_atomic(p, doc)


def lookup(judge, profiles: dict[str, dict] | None = None) -> tuple[dict | None, str | None]:
    """``(profile, None)`` for ``judge``, or ``(None, why there is none)``."""
    profiles = shipped() if profiles is None else profiles
    prof = profiles.get(judge.name)
    if prof is None:
        return None, f"no error profile for judge {judge.name} (measure one with ftrisk judge --save-profile)"
    if prof["key"] != judge.key():
        return None, (f"the error profile of {judge.name} was measured on another version of the judge "
                      f"(regenerate it: scripts/build_judge_profiles.py or ftrisk judge --save-profile)")
    return prof, None


def rogan_gladen(p: float, sensitivity: float, specificity: float) -> float | None:
    """The true rate implied by an observed rate ``p``, clipped to [0, 1]; ``None`` when the judge is no better
    than chance (sensitivity + specificity ≤ 1)."""
    j = sensitivity + specificity - 1.0
    if j <= 0:
        return None
    return min(1.0, max(0.0, (p + specificity - 1.0) / j))


def corrected_rate(k: int, n: int, prof: dict, draws: int = DRAWS, seed: int = SEED) -> dict:
    """The rate of ``k`` refusals in ``n`` judged replies corrected for the judge's error profile ``prof``, with
    its 95% interval (see the module docstring). The profile's summary travels with it."""
    tp, fn, tn, fp = (int(prof[x]) for x in ("tp", "fn", "tn", "fp"))
    ref = {"data": prof["data"], "n": tp + fn + tn + fp, "sensitivity": _round(_ratio(tp, tp + fn)),
           "specificity": _round(_ratio(tn, tn + fp))}
    out: dict = {"refusal_rate": None, "ci95": None, "profile": ref}
    if n == 0:
        return {**out, "reason": "no reply could be judged"}
    if tp + fn == 0 or tn + fp == 0:
        return {**out, "reason": "the error profile lacks refused or complied examples"}
    point = rogan_gladen(k / n, tp / (tp + fn), tn / (tn + fp))
    if point is None:
        return {**out, "reason": "the judge is no better than chance on its labelled data"}
    rng = np.random.default_rng(seed)
    p = rng.beta(k + 0.5, n - k + 0.5, draws)
    se = rng.beta(tp + 0.5, fn + 0.5, draws)
    sp = rng.beta(tn + 0.5, fp + 0.5, draws)
    j = se + sp - 1.0
    ok = j > 0
    theta = np.clip((p[ok] + sp[ok] - 1.0) / j[ok], 0.0, 1.0)
    lo, hi = np.percentile(theta, [2.5, 97.5]) if theta.size else (None, None)
    out.update(refusal_rate=round(point, 4), ci95=[round(float(lo), 4), round(float(hi), 4)] if theta.size else None)
    if not (1 - tn / (tn + fp)) <= k / n <= tp / (tp + fn):
        out["clipped"] = True  # a raw rate this judge's profile cannot produce: the profile does not fit these replies
    if not ok.all():
        out["draws_dropped"] = int((~ok).sum())
    return out


def _ratio(k: int, n: int) -> float | None:
    return k / n if n else None


def _round(x: float | None) -> float | None:
    return None if x is None else round(x, 4)


def correct(k: int, n: int, judge, profiles: dict[str, dict] | None = None) -> dict:
    """``corrected`` of one judge's rate in results.json: :func:`corrected_rate` under the judge's profile, or
    ``{"refusal_rate": None, "reason": ...}`` when it has none."""
    prof, why = lookup(judge, profiles)
    if prof is None:
        return {"refusal_rate": None, "ci95": None, "reason": why}
    return corrected_rate(k, n, prof)
