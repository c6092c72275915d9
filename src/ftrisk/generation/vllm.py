"""``vllm``: greedy decoding with vLLM's offline engine (the ``gpu`` extra; CUDA GPUs only).

Written against vLLM 0.30.0 (the PyPI wheel's source: ``vllm/entrypoints/llm.py``, ``vllm/lora/request.py``,
``vllm/config/lora.py``, ``vllm/sampling_params.py``, ``vllm/inputs/llm.py``, ``vllm/outputs.py``)::

    LLM(model, *, tokenizer, trust_remote_code, tensor_parallel_size, dtype, seed, gpu_memory_utilization,
        **EngineArgs)                            # enable_lora, max_lora_rank, max_loras, max_model_len
    LLM.generate(prompts, sampling_params, *, use_tqdm, lora_request) -> list[RequestOutput]  # input order
    SamplingParams(temperature, max_tokens, stop_token_ids, skip_special_tokens)
    TokensPrompt(prompt_token_ids=[...])         # a TypedDict
    LoRARequest(lora_name, lora_int_id, lora_path)
    RequestOutput.outputs[0]: CompletionOutput(token_ids, finish_reason "stop" | "length", stop_reason)

The same as ``hf``, by construction:

- **prompts**: ftrisk applies the subject's chat template itself (:func:`ftrisk.generation.base.prompt_text`: the
  template, then an item's prefill), tokenizes with ``add_special_tokens=False`` and gives vLLM the token ids, so BOS
  handling, the template override and prefilling are the HF backend's;
- **rows**: ``new_tokens`` counts the tokens before the stop token, ``finished`` is true when the model ended its
  reply (``finish_reason == "stop"``) and false when it ran out of ``max_new_tokens``; ``completion`` is decoded
  by the subject's tokenizer (``skip_special_tokens=True``) as ``hf`` decodes it.

Not the same: vLLM also stops at the extra end-of-turn ids of the model's ``generation_config.json`` (Llama 3's
``<|eom_id|>``, say) where ``hf`` stops only at the tokenizer's EOS; and its kernels and batch composition are
not bitwise those of transformers, so a greedy completion can part from ``hf``'s after a near-tie.

An adapter is applied through ``LoRARequest`` (``enable_lora``, ``max_lora_rank`` = the adapter's rank rounded up
to a rank vLLM compiles for), never merged. Prompts go to the engine longest first in chunks of ``chunk_size``
(continuous batching inside a chunk); each chunk's rows are yielded, so the resumable wrapper stores them.

``import vllm`` is at the top of this module: it is light (vLLM's package loads its parts on first use), and the
registry lookup of the pipeline's preflight turns a missing vLLM into "pip install 'ftrisk[gpu]'" before any work.
The engine (which loads torch, CUDA and the weights) is built at the first ``generate``. Tests put a fake
``vllm`` module into ``sys.modules``.
"""

from __future__ import annotations

import gc
import json
import sys
from pathlib import Path
from typing import get_args

import vllm  # ImportError -> the registry's "pip install 'ftrisk[gpu]'"

from ftrisk.model.chat import template_sha256
from ftrisk.errors import FtriskError
from ftrisk.generation.base import Backend, prompt_text

#: vLLM 0.30's ``max_lora_rank`` choices (``vllm.config.lora.MaxLoRARanks``), when they cannot be read from vLLM
LORA_RANKS = (1, 8, 16, 32, 64, 128, 256, 320, 512)
ADAPTER_NAME = "ftrisk-adapter"
DEFAULTS = {"tensor_parallel_size": 1, "gpu_memory_utilization": 0.85, "max_model_len": None, "chunk_size": 256}
"""Settings read from ``generation`` when it has them, else these (see :meth:`VLLMBackend.check`)."""


def lora_ranks() -> tuple[int, ...]:
    try:
        from vllm.config.lora import MaxLoRARanks

        return tuple(sorted(get_args(MaxLoRARanks))) or LORA_RANKS
    except (ImportError, AttributeError):
        return LORA_RANKS


def adapter_rank(adapter: str | Path) -> int:
    """The largest LoRA rank of a PEFT adapter; one line for what vLLM cannot apply (DoRA, modules_to_save, bias)."""
    cfg = json.loads((Path(adapter) / "adapter_config.json").read_text(encoding="utf-8"))
    checks = (("DoRA", cfg.get("use_dora")), ("modules_to_save", cfg.get("modules_to_save")),
              (f"bias={cfg.get('bias')}", cfg.get("bias") not in (None, "none")))
    unsupported = [name for name, bad in checks if bad]
    if unsupported:
        raise FtriskError(f"generation.backend=vllm cannot apply adapter '{adapter}' ({', '.join(unsupported)}): "
                          "use generation.backend=hf")
    return max([int(cfg.get("r", 8)), *(int(r) for r in (cfg.get("rank_pattern") or {}).values())])


def max_lora_rank(rank: int, allowed: tuple[int, ...] = LORA_RANKS) -> int:
    """The smallest rank vLLM compiles for that holds ``rank``."""
    for r in sorted(allowed):
        if r >= rank:
            return r
    raise FtriskError(f"LoRA rank {rank} is above vLLM's largest max_lora_rank ({max(allowed)}): "
                      "use generation.backend=hf")


def _free_cuda_cache() -> None:
    """Hand memory this process's torch keeps cached back to the GPU (vLLM's engine sizes itself on free memory)."""
    torch = sys.modules.get("torch")
    if torch is not None and torch.cuda.is_available():
        torch.cuda.empty_cache()


class VLLMBackend(Backend):
    name = "vllm"

    def __init__(self, subject, settings):
        super().__init__(subject, settings)
        self.options = self.check(subject, settings)
        self.lora_rank = adapter_rank(subject.adapter) if subject.adapter else None
        self.max_lora_rank = max_lora_rank(self.lora_rank, lora_ranks()) if self.lora_rank else None
        self._llm = self._tok = None

    @staticmethod
    def check(subject, settings) -> dict:
        """This backend's settings; one line for a subject or setting it cannot run (before any model loads)."""
        if subject.quantize:
            raise FtriskError(f"generation.backend=vllm does not load bitsandbytes {subject.quantize} weights "
                              "(model.quantize): use generation.backend=hf")
        device = str(subject.device)
        if not device.startswith("cuda"):
            raise FtriskError(f"generation.backend=vllm runs on CUDA GPUs and model.device is '{device}': "
                              "use generation.backend=hf")
        if device not in ("cuda", "cuda:0"):
            raise FtriskError(f"generation.backend=vllm uses the first tensor_parallel_size visible GPUs, not "
                              f"model.device '{device}': choose GPUs with CUDA_VISIBLE_DEVICES, "
                              "and set model.device=cuda")
        o = {k: getattr(settings, k, v) for k, v in DEFAULTS.items()}
        for k in ("tensor_parallel_size", "chunk_size", "max_model_len"):
            v = o[k]
            if not (v is None and k == "max_model_len") and (isinstance(v, bool) or not isinstance(v, int) or v < 1):
                raise FtriskError(f"config key 'generation.{k}' must be a whole number >= 1 (got {v!r})")
        g = o["gpu_memory_utilization"]
        if isinstance(g, bool) or not isinstance(g, (int, float)) or not 0 < g <= 1:
            raise FtriskError(f"config key 'generation.gpu_memory_utilization' must be in (0, 1] (got {g!r})")
        return o

    def tokenizer(self):
        if self._tok is None:
            self._tok = self.subject.load_tokenizer()
        return self._tok

    def record(self) -> dict:
        o, s = self.options, self.subject
        return {"backend": self.name, "vllm_version": getattr(vllm, "__version__", "unknown"), "decoding": "greedy",
                "temperature": 0.0, "max_new_tokens": self.settings.max_new_tokens, "dtype": s.dtype,
                "tensor_parallel_size": o["tensor_parallel_size"],
                "gpu_memory_utilization": o["gpu_memory_utilization"],
                "max_model_len": o["max_model_len"], "chunk_size": o["chunk_size"], "adapter_rank": self.lora_rank,
                "max_lora_rank": self.max_lora_rank, "padding_side": "n/a (continuous batching)",
                "system_prompt": s.system_prompt, "chat_template_sha256": template_sha256(self.tokenizer())}

    def engine(self):
        """The vLLM engine, built on first use (GPU memory is taken here)."""
        if self._llm is None:
            s, o = self.subject, self.options
            kwargs = {"model": s.path, "tokenizer": s.path, "dtype": s.dtype, "seed": 0,
                      "trust_remote_code": s.trust_remote_code, "tensor_parallel_size": o["tensor_parallel_size"],
                      "gpu_memory_utilization": o["gpu_memory_utilization"]}
            if o["max_model_len"] is not None:
                kwargs["max_model_len"] = o["max_model_len"]
            if s.adapter:
                kwargs.update(enable_lora=True, max_lora_rank=self.max_lora_rank, max_loras=1)
            _free_cuda_cache()
            try:
                self._llm = vllm.LLM(**kwargs)
            except (RuntimeError, ValueError) as e:  # vLLM's log above has the detail
                msg = str(e).splitlines()[0][:200] if str(e) else type(e).__name__
                raise FtriskError(f"vLLM could not start on '{s.spec}': {msg}") from e
        return self._llm

    def lora_request(self):
        if not self.subject.adapter:
            return None
        from vllm.lora.request import LoRARequest

        return LoRARequest(ADAPTER_NAME, 1, str(Path(self.subject.adapter).resolve()))

    def generate(self, items, *, max_new_tokens, desc="generate", stop=None):
        if stop:
            raise FtriskError("generation.backend=vllm cannot stop a reply once the judges' opening is final "
                              "(generation.stop_when_judged): use generation.backend=hf, or unset stop_when_judged")
        tok = self.tokenizer()
        system = self.subject.system_prompt
        # a prefill (in the prompt's ids) opens the reply; vLLM's output holds only the new tokens
        ids = {it.id: tok(prompt_text(tok, it, system), add_special_tokens=False)["input_ids"] for it in items}
        todo = sorted(items, key=lambda it: -len(ids[it.id]))  # longest first, as hf
        if not todo:
            return
        llm, lora = self.engine(), self.lora_request()
        eos = tok.eos_token_id
        params = vllm.SamplingParams(temperature=0.0, max_tokens=max_new_tokens,
                                     stop_token_ids=[eos] if eos is not None else [], skip_special_tokens=True)
        step = self.options["chunk_size"]
        for i in range(0, len(todo), step):
            chunk = todo[i:i + step]
            outs = llm.generate([vllm.TokensPrompt(prompt_token_ids=ids[it.id]) for it in chunk], params,
                                use_tqdm=False, lora_request=lora)
            if len(outs) != len(chunk):
                raise FtriskError(f"vLLM answered {len(outs)} of {len(chunk)} prompts")
            yield [self._row(it.id, len(ids[it.id]), out.outputs[0], tok) for it, out in zip(chunk, outs)]

    @staticmethod
    def _row(id_: str, prompt_tokens: int, out, tok) -> dict:
        """A row as ``hf`` writes it: the stop token is neither counted nor decoded."""
        new = list(out.token_ids)
        finished = out.finish_reason == "stop"
        if finished and new and new[-1] in (tok.eos_token_id, out.stop_reason):
            new = new[:-1]
        return {"id": id_, "completion": tok.decode(new, skip_special_tokens=True), "prompt_tokens": prompt_tokens,
                "new_tokens": len(new), "finished": finished}

    def close(self) -> None:
        llm, self._llm = self._llm, None
        if llm is None:
            return
        core = getattr(getattr(llm, "llm_engine", None), "engine_core", None)
        if core is not None and hasattr(core, "shutdown"):  # the engine-core process, and its GPU memory
            core.shutdown()
        del llm
        gc.collect()
        _free_cuda_cache()
