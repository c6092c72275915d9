"""``hf``: batched greedy decoding with transformers ``generate`` (always available, CPU or CUDA).

Prompts are length-sorted and cut into batches of at most ``batch_size`` prompts and
``max_batch_tokens`` padded tokens, left-padded, longest first.
"""

from __future__ import annotations

from ..chat import chat_text, template_sha256
from .base import Backend


def generate_texts(model, tok, texts: list[str], max_new_tokens: int) -> list[tuple[str, int, bool]]:
    """Greedy-decode one left-padded batch; returns (completion, new token count, stopped at EOS)."""
    import torch
    from transformers import GenerationConfig

    gc = GenerationConfig(
        max_new_tokens=max_new_tokens, do_sample=False, num_beams=1,
        pad_token_id=tok.pad_token_id, eos_token_id=tok.eos_token_id,
    )
    enc = tok(texts, return_tensors="pt", padding=True, add_special_tokens=False).to(model.device)
    with torch.inference_mode():
        out = model.generate(**enc, generation_config=gc)
    new = out[:, enc["input_ids"].shape[1]:].tolist()
    results = []
    for ids in new:
        finished = tok.eos_token_id in ids
        if finished:
            ids = ids[: ids.index(tok.eos_token_id)]
        results.append((tok.decode(ids, skip_special_tokens=True), len(ids), finished))
    return results


def token_batches(items: list, lengths: list[int], batch_size: int, max_tokens: int | None) -> list[list]:
    """Cut length-sorted items into batches of at most ``batch_size`` items and ``max_tokens`` padded tokens,
    so a few long prompts (HarmBench contexts) run in small batches instead of padding a large one."""
    batches, cur, widest = [], [], 0
    for it, n in zip(items, lengths):
        if cur and (len(cur) >= batch_size or (max_tokens and max(widest, n) * (len(cur) + 1) > max_tokens)):
            batches.append(cur)
            cur, widest = [], 0
        cur.append(it)
        widest = max(widest, n)
    if cur:
        batches.append(cur)
    return batches


class HFBackend(Backend):
    name = "hf"

    def __init__(self, subject, settings, loaded=None):
        super().__init__(subject, settings)
        self._loaded = loaded

    def hf_model(self):
        if self._loaded is None:
            self._loaded = self.subject.load()
        return self._loaded

    def record(self) -> dict:
        _, tok = self.hf_model()
        s = self.settings
        return {"backend": self.name, "decoding": "greedy", "do_sample": False, "max_new_tokens": s.max_new_tokens,
                "batch_size": s.batch_size, "max_batch_tokens": s.max_batch_tokens, "padding_side": "left",
                "system_prompt": self.subject.system_prompt, "chat_template_sha256": template_sha256(tok)}

    def generate(self, items, *, max_new_tokens, desc="generate"):
        model, tok = self.hf_model()
        system = self.subject.system_prompt
        texts = {it.id: chat_text(tok, it.prompt, system) for it in items}
        lengths = {i: len(tok(t, add_special_tokens=False)["input_ids"]) for i, t in texts.items()}
        todo = sorted(items, key=lambda it: -lengths[it.id])  # length-sorted: little padding; longest first
        widths = [lengths[it.id] + max_new_tokens for it in todo]
        for batch in token_batches(todo, widths, self.settings.batch_size, self.settings.max_batch_tokens):
            outs = generate_texts(model, tok, [texts[it.id] for it in batch], max_new_tokens)
            yield [{"id": it.id, "completion": c, "prompt_tokens": lengths[it.id], "new_tokens": n, "finished": f}
                   for it, (c, n, f) in zip(batch, outs)]

    def close(self) -> None:
        self._loaded = None
