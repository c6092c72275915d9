"""``ctranslate2``: greedy decoding with CTranslate2 (optional extra: ``pip install 'ftrisk[ct2]'``).

The subject (its adapter merged first) is converted once with ``ctranslate2.converters.TransformersConverter`` and
cached under ``$FTRISK_CACHE/ct2/<key>``, the key made of the weights' and the adapter's fingerprints, the dtype and
the CTranslate2 version. Each conversion is checked against transformers: greedy tokens of a few prompts at batch 1
must be identical (a wrong rotary base, e.g. SmolLM2's rope_theta 100000 read as 10000, gives fluent but other text).

``ctranslate2`` computes in the subject's dtype (float32 on the CPU); ``ctranslate2-int8`` is the same converted model
run with int8 weights (``compute_type=int8_float32``): faster on the CPU, other tokens, so opt-in and recorded.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import tempfile
import time
from pathlib import Path

import ctranslate2  # at top level: a missing extra fails in the registry with one line, before any work

from ftrisk.errors import FtriskError
from ftrisk.generation.base import Backend, prompt_text
from ftrisk.generation.cpu import resources
from ftrisk.generation.cpu.loop import greedy
from ftrisk.generation.hf import token_batches
from ftrisk.model.chat import chat_text, template_sha256
from ftrisk.model.loading import cache_dir

#: Prompts whose greedy tokens must match transformers' after a conversion (batch 1, float32).
CHECK_PROMPTS = ("Write a short poem about the sea.", "How do I make a cup of tea?", "What is 12 times 7?")
CHECK_TOKENS = 12


class CT2Backend(Backend):
    name = "ctranslate2"
    compute_type: str | None = None
    """None: the subject's dtype."""

    def __init__(self, subject, settings):
        super().__init__(subject, settings)
        if subject.quantize:
            raise FtriskError(f"generation backend '{self.name}' cannot run a {subject.quantize} (model.quantize) subject: "
                              "use generation.backend=hf")
        if subject.trust_remote_code:
            raise FtriskError(f"generation backend '{self.name}' does not run custom model code (trust_remote_code): "
                              "use generation.backend=hf")
        self.device = "cuda" if subject.device.startswith("cuda") else "cpu"
        self.device_index = int(subject.device.split(":")[1]) if ":" in subject.device else 0
        ctype = self.compute_type or {"float32": "float32", "bfloat16": "bfloat16", "float16": "float16"}.get(subject.dtype)
        supported = ctranslate2.get_supported_compute_types(self.device)
        if ctype not in supported:
            raise FtriskError(f"generation backend '{self.name}' cannot compute in {ctype or subject.dtype} on {self.device} "
                              f"(supported: {', '.join(sorted(supported))}): set model.dtype=float32 or use "
                              "generation.backend=hf")
        self.ctype = ctype
        self._tok = None
        self._gen = None
        self._threads = None

    # ------------------------------------------------------------------ conversion (cached)
    def key(self) -> str:
        s = self.subject
        ident = {"weights": s.fingerprint, "adapter": s.adapter_fingerprint, "dtype": s.dtype,
                 "ctranslate2": ctranslate2.__version__, "format": 1}
        return hashlib.sha256(json.dumps(ident, sort_keys=True).encode()).hexdigest()[:16]

    def converted(self) -> Path:
        """The converted model's folder, converted and checked on first use."""
        final = cache_dir() / "ct2" / self.key()
        if (final / ".complete").is_file():
            return final
        final.parent.mkdir(parents=True, exist_ok=True)
        model, tok = self.subject.load()
        work = Path(tempfile.mkdtemp(prefix=final.name + ".", dir=final.parent))
        try:
            src = Path(self.subject.path)
            if self.subject.adapter is not None:  # converted from the merged weights
                src = work / "merged"
                model.save_pretrained(src, safe_serialization=True)
                tok.save_pretrained(src)
            out = work / "ct2"
            try:
                ctranslate2.converters.TransformersConverter(str(src), low_cpu_mem_usage=True).convert(
                    str(out), quantization=self.subject.dtype, force=True)
            except Exception as e:  # an architecture CTranslate2 does not know, ...
                raise FtriskError(f"generation backend '{self.name}' could not convert '{self.subject.spec}' "
                                  f"({str(e).splitlines()[0][:200] if str(e) else type(e).__name__}): "
                                  "use generation.backend=hf") from None
            check = self._check(out, model, tok)
            (out / "ftrisk_conversion.json").write_text(json.dumps(
                {"subject": self.subject.identity(), "ctranslate2": ctranslate2.__version__, "check": check}, indent=2))
            (out / ".complete").write_text("")
            if final.exists():
                shutil.rmtree(final)
            out.rename(final)
        finally:
            shutil.rmtree(work, ignore_errors=True)
        return final

    def _check(self, path: Path, model, tok) -> dict:
        """Greedy tokens of CHECK_PROMPTS, transformers vs the converted model, one prompt at a time."""
        gen = ctranslate2.Generator(str(path), device=self.device, device_index=self.device_index,
                                    compute_type=self.subject.dtype, intra_threads=1)
        same = 0
        for prompt in CHECK_PROMPTS:
            ids = tok(chat_text(tok, prompt, self.subject.system_prompt), add_special_tokens=False)["input_ids"]
            ref = greedy(model, [ids], max_new_tokens=CHECK_TOKENS, eos_id=tok.eos_token_id,
                         pad_id=tok.eos_token_id)[0].ids
            res = gen.generate_batch([tok.convert_ids_to_tokens(ids)], max_length=CHECK_TOKENS, sampling_topk=1,
                                     beam_size=1, include_prompt_in_result=False, end_token=tok.eos_token)
            same += res[0].sequences_ids[0] == ref
        del gen
        if same < len(CHECK_PROMPTS):
            raise FtriskError(f"generation backend '{self.name}': the converted model's greedy tokens differ from "
                              f"transformers' on {len(CHECK_PROMPTS) - same} of {len(CHECK_PROMPTS)} check prompts "
                              "(a conversion error such as a wrong rotary base): use generation.backend=hf")
        return {"prompts": len(CHECK_PROMPTS), "tokens": CHECK_TOKENS, "identical": same}

    # ------------------------------------------------------------------ generation
    def tokenizer(self):
        if self._tok is None:
            self._tok = self.subject.load_tokenizer()
        return self._tok

    def generator(self):
        """The loaded model; on the CPU reloaded when other processes now leave a different number of cores free."""
        threads = 1
        if self.device == "cpu":  # fixed while the model is loaded: the cores other processes left free just now
            share = resources.CpuShare()
            time.sleep(0.2)
            threads = share()
        if self._gen is None or threads != self._threads:
            path = self.converted()
            self._gen = None
            self._gen = ctranslate2.Generator(str(path), device=self.device, device_index=self.device_index,
                                              compute_type=self.ctype, intra_threads=threads, inter_threads=1)
            self._threads = threads
        return self._gen

    def record(self) -> dict:
        tok = self.tokenizer()
        s = self.settings
        return {"backend": self.name, "decoding": "greedy", "do_sample": False, "max_new_tokens": s.max_new_tokens,
                "batch_size": s.batch_size, "max_batch_tokens": s.max_batch_tokens,
                "ctranslate2": ctranslate2.__version__, "compute_type": self.ctype, "converted": self.key(),
                "adapter": "merged before conversion" if self.subject.adapter else None,
                "stop_when_judged": bool(getattr(s, "stop_when_judged", False)),
                "system_prompt": self.subject.system_prompt, "chat_template_sha256": template_sha256(tok)}

    def generate(self, items, *, max_new_tokens, desc="generate", stop=None):
        tok = self.tokenizer()
        system = self.subject.system_prompt
        # a prefill (in the prompt's ids) opens the reply; include_prompt_in_result=False leaves it out of the completion
        ids = {it.id: tok(prompt_text(tok, it, system), add_special_tokens=False)["input_ids"] for it in items}
        todo = sorted(items, key=lambda it: -len(ids[it.id]))
        widths = [len(ids[it.id]) + max_new_tokens for it in todo]
        for batch in token_batches(todo, widths, self.settings.batch_size, self.settings.max_batch_tokens):
            gen = self.generator()
            new: dict[int, list[int]] = {b: [] for b in range(len(batch))}
            cut: set[int] = set()
            callback = None
            if stop:
                def callback(step):
                    new[step.batch_id].append(step.token_id)
                    if step.token_id != tok.eos_token_id and stop(
                            tok.decode(new[step.batch_id], skip_special_tokens=True)):
                        cut.add(step.batch_id)
                        return True
                    return False
            results = gen.generate_batch([tok.convert_ids_to_tokens(ids[it.id]) for it in batch],
                                         max_length=max_new_tokens, sampling_topk=1, beam_size=1,
                                         include_prompt_in_result=False, end_token=tok.eos_token,
                                         return_end_token=True, callback=callback)
            rows = []
            for b, (it, res) in enumerate(zip(batch, results)):
                out = list(res.sequences_ids[0])
                finished = bool(out) and out[-1] == tok.eos_token_id
                if finished:
                    out = out[:-1]
                row = {"id": it.id, "completion": tok.decode(out, skip_special_tokens=True), "prompt_tokens": len(ids[it.id]),
                       "new_tokens": len(out), "finished": finished}
                if b in cut and not finished and len(out) < max_new_tokens:
                    row["truncated"] = True
                rows.append(row)
            yield rows

    def close(self) -> None:
        self._gen = None


class CT2Int8Backend(CT2Backend):
    """The converted model with int8 weights (CPU: ``int8_float32``): opt-in, its tokens differ from float32's."""

    name = "ctranslate2-int8"
    compute_type = "int8_float32"
