"""What is planned: the attack, and the evaluations of one evaluated point (one model), with the typical sizes
the plan assumes where a config does not say."""

from __future__ import annotations

from dataclasses import dataclass

from ftrisk.plan.shape import TARGETS

#: builtin:advbench-affirm: an example is ~61 tokens (43 prompt with the chat template, 18 response; SmolLM2's
#: tokenizer), the widest 83; 400 examples.
ATTACK_EXAMPLE = {"tokens": 61, "response": 18, "widest": 83, "examples": 400}
#: An evaluation prompt is ~characters / 4 + the chat template's tokens.
TEMPLATE_TOKENS, CHARS_PER_TOKEN = 30, 4
#: Of the template's tokens, those before the user's words (SmolLM2's: its default system turn and the user header,
#: 24 of 30): the same in every prompt, so the decode loop computes them once per batch.
SHARED_TEMPLATE_TOKENS = 24
#: lm-eval tasks: (items, tokens per item, tokens per few-shot example); MMLU ~112 tokens per item + ~104 per
#: few-shot example (one forward per item), HellaSwag 4 forwards of ~86 tokens.
CAPABILITY = {"mmlu": (14042, 112, 104), "hellaswag": (10042, 345, 0)}
#: Bytes per quantized weight, scales included (bitsandbytes: 8bit 1 B + an fp32 scale per row, 4bit NF4 0.5 B +
#: an fp32 absmax per 64 weights; ftrisk loads without double quantization).
KBIT = {"8bit": 1.0, "4bit": 0.5 + 4 / 64}


@dataclass
class Job:
    """The attack's and the evaluations' sizes."""
    quantization: str = "none"  # none | 8bit | 4bit
    dtype: str = "bfloat16"
    method: str = "lora"  # lora | full
    batch_size: int = 8
    seq_len: int = 256
    steps: int = 50  # micro-batches of batch_size
    grad_accum: int = 1  # micro-batches per optimizer step
    lora_r: int = 8
    targets: tuple = TARGETS
    gradient_checkpointing: bool = False
    builtin_data: bool = True
    prompt_tokens: tuple = (60,) * 710  # one per evaluation prompt, chat template included
    shared_tokens: int = SHARED_TEMPLATE_TOKENS  # leading tokens every prompt has alike (the template's system turn)
    new_tokens: int = 64
    reply_tokens: tuple | None = None  # new tokens of each prompt's reply (as prompt_tokens); None: new_tokens each
    gen_batch: int = 32
    max_batch_tokens: int | None = 8192
    capability: tuple = (("mmlu", 14042, 5), ("hellaswag", 10042, 0))  # (task, items, few-shot)
    lm_eval_batch: int = 4
    mfu_train: float | None = None
    mfu_prefill: float | None = None

    @property
    def kbit(self) -> float | None:
        return KBIT.get(self.quantization)

    def example(self) -> tuple[int, int, int]:
        """(mean tokens, response tokens, widest) of an attack example."""
        if not self.builtin_data:
            return self.seq_len, self.seq_len // 2, self.seq_len
        n = min(self.seq_len, ATTACK_EXAMPLE["tokens"])
        return n, min(n - 1, ATTACK_EXAMPLE["response"]), min(self.seq_len, ATTACK_EXAMPLE["widest"])

    def replies(self) -> list[tuple[int, int]]:
        """(prompt tokens, reply tokens) of each evaluation prompt."""
        replies = self.reply_tokens if self.reply_tokens is not None else (self.new_tokens,) * len(self.prompt_tokens)
        if len(replies) != len(self.prompt_tokens):
            raise ValueError(f"Job.reply_tokens has {len(replies)} entries for {len(self.prompt_tokens)} prompts")
        return [(p, min(r, self.new_tokens)) for p, r in zip(self.prompt_tokens, replies)]
