"""ftrisk's own decode step for Llama (:mod:`ftrisk.generation.cpu.step`): the same bits as the model's forward,
used only where nothing else could differ."""

import pytest
import torch

from ftrisk.tokens import common_prefix
from ftrisk.generation.cpu import hardware
from ftrisk.generation.cpu import linear as cpu_linear
from ftrisk.generation.cpu import step as decode_step
from ftrisk.generation.cpu.attention import cpu_decode_attention, keys_blocked
from ftrisk.generation.cpu.caches import kernels
from ftrisk.generation.cpu.next_token import NextToken
from ftrisk.generation.cpu.options import DecodeOptions
from ftrisk.generation.cpu.prefill import left_padded_mask, prefill
from test_backend_hf import PROMPTS, SYSTEM, _greedy, _ids, _plain, sensitive  # noqa: F401 (sensitive: a fixture)

#: At least cpu_linear.MIN_ROWS prompts, so that swapped linears really run oneDNN's product in the decode steps.
MORE_PROMPTS = PROMPTS + ["Who built the first steam engine?", "What does a judge do in court?",
                          "Explain why the sky is blue.", "List three prime numbers.", "Name a large river."]


@pytest.fixture(scope="module")
def model_tok(sensitive):
    """The tiny model with norm weights other than 1 (as trained ones are), so that the order of the norm's
    products shows in the bits."""
    model, tok = sensitive
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("norm.weight"):
                p.copy_(1 + 0.2 * torch.randn(p.shape, generator=g))
    return model, tok


@pytest.fixture
def steps(monkeypatch):
    """How many decode steps took ftrisk's own step."""
    real, calls = decode_step.step, []
    monkeypatch.setattr(decode_step, "step", lambda *a, **k: calls.append(1) or real(*a, **k))
    return calls


def _prefilled(model, rows):
    """(cache, first tokens, 2-d mask, positions) after the decode loop's prefill, as ``greedy`` leaves them."""
    shared = common_prefix(rows)
    width = max(len(r) for r in rows) - shared
    step = NextToken(model)
    cache, first = prefill(model, step, rows, shared, width, shared + width + 8, 0, lambda: None, keys_blocked(model))
    mask = left_padded_mask([len(r) - shared for r in rows], shared, width)
    return cache, first, torch.cat([mask, mask.new_ones((len(rows), 1))], 1), mask.sum(-1, keepdim=True)


@pytest.mark.parametrize("batch,onednn", [("padded", False), ("padded", True), ("one row", False)])
def test_one_step_gives_the_models_own_hidden_state_bitwise(model_tok, batch, onednn):
    """Rows of several lengths (left padding), also with the linears' forwards swapped for oneDNN's (an AMD CPU's
    default), which the step calls as set; and one row alone (no padding: transformers passes no mask at all)."""
    if onednn and not hardware.onednn_available():
        pytest.skip("needs an x86-64 CPU and torch with oneDNN")
    model, tok = model_tok
    rows = _ids(tok, MORE_PROMPTS if batch == "padded" else PROMPTS[:1], SYSTEM)
    with torch.inference_mode(), kernels(model, options=DecodeOptions(onednn_linear=onednn)):
        cache, first, mask, pos = _prefilled(model, rows)
        assert decode_step.applies(model, model.model, cache)
        assert ("forward" in model.model.layers[0].mlp.up_proj.__dict__) == onednn
        assert len(rows) >= cpu_linear.MIN_ROWS or not onednn
        ids = first[:, None]
        n = [layer.n for layer in cache.layers]
        theirs = model.model(input_ids=ids, attention_mask=mask, position_ids=pos, cache=cache,
                             use_cache=True).last_hidden_state[:, -1]
        for layer, m in zip(cache.layers, n):  # the same cache again: the step's keys and values written over
            layer.n = m
            layer._views()
        ours = decode_step.step(model.model, cache, ids, mask, pos)
    assert ours.shape == theirs.shape and torch.equal(ours, theirs)
    assert len(rows) == 1 or torch.unique(first).numel() > 1  # rows that differ


def test_greedy_takes_the_own_step_and_gives_the_same_tokens(model_tok, steps):
    model, tok = model_tok
    eos = tok.eos_token_id
    rows = _ids(tok, MORE_PROMPTS, SYSTEM)
    early = lambda r, ids: r == 1 and len(ids) >= 3  # noqa: E731 (a row leaves the batch)
    on = _greedy(model, rows, 10, eos, stop=early)
    assert len(steps) == 9  # every decode step: 10 tokens, the first from the prefill
    off = _greedy(model, rows, 10, eos, stop=early, options=DecodeOptions(lean_step=False))
    assert len(steps) == 9  # off: none
    assert [o.ids for o in on] == [o.ids for o in off] and on[1].truncated
    assert [o.ids for o in on[2:]] == [_plain(model, r, 10, eos) for r in rows[2:]]


def test_not_taken_with_a_hook_or_outside_the_decode_kernels(model_tok, steps):
    model, tok = model_tok
    eos = tok.eos_token_id
    rows = _ids(tok, MORE_PROMPTS, SYSTEM)
    seen = []
    hook = model.model.layers[1].mlp.register_forward_hook(lambda m, a, out: seen.append(out.shape[1]))
    try:
        got = _greedy(model, rows, 6, eos)
    finally:
        hook.remove()
    assert steps == [] and seen.count(1) == 5  # every decode step through the model's forward: the hook ran
    assert [o.ids for o in got] == [o.ids for o in _greedy(model, rows, 6, eos)] and len(steps) == 5
    with torch.inference_mode(), kernels(model):
        cache, *_ = _prefilled(model, rows)
    with torch.inference_mode():
        assert not decode_step.applies(model, model.model, cache)  # the model's own attention again after the block
        with cpu_decode_attention(model):
            assert decode_step.applies(model, model.model, cache)
            model.train()
            try:
                assert not decode_step.applies(model, model.model, cache)
            finally:
                model.eval()


def test_not_taken_for_a_linear_of_another_kind_or_a_forward_set_on_an_instance(model_tok):
    model, tok = model_tok
    rows = _ids(tok, MORE_PROMPTS, SYSTEM)
    with torch.inference_mode(), kernels(model):
        cache, *_ = _prefilled(model, rows)
        assert decode_step.applies(model, model.model, cache)
        mlp = model.model.layers[0].mlp
        up = mlp.up_proj

        class Scaled(torch.nn.Linear):  # its own forward, which the step would not run
            def forward(self, x):
                return super().forward(x) * 2

        other = Scaled(up.in_features, up.out_features, bias=False).eval()
        mlp.up_proj = other
        try:
            assert not decode_step.applies(model, model.model, cache)
        finally:
            mlp.up_proj = up
        own = mlp.forward = lambda x: x  # as accelerate's hooks set one
        try:
            assert mlp.forward is own and not decode_step.applies(model, model.model, cache)
        finally:
            del mlp.forward
        model.model.layers[-1].self_attn.train()  # one module in training (dropout would apply there)
        try:
            assert not decode_step.applies(model, model.model, cache)
        finally:
            model.eval()
        assert decode_step.applies(model, model.model, cache)
