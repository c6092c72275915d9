"""The padding-free CPU training path (ftrisk.training.fast) against the padded PEFT path it replaces: the same loss and
gradients, on tiny random models built in-process whose outputs depend on every token (no tokenizer needed)."""

import dataclasses
import json

import pytest
import torch

from ftrisk.training import fast as train_fast
from ftrisk.config.schema import LoraConfig, TrainConfig
from ftrisk.cost import CostMeter
from ftrisk.training.data import IGNORE, Example, collate
from ftrisk.training.loss import response_loss
from ftrisk.training.recipe import finetune

pytestmark = pytest.mark.usefixtures("torch_single_thread")

TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]


def _model(kind: str, seed: int = 0):
    """A tiny random decoder with grouped-query attention and weights large enough that every token matters."""
    import transformers as tf

    torch.manual_seed(seed)
    cls, cfg = {"llama": (tf.LlamaForCausalLM, tf.LlamaConfig), "qwen2": (tf.Qwen2ForCausalLM, tf.Qwen2Config),
                "mistral": (tf.MistralForCausalLM, tf.MistralConfig), "qwen3": (tf.Qwen3ForCausalLM, tf.Qwen3Config)}[kind]
    extra = {"sliding_window": None} if kind == "mistral" else {}  # Mistral's default window (4096) is off the path
    return cls(cfg(**extra, vocab_size=300, hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
                   num_key_value_heads=2, initializer_range=0.3, pad_token_id=0, attn_implementation="sdpa")).eval()


def _lora(model, seed: int = 1):
    from peft import LoraConfig as PeftLoraConfig, get_peft_model

    pm = get_peft_model(model, PeftLoraConfig(r=4, lora_alpha=8, target_modules=TARGETS, task_type="CAUSAL_LM"))
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in pm.named_parameters():
            if "lora_B" in name:  # PEFT starts B at zero: the adapters would not count
                p.copy_(torch.randn(p.shape, generator=g) * 0.5)
    return pm


def _encoded(lengths=(7, 3, 12, 5), prompt=(4, 1, 6, 2), seed: int = 2):
    g = torch.Generator().manual_seed(seed)
    out = []
    for n, p in zip(lengths, prompt):
        ids = torch.randint(1, 300, (n,), generator=g).tolist()
        out.append({"input_ids": ids, "labels": [IGNORE] * p + ids[p:]})
    return out


def _close(a, b, rel: float = 1e-4):
    """Equal up to float rounding at the tensor's own scale (an element near zero may differ by more than rel of itself)."""
    return (a - b).abs().max().item() <= rel * b.abs().max().item() + 1e-7


def _grads(pm, loss):
    pm.zero_grad(set_to_none=True)
    loss.backward()
    return {n: p.grad.clone() for n, p in pm.named_parameters() if p.requires_grad}


@pytest.mark.parametrize("kind", ["llama", "qwen2", "mistral", "qwen3"])
def test_packed_loss_and_gradients_equal_the_padded_path(kind):
    pm = _lora(_model(kind))
    assert train_fast.unsupported(pm, n_processes=1, gradient_checkpointing=False) is None  # finetune takes the path
    pm.train()
    enc = _encoded()
    padded = response_loss(pm, *collate(enc, 0))
    ref = _grads(pm, padded)
    pk = train_fast.pack(enc)
    assert pk.prefix == 0  # random tokens: nothing shared
    assert pk.ids.shape == (1, sum(pk.lengths)) and pk.positions[0, :7].tolist() == list(range(7))
    assert pk.positions[0, 7:10].tolist() == [0, 1, 2]
    packed = train_fast.packed_loss(pm, pk)
    assert packed.item() == pytest.approx(padded.item(), abs=1e-5)
    ours = _grads(pm, packed)
    assert ours.keys() == ref.keys() and len(ours) == 2 * 2 * len(TARGETS)
    assert all(_close(ours[n], ref[n]) for n in ref), [n for n in ref if not _close(ours[n], ref[n])]
    # what the comparison catches: attention across examples (one causal SDPA over the whole row). Positions that
    # ran on across examples would not show: rotary attention within one example depends only on relative positions
    with torch.no_grad():
        leaking = train_fast.packed_loss(pm, dataclasses.replace(pk, lengths=[sum(pk.lengths)]))
    assert abs(leaking.item() - padded.item()) > 1e-3


def _with_prompt_prefix(enc, prefix=(7, 8, 9, 10, 11)):
    """The examples with the same leading tokens (a chat template's system prompt), masked from the loss."""
    return [{"input_ids": [*prefix, *e["input_ids"]], "labels": [IGNORE] * len(prefix) + e["labels"]} for e in enc]


@pytest.mark.parametrize("kind", ["llama", "qwen2", "mistral", "qwen3"])
def test_shared_prefix_held_once_gives_the_padded_loss_and_gradients(kind):
    pm = _lora(_model(kind))
    pm.train()
    enc = _with_prompt_prefix(_encoded())
    padded = response_loss(pm, *collate(enc, 0))
    ref = _grads(pm, padded)
    pk = train_fast.pack(enc)
    # the five template tokens; no further (the second example's prompt is one token: position 5's target is trained)
    assert pk.prefix == 5 and pk.ids.shape[1] == 5 + sum(len(e["input_ids"]) - 5 for e in enc)
    assert pk.ids[0, :5].tolist() == [7, 8, 9, 10, 11] and pk.positions[0, 5:5 + pk.lengths[0]].tolist()[:2] == [5, 6]
    trained = int((collate(enc, 0)[2][:, 1:] != IGNORE).sum())
    assert (pk.targets[:5] == IGNORE).all() and int((pk.targets != IGNORE).sum()) == trained
    packed = train_fast.packed_loss(pm, pk)
    assert packed.item() == pytest.approx(padded.item(), abs=1e-5)
    ours = _grads(pm, packed)
    assert all(_close(ours[n], ref[n]) for n in ref), [n for n in ref if not _close(ours[n], ref[n])]
    # what the comparison catches: each example's queries aligned top-left over the prefix's keys and its own (SDPA's
    # is_causal with more keys than queries): the example would see its own future and not all of the prefix
    real = train_fast._after_prefix
    try:
        train_fast._after_prefix = lambda n, p: torch.ones(n, p + n, dtype=torch.bool).tril(0)
        with torch.no_grad():
            wrong = train_fast.packed_loss(pm, pk)
    finally:
        train_fast._after_prefix = real
    assert abs(wrong.item() - padded.item()) > 1e-3


def test_shared_prefix_stops_before_loss_and_each_examples_last_token():
    a = {"input_ids": [1, 2, 3, 4, 5], "labels": [IGNORE, IGNORE, IGNORE, 4, 5]}
    b = {"input_ids": [1, 2, 3, 4, 6, 7], "labels": [IGNORE, IGNORE, IGNORE, IGNORE, 6, 7]}
    assert train_fast.shared_prefix([a, b]) == 2  # position 2's target (token 4 of a) carries loss
    assert train_fast.shared_prefix([a]) == 0  # nothing to share with
    c = {"input_ids": [1, 2], "labels": [IGNORE, IGNORE]}
    assert train_fast.shared_prefix([b, c]) == 1  # c keeps one token of its own
    d = {"input_ids": [9, 2, 3, 4], "labels": [IGNORE] * 3 + [4]}
    assert train_fast.shared_prefix([b, d]) == 0  # no common first token
    pk = train_fast.pack([a, b])
    assert pk.ids.tolist() == [[1, 2, 3, 4, 5, 3, 4, 6, 7]] and pk.positions.tolist() == [[0, 1, 2, 3, 4, 2, 3, 4, 5]]
    assert pk.lengths == [3, 4] and pk.targets.tolist() == [IGNORE, IGNORE, 4, 5, IGNORE, IGNORE, 6, 7, IGNORE]
    assert train_fast.pack([a, b], share_prefix=False).prefix == 0


def test_no_shared_prefix_under_dropout():
    pm = _lora(_model("llama"))
    assert train_fast.prefix_shareable(pm)
    pm.get_base_model().config.attention_dropout = 0.1  # one dropout draw for the prefix of all examples: not shared
    assert not train_fast.prefix_shareable(pm)
    from peft import LoraConfig as PeftLoraConfig, get_peft_model

    dropped = get_peft_model(_model("llama"), PeftLoraConfig(r=4, lora_alpha=8, lora_dropout=0.1, target_modules=TARGETS,
                                                              task_type="CAUSAL_LM"))
    assert not train_fast.prefix_shareable(dropped)


def test_pack_targets_stay_within_each_example():
    enc = [{"input_ids": [5, 6, 7], "labels": [IGNORE, 6, 7]}, {"input_ids": [8, 9], "labels": [IGNORE, 9]}]
    pk = train_fast.pack(enc)
    assert pk.ids.tolist() == [[5, 6, 7, 8, 9]] and pk.positions.tolist() == [[0, 1, 2, 0, 1]] and pk.lengths == [3, 2]
    # position t learns token t+1 of its own example; the last token of each example learns nothing
    assert pk.targets.tolist() == [6, 7, IGNORE, 9, IGNORE]


def test_fused_lora_forward_equals_peft_and_falls_back_outside_plain_state():
    pm = _lora(_model("llama"))
    x = torch.randint(1, 300, (2, 9))
    ref = pm(input_ids=x).logits
    ref_grads = _grads(pm, ref.square().mean())
    with train_fast.fused_lora(pm) as n:
        assert n == 2 * len(TARGETS)
        out = pm(input_ids=x).logits
        torch.testing.assert_close(out, ref, rtol=1e-5, atol=1e-5)
        grads = _grads(pm, out.square().mean())
        assert all(_close(grads[n], ref_grads[n]) for n in ref_grads)
        with pm.disable_adapter():  # disabled adapters: the base model's logits, as PEFT gives them
            base = pm(input_ids=x).logits
        assert (base - ref).abs().max() > 1e-3
    with pm.disable_adapter():
        torch.testing.assert_close(base, pm(input_ids=x).logits)
    assert not any("forward" in vars(m) for m in pm.modules())  # PEFT's forward again after the block


def test_unsupported_names_why():
    m = _model("llama")
    assert train_fast.unsupported(m, n_processes=1, gradient_checkpointing=False) is None
    assert "process" in train_fast.unsupported(m, n_processes=2, gradient_checkpointing=False)
    assert "checkpointing" in train_fast.unsupported(m, n_processes=1, gradient_checkpointing=True)
    m.config.sliding_window = 4
    assert "sliding window" in train_fast.unsupported(m, n_processes=1, gradient_checkpointing=False)
    m.config.sliding_window = None
    m.config.model_type = "gemma2"
    assert "gemma2" in train_fast.unsupported(m, n_processes=1, gradient_checkpointing=False)


PAIRS = [Example(f"Question number {i}: what is {i} plus {i}?", f"It is {2 * i}." + " Indeed." * (i % 4))
         for i in range(12)]


@pytest.mark.heavy
def test_finetune_padding_free_trains_as_the_padded_loop(tiny_model_dir, tmp_path, caplog):
    import logging

    from ftrisk.model.subject import load_spec

    runs = {}
    for pf in (True, False):
        model, tok = load_spec(tiny_model_dir)
        tc = TrainConfig(lr=1e-2, batch_size=4, max_seq_len=64, warmup_steps=1, max_steps=3, padding_free=pf)
        with caplog.at_level(logging.INFO, logger="ftrisk.training"):
            pm, _ = finetune(model, tok, PAIRS, LoraConfig(r=4, alpha=8, target_modules=TARGETS), tc,
                             tmp_path / str(pf), meter=CostMeter(), seed=0)
        losses = [json.loads(x)["loss"] for x in (tmp_path / str(pf) / "metrics.jsonl").read_text().splitlines()]
        runs[pf] = losses, {n: p.detach().clone() for n, p in pm.named_parameters() if "lora_" in n}
    assert "padded batches" not in caplog.text  # the tiny Llama on the CPU takes the fast path
    assert runs[True][0] == pytest.approx(runs[False][0], abs=2e-5)
    assert len(set(runs[True][0])) == 3  # the loss moved: the steps trained
    assert all(_close(runs[True][1][n], p, 1e-3) for n, p in runs[False][1].items())
