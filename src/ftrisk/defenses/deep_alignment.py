"""``deep-alignment``: safety-recovery augmentation (Qi et al. 2024, "Safety Alignment Should Be Made More Than Just
a Few Tokens Deep", Section 3; the authors' ``gen_safety_augmentation_batch`` in Unispac/shallow-vs-deep-alignment).

Refusal SFT teaches a model to refuse in its first few tokens; an attacker who moves those tokens (an affirmative
opening, by prefilling or by a few fine-tuning steps) finds the unaligned model behind them. This recipe trains the
refusal *after* such an opening: each harmful prompt, with probability :data:`P_AUGMENT`, gets the first k tokens
of an affirmative opening written into the assistant turn with no loss on them (``Example.masked_prefix``), k
uniform in [1, min(:data:`K_MAX`, the opening's tokens)], and the model is trained to recover into its refusal;
the other prompts are trained as in ``refusal-sft``. The paper's defaults, kept here: p = 0.5, k uniform in
[1, 100] tokens, the refusal appended right after the cut prefix (no transition), benign anchors answered by the
aligned model itself.

One difference, for ftrisk's rule that no harmful completion is written anywhere: the paper's prefix is the first
k tokens of a *harmful response*; here it is a content-free affirmative opening in AdvBench's target style ("Sure,
here is a step-by-step guide", ``ftrisk/data/defenses/openings.jsonl``) that names no task, so k never exceeds the
opening's 6-16 tokens (SmolLM2's tokenizer) and recovery is trained at those depths only. The openings are disjoint
from every attack target and evaluation prompt (an opening equal to one is left out, with one line naming it).
"""

from __future__ import annotations

import json
import logging
import random
from importlib import resources

from ftrisk.defenses.refusal_sft import RefusalSFT
from ftrisk.errors import FtriskError
from ftrisk.prompts import benchmarks
from ftrisk.training.data import Example

log = logging.getLogger(__name__)

#: Probability that a harmful prompt's example is a recovery example (the authors' ``randint(0, 1)`` toss).
P_AUGMENT = 0.5
#: Most opening tokens kept before the recovery (the authors' ``randint(1, min(100, len(harmful)))``).
K_MAX = 100
#: Where the openings live, as a user sees it in an error message.
OPENINGS = "ftrisk/data/defenses/openings.jsonl"


def builtin_openings() -> list[tuple[str, str]]:
    """(id, text) of each shipped content-free affirmative opening."""
    node = resources.files("ftrisk").joinpath("data").joinpath("defenses").joinpath("openings.jsonl")
    rows = []
    for n, line in enumerate(node.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
            rows.append((str(row["id"]), str(row["text"])))
        except (json.JSONDecodeError, KeyError, TypeError):
            raise FtriskError(f"{OPENINGS}, line {n}: expected {{\"id\", \"text\"}}; ftrisk's shipped data is damaged: "
                              f"reinstall ftrisk") from None
    return rows


def protected_texts(protected: list[benchmarks.Item]) -> dict[str, str]:
    """Normalised text -> the item it belongs to, for every protected prompt and affirmative target (AdvBench's
    ``target``, JailbreakBench's ``Target``: what the attack data and the prefill attack write)."""
    texts: dict[str, str] = {}
    for it in protected:
        for t in (it.prompt, it.extra.get("target"), it.extra.get("Target")):
            if t:
                texts.setdefault(benchmarks.normalize(str(t)), it.id)
    return texts


def recovery(tok, opening: str, refusal: str, rng: random.Random) -> tuple[str, str] | None:
    """(masked prefix, trained response): the opening's first k tokens (k drawn from ``rng``) and the refusal after
    them; None for an opening with no tokens."""
    ids = tok(opening, add_special_tokens=False)["input_ids"]
    if not ids:
        return None
    k = rng.randint(1, min(K_MAX, len(ids)))
    prefix = tok.decode(ids[:k], skip_special_tokens=False, clean_up_tokenization_spaces=False)
    # the refusal follows the cut opening as the next word: the paper joins the two token sequences
    joiner = "" if not prefix or prefix[-1].isspace() else " "
    return prefix, joiner + refusal


class DeepAlignment(RefusalSFT):
    """Safety-recovery examples on half of the harmful prompts; everything else as ``refusal-sft``."""

    name = "deep-alignment"

    def identity(self) -> dict:
        return {"name": self.name, "p": P_AUGMENT, "k_max": K_MAX, "openings": OPENINGS}

    def extend_plan(self, data_plan: dict, cfg, protected: list) -> dict:
        """Each harmful row gains an opening (or None: a plain refusal example), drawn by the run's seed; openings
        equal to an attack target or evaluation prompt are left out unless ``harden.allow_overlap``."""
        openings, taken = builtin_openings(), protected_texts(protected)
        clash = [(i, t, taken[benchmarks.normalize(t)]) for i, t in openings if benchmarks.normalize(t) in taken]
        if clash and not cfg.harden.allow_overlap:
            i, t, other = clash[0]
            log.warning("deep-alignment: %d opening(s) equal an attack target or evaluation prompt and are left out "
                        "(e.g. %s %r = %s)", len(clash), i, t, other)
            gone = {c[0] for c in clash}
            openings = [(i, t) for i, t in openings if i not in gone]
        if not openings:
            raise FtriskError(f"deep-alignment has no opening left: every one in {OPENINGS} equals an attack target "
                              f"or evaluation prompt (set harden.allow_overlap=true to keep them)")
        rng = random.Random(f"deep-alignment:{cfg.seed}")
        harmful = [(i, p, r, rng.choice(openings)[1] if rng.random() < P_AUGMENT else None)
                   for i, p, r, *_ in data_plan["harmful"]]
        excluded = {**data_plan["n_excluded_overlap"], "openings": 0 if cfg.harden.allow_overlap else len(clash)}
        return {**data_plan, "harmful": harmful, "n_excluded_overlap": excluded}

    def harmful_examples(self, harmful: list, tok, seed: int) -> list[Example]:
        rng = random.Random(f"deep-alignment-k:{seed}")  # k depends on the tokenizer: drawn here, not in the plan
        examples = []
        for _, prompt, refusal, opening in harmful:
            cut = recovery(tok, opening, refusal, rng) if opening else None
            examples.append(Example(prompt, cut[1], masked_prefix=cut[0]) if cut else Example(prompt, refusal))
        return examples

    def record(self, data_plan: dict) -> dict:
        n = sum(1 for row in data_plan["harmful"] if row[3])
        return {"recipe_settings": {"p": P_AUGMENT, "k_max": K_MAX, "openings": OPENINGS}, "n_recovery_examples": n}
