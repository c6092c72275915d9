"""``ablation``: refusal-direction ablation (Arditi et al. 2024; heretic is its automated peer), no training.

1. Mean residual-stream activations of harmful and harmless train prompts at the post-instruction tokens; each
   (layer, position) gives a candidate direction, their normalised difference (:mod:`.directions`).
2. The subject's refusal tokens are read from its judged replies to the harmful train prompts (:mod:`.refusal`).
3. The direction is chosen on validation prompts: a cheap first-token refusal score for every candidate, the KL on
   harmless prompts for the best ones, then judged greedy replies for the best few (:mod:`.select`).
4. It is orthogonalised out of the weights, and the edited model written as a full folder (:mod:`.edit`).

Every stage resumes from its files in the attack's folder (the activations pass per batch, the selection per
candidate, the folder as a whole), and the cost meter resumes with them, so a killed run neither redoes nor
recounts finished work. All forward work is counted at ``2 N`` FLOPs per token (:mod:`ftrisk.cost`).
"""

from __future__ import annotations

import json
import logging

from ftrisk import registry
from ftrisk.attacks.ablation import arch, data
from ftrisk.attacks.ablation.directions import PASS_FILE, candidates, mean_activations, save_atomic
from ftrisk.attacks.ablation.edit import orthogonalise, write_model
from ftrisk.attacks.ablation.forward import BATCH_SIZE, encode, pad_id
from ftrisk.attacks.ablation.refusal import refusal_tokens
from ftrisk.attacks.ablation.select import CANDIDATES, Candidates, judge_shortlist, kept_layers, score, shortlist
from ftrisk.attacks.base import Attack, AttackResult, Point
from ftrisk.config.identity import ablation_identity
from ftrisk.cost import CostMeter, count_params
from ftrisk.errors import FtriskError
from ftrisk.io import read_json, write_json_atomic
from ftrisk.keys import stage_key

log = logging.getLogger(__name__)

VERSION = 2  # 2: a candidate brought within the KL bound by its strength
"""Bump when a change makes stored partial work (activations, scores) invalid."""


def by_length(prompts: dict, rows: dict) -> tuple[dict, dict]:
    """Each set's prompts and token ids in order of length (stable): batches of similar length pad less."""
    order = {k: sorted(range(len(r)), key=lambda i: len(r[i])) for k, r in rows.items()}
    return ({k: [prompts[k][i] for i in o] for k, o in order.items()},
            {k: [rows[k][i] for i in o] for k, o in order.items()})


class AblationAttack(Attack):
    """Refusal-direction ablation: one point, the edited model, at the cost of the search and the edit."""

    name = "ablation"
    trains = False
    batch_size = BATCH_SIZE

    @classmethod
    def check(cls, cfg, *, subject, protected, backend_cls=None) -> None:
        if subject.quantize:
            raise FtriskError(f"ablation edits the weights, which model.quantize={subject.quantize} loads in k-bit: "
                              "unset model.quantize for this attack")
        arch.check_folder(subject.path)
        data.prompt_sets(cfg.ablation, protected)

    def run(self, subject, examples, out_dir, *, seed, eval_at, usd_per_hour, desc=None) -> AttackResult:
        a = self.cfg.ablation
        out_dir.mkdir(parents=True, exist_ok=True)
        prompts = data.split(data.prompt_sets(a, self.context.protected), a.n_train, a.n_val, seed)
        key = stage_key("ablation", version=VERSION, settings=ablation_identity(a), subject=subject.identity(),
                        seed=seed, batch_size=self.batch_size,
                        prompts={k: [[it.id, it.prompt] for it in v] for k, v in prompts.items()})
        model, tok = subject.load()
        arch.writers(model)  # a hub model of a type the folder check could not read fails here
        meter = CostMeter(device=str(model.device), usd_per_hour=usd_per_hour, params=count_params(model),
                          flops_per_token=2)
        meter.start()
        prompts, rows = by_length(prompts, {k: encode(tok, [it.prompt for it in v], subject.system_prompt)
                                            for k, v in prompts.items()})
        shortest = min(len(r) for rs in rows.values() for r in rs)
        if shortest < a.positions:
            raise FtriskError(f"attack.ablation.positions={a.positions} is more than the shortest chat prompt "
                              f"({shortest} tokens): lower it")
        if a.layer is None:
            r, info = self._search(model, tok, prompts, rows, out_dir, key, meter, desc)
        else:
            r, info = self._fixed(model, tok, rows, out_dir, meter, desc, pass_key=stage_key(
                "ablation-pass", version=VERSION, subject=subject.identity(), seed=seed, batch_size=self.batch_size,
                positions=a.positions, prompts={k: [[it.id, it.prompt] for it in v] for k, v in prompts.items()}))
        final = out_dir / "model"
        record = read_json(final / "ablation.json") if (final / ".complete").exists() else None
        if record and record.get("key") == key:
            meter.restore(record["meter"])  # the folder was written before a kill: not edited again
        else:
            untied = orthogonalise(model, r, info["strength"])
            write_model(model, tok, final, {"method": "ablation", "key": key, "base_model": subject.spec,
                                            "base_fingerprint": subject.fingerprint, "untied_embeddings": untied,
                                            **info, "meter": meter.state()})
        del model
        meter.stop()
        cost = meter.summary()
        edited = subject.with_weights(final)
        result = AttackResult(self.name, seed, edited, cost, [Point(1, cost, edited)], 0, 0, "done",
                              {**info, "candidates": CANDIDATES})
        write_json_atomic(out_dir / "attack.json", result.to_json(out_dir))
        log.info("ablation: layer %d position %d strength %.3f, KL %s, validation refusal rate %s", info["layer"],
                 info["position"], info["strength"], info.get("kl_harmless"), json.dumps(info.get("val_refusal_rate")))
        return result

    def _fixed(self, model, tok, rows: dict, out_dir, meter, desc, pass_key: str):
        """(the direction at ``ablation.layer`` and ``position``, the info) with no validation search: what
        ``ftrisk sweep`` searches over. The activations pass depends only on the subject and the prompts, so it is
        kept in the context's cache folder and shared by every trial of a sweep; each trial is charged for it."""
        a = self.cfg.ablation
        cache = self.context.cache_dir or out_dir
        cache.mkdir(parents=True, exist_ok=True)
        acts = mean_activations(model, rows, pad=pad_id(tok), positions=a.positions,
                                out=cache / f"ablation-{pass_key}.safetensors", key=pass_key, meter=meter,
                                batch_size=self.batch_size, desc=f"{desc or 'ablation'}: activations")
        dirs = candidates(acts)
        n_layers = model.config.num_hidden_layers
        layer = min(n_layers - 1, max(0, round(a.layer * (n_layers - 1))))
        r = dirs[layer, a.position + a.positions]
        if float(r.norm()) == 0.0:
            raise FtriskError(f"ablation: the direction at layer {layer} (attack.ablation.layer={a.layer}) is zero: the "
                              f"harmful and harmless prompts have the same mean there; choose another layer")
        return r, {"layer": layer, "position": a.position, "strength": a.strength, "searched": False,
                   "n_harmful": a.n_train, "n_harmless": a.n_train}

    def _search(self, model, tok, prompts: dict, rows: dict, out_dir, key: str, meter, desc):
        """(the chosen unit direction, the result's info): steps 1 to 3, each resumed from its file."""
        a, batch = self.cfg.ablation, {"meter": meter, "batch_size": self.batch_size}
        pad = pad_id(tok)
        acts = mean_activations(model, rows, pad=pad, positions=a.positions, out=out_dir / PASS_FILE, key=key,
                                desc=f"{desc or 'ablation'}: activations", **batch)
        dirs = candidates(acts)
        book = Candidates(out_dir / CANDIDATES, key)
        if book.last_meter():
            meter.restore(book.last_meter())
        judge = self.context.judge or registry.lookup("judge", "refusal-patterns")()
        refusal = refusal_tokens(model, tok, prompts=[it.prompt for it in prompts["harmful_train"]],
                                 rows=rows["harmful_train"], judge=judge, acts=acts,
                                 max_new_tokens=a.val_max_new_tokens, book=book, **batch)
        scored = score(model, dirs, n_layers=kept_layers(model.config.num_hidden_layers, a.max_layer_fraction),
                       rows=rows["harmful_val"], tokens=refusal["tokens"], pad=pad, strength=a.strength, book=book,
                       **batch)
        if not scored:
            raise FtriskError("ablation found no candidate direction: the harmful and harmless prompts have the same "
                              "mean activations at every layer tried; check attack.ablation.harmful and harmless")
        short, kl_met = shortlist(model, dirs, scored, rows=rows["harmless_val"],
                                  base=acts.val_logprobs["harmless_val"], kl_max=a.kl_max, top_k=a.top_k, pad=pad,
                                  strength=a.strength, book=book, harmful_rows=rows["harmful_val"],
                                  tokens=refusal["tokens"], **batch)
        best = judge_shortlist(model, tok, dirs, short, prompts=[it.prompt for it in prompts["harmful_val"]],
                               rows=rows["harmful_val"], judge=judge, max_new_tokens=a.val_max_new_tokens,
                               strength=a.strength, book=book, **batch)
        r = dirs[best["layer"], best["position"] + a.positions]
        save_atomic({"direction": r}, out_dir / "direction.safetensors",
                    {"layer": str(best["layer"]), "position": str(best["position"])})
        return r, {"layer": best["layer"], "position": best["position"], "strength": best["strength"],
                   "direction_candidates": len(scored),
                   "kl_harmless": best["kl_harmless"], "kl_max_met": kl_met,
                   "val_refusal_rate": best["val_refusal_rate"], "refusal_score": best["refusal_score"],
                   "n_harmful": a.n_train + a.n_val, "n_harmless": a.n_train + a.n_val,
                   "refusal_tokens": [{"id": t, "token": tok.decode([t])} for t in refusal["tokens"]],
                   "refusal_tokens_rule": refusal["rule"], "base_train_refusal_rate": refusal["base_refusal_rate"]}
