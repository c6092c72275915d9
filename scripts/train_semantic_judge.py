#!/usr/bin/env python3
"""Build the ``refusal-semantic`` judge's head from its train split, bit for bit (offline, CPU, a few minutes).

    python3 scripts/train_semantic_judge.py                      # rebuild src/ftrisk/data/judges/semantic/head.safetensors
    python3 scripts/train_semantic_judge.py --check              # rebuild to a temp file; exit 1 if it differs
    python3 scripts/train_semantic_judge.py --measure FILE.jsonl # the shipped judge on a labelled file (no training)
    python3 scripts/train_semantic_judge.py --speed FILE.jsonl   # its model load time and replies/s (2 threads)

Steps: read ``data/judges/semantic/train.jsonl`` (never the blind split); features of every (prompt, reply) from the
embedded SmolLM2-135M-Instruct at each candidate layer (one forward pass, 2 threads); for each layer and L2 strength,
5-fold cross-validated accuracy of the binary label (refused or partial vs complied), folds from a seeded
permutation stratified by label; the shallowest layer (the fastest), then the strongest l2, whose accuracy is within
one standard error of the best (the "one-SE rule": differences smaller than that are noise on a few hundred items)
is fitted on the whole split and saved with its metadata: model, its fingerprint, layer, token limits, the train
file's sha256, the chosen l2, the cross-validated numbers. Features are computed one reply per forward pass on 2
threads and rounded to 1e-4; training is float64 L-BFGS from zeros. The head is bit-for-bit the same on the same
kind of CPU; on another, a last-bit difference in a float32 matmul can still cross a rounding boundary (``--check``
says).
The same cross-validated predictions are printed per pattern-judge rule beside the pattern judge's own accuracy
there, with the cascade's cross-validated accuracy (the rules the cascade leaves to the classifier are
``ftrisk.judges.semantic.CLASSIFIER_RULES``).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

import torch

from ftrisk.judges import semantic, semantic_head
from ftrisk.judges.patterns import RefusalPatternsJudge
from ftrisk.judges.semantic_features import FeatureExtractor
from ftrisk.model import loading

DATA = Path(__file__).resolve().parent.parent / "src/ftrisk/data/judges/semantic"
MODEL = "embedded:smollm2-135m-instruct"
LAYERS = (6, 9, 12, 15, 18)
L2 = (1e-3, 3e-3, 1e-2, 3e-2, 1e-1)
FOLDS, SEED, THREADS = 5, 0, 2
LIMITS = {"max_prompt_tokens": 96, "max_reply_tokens": 256}


def read(path: Path) -> list[dict]:
    rows = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    for n, r in enumerate(rows, 1):
        if r.get("label") not in semantic_head.CLASSES:
            sys.exit(f"{path}:{n}: label must be one of {', '.join(semantic_head.CLASSES)} (got {r.get('label')!r})")
    return rows


def binary(labels) -> list[int]:
    return [0 if c == "complied" else 1 for c in labels]


def folds(y: list[int], k: int, seed: int) -> list[list[int]]:
    """k folds stratified by ``y`` from a seeded permutation."""
    g = torch.Generator().manual_seed(seed)
    out: list[list[int]] = [[] for _ in range(k)]
    for cls in sorted(set(y)):
        idx = [i for i in torch.randperm(len(y), generator=g).tolist() if y[i] == cls]
        for j, i in enumerate(idx):
            out[j % k].append(i)
    return [sorted(f) for f in out]


def cross_validate(x, y, l2: float, parts) -> list[float]:
    """Out-of-fold P(refused) + P(partial) for every item."""
    p = [0.0] * len(y)
    for held in parts:
        keep = sorted(set(range(len(y))) - set(held))
        head = semantic_head.fit(x[keep], y[keep], l2)
        for i, v in zip(held, semantic_head.refused_probability(head, x[held]).tolist()):
            p[i] = v
    return p


def pattern_stage(rows, oof: list[float]) -> dict:
    """Per pattern-judge rule: n, the pattern judge's accuracy and the classifier's out-of-fold accuracy there."""
    verdicts = RefusalPatternsJudge().judge([(r["prompt"], r["reply"]) for r in rows])
    gold = binary(r["label"] for r in rows)
    table: dict = defaultdict(lambda: [0, 0, 0])
    for v, g, p in zip(verdicts, gold, oof):
        t = table[v.evidence.get("rule", "?")]  # every reply here is English: the cascade's language rule is idle
        t[0] += 1
        t[1] += int(v.label == g)
        t[2] += int((p >= 0.5) == bool(g))
    per_rule = {rule: {"n": n, "patterns": a, "classifier": c} for rule, (n, a, c) in sorted(table.items())}
    cascade = sum(t["classifier"] if semantic.classifier_reads(rule) else t["patterns"] for rule, t in per_rule.items())
    return {"per_rule": per_rule, "cascade_cv_accuracy": round(cascade / len(rows), 4),
            "patterns_accuracy": round(sum(t["patterns"] for t in per_rule.values()) / len(rows), 4)}


def cached_features(ex: FeatureExtractor, fingerprint: str, rows, progress) -> dict:
    """{layer: [n, features] float64, rounded to 1e-4}; rows already seen (same model, limits and text) are read
    from ``$FTRISK_CACHE/semantic-features.pt`` instead of recomputed (a rebuild after adding rows costs only those)."""
    def key(r):
        return hashlib.sha256(json.dumps([fingerprint, LIMITS, LAYERS, r["prompt"], r["reply"]]).encode()).hexdigest()

    cache_file = loading.cache_dir() / "semantic-features.pt"
    cache = torch.load(cache_file) if cache_file.is_file() else {}
    keys = [key(r) for r in rows]
    new = [i for i, k in enumerate(keys) if k not in cache]
    if new:
        feats, _ = ex.features([(rows[i]["prompt"], rows[i]["reply"]) for i in new], progress, read=LAYERS)
        for j, i in enumerate(new):
            cache[keys[i]] = {k: torch.round(feats[k][j].double() * 1e4) / 1e4 for k in LAYERS}
        cache_file.parent.mkdir(parents=True, exist_ok=True)
        torch.save(cache, cache_file)
    return {k: torch.stack([cache[h][k] for h in keys]) for k in LAYERS}


def build(train_path: Path, out: Path) -> dict:
    torch.manual_seed(SEED)
    rows = read(train_path)
    path = loading.resolve(MODEL)
    t0 = time.time()
    # one reply per forward pass: each reply's matmuls then have the same shapes whatever else is being built, so its
    # features do not depend on which rows share its batch (batched, padding changes the kernels' blocking and the
    # last bits, and a rounding boundary can turn those into a different head)
    ex = FeatureExtractor(path, max(LAYERS), batch_size=1, threads=THREADS, **LIMITS)
    done = [0]

    def progress(n):
        done[0] += n
        print(f"\rfeatures {done[0]}/{len(rows)}", end="", file=sys.stderr, flush=True)

    feats = cached_features(ex, loading.fingerprint(path), rows, progress)
    print(f"\nfeatures in {time.time() - t0:.0f} s", file=sys.stderr)
    y = torch.tensor([semantic_head.CLASSES.index(r["label"]) for r in rows])
    gold = binary(r["label"] for r in rows)
    parts = folds(gold, FOLDS, SEED)
    grid, oofs = {}, {}
    for layer in LAYERS:
        for l2 in L2:
            oof = cross_validate(feats[layer], y, l2, parts)
            acc = sum((p >= 0.5) == bool(g) for p, g in zip(oof, gold)) / len(gold)
            grid[f"{layer}/{l2}"], oofs[(layer, l2)] = round(acc, 4), oof
            print(f"layer {layer:2d} l2 {l2:g}: cv accuracy {acc:.4f}", file=sys.stderr)
    top = max(grid.values())
    floor = top - (top * (1 - top) / len(gold)) ** 0.5  # one standard error below the best
    best = min((k for k in oofs if grid[f"{k[0]}/{k[1]}"] >= floor), key=lambda k: (k[0], -k[1]))
    layer, l2 = best
    head = semantic_head.fit(feats[layer], y, l2)
    head.meta = {"model": MODEL, "model_fingerprint": loading.fingerprint(path), "layers": layer,
                 "features": "last-token and reply-mean hidden states after the final norm", **LIMITS,
                 "l2": l2, "threshold": 0.5, "train_file": train_path.name,
                 "train_sha256": hashlib.sha256(train_path.read_bytes()).hexdigest(), "n_train": len(rows),
                 "cv_folds": FOLDS, "seed": SEED, "cv_accuracy": grid[f"{layer}/{l2}"], "cv_grid": grid}
    semantic_head.save(head, out)
    return {"layer": layer, "l2": l2, "cv_accuracy": grid[f"{layer}/{l2}"],
            "pattern_stage": pattern_stage(rows, oofs[best])}


SPECS = ("refusal-semantic", "refusal-semantic:mode=classifier", "refusal-patterns", "gcg")


def measure(path: Path, specs=SPECS) -> None:
    """The shipped judge (cascade and classifier alone) and the pattern judges on a labelled file: accuracy with its
    Wilson 95% CI, precision and recall of refusal, seconds. Reads this folder's files (``reply``, ``label`` in
    complied / refused / partial) and tests/data's (``completion``, ``label`` 0 / 1)."""
    from ftrisk.judges.base import build as build_judge
    from ftrisk.stats import wilson

    rows = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    pairs = [(r.get("prompt", ""), r["reply"] if "reply" in r else r["completion"]) for r in rows]
    gold = [int(r["label"]) if r["label"] in (0, 1) else int(r["label"] != "complied") for r in rows]
    print(f"{path}: n={len(gold)} ({sum(gold)} refused or partial)")
    for spec in specs:
        j = build_judge(spec)
        t = time.time()
        pred = [v.label for v in j.judge(pairs)]
        secs = time.time() - t
        k = sum(p == g for p, g in zip(pred, gold))
        tp = sum(p == 1 and g == 1 for p, g in zip(pred, gold))
        lo, hi = wilson(k, len(gold))
        print(f"  {spec:34s} {k}/{len(gold)} = {k / len(gold):.1%} [{lo:.1%}, {hi:.1%}]  precision "
              f"{tp / max(sum(pred), 1):.1%} recall {tp / max(sum(gold), 1):.1%}  ({secs:.1f} s)")


def speed(path: Path) -> None:
    """Model load time and replies per second of the shipped judge on a labelled file's replies, on 2 threads."""
    from ftrisk.judges.base import build as build_judge

    torch.set_num_threads(THREADS)
    rows = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    pairs = [(r.get("prompt", ""), r["reply"] if "reply" in r else r["completion"]) for r in rows]
    for spec in ("refusal-semantic:mode=classifier", "refusal-semantic"):
        j = build_judge(spec)
        t = time.time()
        j.extractor()
        load = time.time() - t
        t = time.time()
        out = j.judge(pairs)
        secs = time.time() - t
        n_cls = sum(v.evidence.get("stage") == "classifier" for v in out)
        print(f"  {spec:34s} load {load:.1f} s; {len(pairs)} replies in {secs:.1f} s = {len(pairs) / secs:.1f} "
              f"replies/s ({n_cls} read by the classifier)")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--train", type=Path, default=DATA / "train.jsonl")
    ap.add_argument("--out", type=Path, default=DATA / "head.safetensors")
    ap.add_argument("--check", action="store_true", help="rebuild to a temp file and compare with --out")
    ap.add_argument("--measure", type=Path, help="measure the shipped judge on this labelled JSONL")
    ap.add_argument("--judges", default=",".join(SPECS), help="judges --measure compares (';' between specs)")
    ap.add_argument("--speed", type=Path, help="time the shipped judge (load, replies/s) on this JSONL's replies")
    a = ap.parse_args()
    if a.measure:
        return measure(a.measure, a.judges.split(";") if ";" in a.judges else a.judges.split(","))
    if a.speed:
        return speed(a.speed)
    if a.check:
        with tempfile.TemporaryDirectory() as d:
            fresh = Path(d) / "head.safetensors"
            build(a.train, fresh)
            same = fresh.read_bytes() == a.out.read_bytes()
        print("identical" if same else f"DIFFERS from {a.out}")
        sys.exit(0 if same else 1)
    print(json.dumps(build(a.train, a.out), indent=1))


if __name__ == "__main__":
    main()
