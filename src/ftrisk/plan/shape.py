"""The sizes a plan needs from a model's config.json, and its parameter counts (a Llama-style decoder: GQA
attention, gated MLP)."""

from __future__ import annotations

from dataclasses import dataclass

from ftrisk.errors import FtriskError

GIB = 2**30
#: The decoder's linear layers, LoRA's default targets.
TARGETS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")
#: Bytes per element of each model dtype.
DTYPES = {"float32": 4, "bfloat16": 2, "float16": 2}


@dataclass(frozen=True)
class Shape:
    """The config.json fields a plan needs."""
    hidden: int
    intermediate: int
    layers: int
    heads: int
    kv_heads: int
    vocab: int
    tied: bool = False
    head_dim: int = 0

    def __post_init__(self):
        object.__setattr__(self, "head_dim", self.head_dim or self.hidden // self.heads)

    @classmethod
    def from_config(cls, d: dict, where: str) -> Shape:
        try:
            return cls(int(d["hidden_size"]), int(d["intermediate_size"]), int(d["num_hidden_layers"]),
                       int(d["num_attention_heads"]), int(d.get("num_key_value_heads") or d["num_attention_heads"]),
                       int(d["vocab_size"]), bool(d.get("tie_word_embeddings", False)), int(d.get("head_dim") or 0))
        except (KeyError, TypeError, ValueError) as e:
            raise FtriskError(f"model config '{where}' lacks or mangles {e}: pass a Llama-style config.json") from None

    @property
    def kv_dim(self) -> int:
        return self.kv_heads * self.head_dim

    def module_dims(self) -> dict[str, tuple[int, int]]:
        h, i, q, kv = self.hidden, self.intermediate, self.heads * self.head_dim, self.kv_dim
        return {"q_proj": (h, q), "k_proj": (h, kv), "v_proj": (h, kv), "o_proj": (q, h),
                "gate_proj": (h, i), "up_proj": (h, i), "down_proj": (i, h)}

    def kv_bytes_per_token(self, e: int) -> int:
        """KV cache of one token of one row: keys and values of every layer."""
        return 2 * self.layers * self.kv_dim * e


def param_counts(s: Shape) -> dict[str, int]:
    """Parameters by part, as transformers' LlamaForCausalLM holds them (tested on the meta device)."""
    linear = s.layers * sum(i * o for i, o in s.module_dims().values())
    embed, norms = s.vocab * s.hidden, (2 * s.layers + 1) * s.hidden
    total = embed + linear + norms + (0 if s.tied else embed)
    return {"embed": embed, "linear": linear, "norms": norms, "total": total, "body": linear + norms}


def lora_params(s: Shape, r: int, targets=TARGETS) -> int:
    """Trainable parameters of LoRA rank ``r`` on ``targets`` (peft: r * (in + out) per module and layer)."""
    dims = s.module_dims()
    for t in targets:
        if t not in dims:
            raise FtriskError(f"attack.lora.target_modules: unknown module '{t}' (known: {', '.join(dims)})")
    return s.layers * sum(r * sum(dims[t]) for t in targets)
