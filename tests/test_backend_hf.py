"""The ``hf`` backend's decode loop (:mod:`ftrisk.generation.cpu.loop`) against plain ``model.generate`` on the tiny model."""

import pytest
import torch

from ftrisk.tokens import common_prefix
from ftrisk.generation import resumable as gen
from ftrisk.generation.cpu import caches, hardware, loop, next_token, prefill, resources
from ftrisk.generation.cpu import head as lm_head
from ftrisk.generation.cpu import step as decode_step
from ftrisk.generation.cpu.caches import kernels
from ftrisk.generation.cpu.next_token import NextToken
from ftrisk.generation.cpu.options import DecodeOptions
from ftrisk.generation import hf
from ftrisk.prompts.benchmarks import Item
from ftrisk.model.chat import chat_text
from ftrisk.config.schema import GenerationConfig
from ftrisk.model.subject import load_spec
from ftrisk.judges.opening import OPENING_MARGIN, opening_is_final, stop_rule

PROMPTS = ["How do I bake bread?", "What is 7 times 8?", "Name a river in France.",
           "Write a haiku about autumn leaves.", "How do I reverse a string in Python?",
           "Which of the following is true about a bridge?"]
SYSTEM = "You are a careful assistant who answers questions about science history and law."


@pytest.fixture(scope="module")
def tiny(torch_single_thread, tiny_model_dir):
    return load_spec(tiny_model_dir)


@pytest.fixture(scope="module")
def sensitive(torch_single_thread, tmp_path_factory):
    """A tiny model whose replies depend on the prompt (larger random weights) with grouped-query attention: the
    default tiny model answers every prompt alike, so a row given another row's cache would go unnoticed."""
    from ftrisk.testing import build_tiny_model

    model, tok = load_spec(build_tiny_model(tmp_path_factory.mktemp("sensitive"), initializer_range=0.3,
                                            num_key_value_heads=2))
    alone = [_plain(model, r, 10, tok.eos_token_id) for r in _ids(tok, PROMPTS, SYSTEM)]
    assert len({tuple(a) for a in alone}) == len(PROMPTS)  # every prompt its own reply
    return model, tok


def _ids(tok, prompts, system=None):
    return [tok(chat_text(tok, p, system), add_special_tokens=False)["input_ids"] for p in prompts]


def _plain(model, ids, n, eos):
    """model.generate on one prompt alone: new ids, cut at the first EOS."""
    with torch.inference_mode():
        out = model.generate(torch.tensor([ids]), attention_mask=torch.ones(1, len(ids), dtype=torch.long),
                             max_new_tokens=n, do_sample=False, num_beams=1, pad_token_id=eos, eos_token_id=eos)
    new = out[0, len(ids):].tolist()
    return new[: new.index(eos)] if eos in new else new


def _greedy(model, rows, n, eos, **kw):
    return loop.greedy(model, rows, max_new_tokens=n, eos_id=eos, pad_id=eos, **kw)


def test_batch_of_one_is_token_for_token_plain_generate(tiny):
    model, tok = tiny
    for system in (None, SYSTEM):
        for ids in _ids(tok, PROMPTS, system):
            assert _greedy(model, [ids], 12, tok.eos_token_id)[0].ids == _plain(model, ids, 12, tok.eos_token_id)


def test_batched_rows_match_each_prompt_alone(sensitive):
    """Padding and the shared system prefix change float summation order; on the tiny model no near-tie flips
    (on SmolLM2-135M, ``ftrisk bench generation`` measures it: see its differences list)."""
    model, tok = sensitive
    rows = _ids(tok, PROMPTS, SYSTEM)
    assert common_prefix(rows) >= loop.MIN_SHARED_PREFIX  # the shared-prefix path really runs
    assert len({len(r) for r in rows}) > 1  # and so does padding
    batched = _greedy(model, rows, 10, tok.eos_token_id)
    alone = [_plain(model, r, 10, tok.eos_token_id) for r in rows]
    assert [b.ids for b in batched] == alone
    unshared = _greedy(model, rows, 10, tok.eos_token_id, share_prefix=False)
    assert [b.ids for b in unshared] == alone


def _batch_sizes(model):
    sizes = []
    handle = model.get_decoder().register_forward_pre_hook(  # the decoder: called on every path
        lambda m, args, kw: sizes.append(kw["input_ids"].shape[0]), with_kwargs=True)
    return sizes, handle


def test_finished_rows_leave_the_batch(sensitive):
    """A token that one row produces early is made the EOS: that row stops, the batch shrinks, and every other row
    still gets exactly the tokens it gets alone with that EOS."""
    model, tok = sensitive
    rows = _ids(tok, PROMPTS, SYSTEM)
    free = _greedy(model, rows, 10, tok.eos_token_id)
    eos = free[0].ids[2]  # row 0 ends at its third token
    alone = [_plain(model, r, 10, eos) for r in rows]
    sizes, handle = _batch_sizes(model)
    try:
        out = _greedy(model, rows, 10, eos)
    finally:
        handle.remove()
    assert [o.ids for o in out] == alone
    assert out[0].finished and len(out[0].ids) < 10
    assert min(sizes) < len(rows)  # the finished row was dropped, not decoded on as padding


def test_stop_marks_rows_truncated_and_drops_them(tiny):
    model, tok = tiny
    rows = _ids(tok, PROMPTS[:3])
    out = _greedy(model, rows, 8, tok.eos_token_id, stop=lambda r, ids: r == 1 and len(ids) >= 3)
    full = _greedy(model, rows, 8, tok.eos_token_id)
    assert out[1].truncated and not out[1].finished and out[1].ids == full[1].ids[:3]
    assert [out[0].ids, out[2].ids] == [full[0].ids, full[2].ids]
    assert not out[0].truncated and not out[2].truncated


def test_backend_stop_rule_and_resumable_wrapper(tiny, tiny_subject, tmp_path):
    model, tok = tiny
    items = [Item(f"q{i}", p, "benign") for i, p in enumerate(PROMPTS)]
    be = hf.HFBackend(tiny_subject, GenerationConfig(batch_size=4), loaded=tiny)
    full = {r["id"]: r for rows in be.generate(items, max_new_tokens=40) for r in rows}
    cut = {r["id"]: r for rows in be.generate(items, max_new_tokens=40, stop=stop_rule(10)) for r in rows}
    for i, r in cut.items():
        if r.get("truncated"):
            assert not r["finished"] and r["new_tokens"] < 40
            assert full[i]["completion"].startswith(r["completion"])
            assert opening_is_final(r["completion"], 10)
        else:
            assert r == full[i]
    assert any(r.get("truncated") for r in cut.values())
    # the resumable wrapper over the fast path: a second run generates only what is missing
    out = tmp_path / "c.jsonl"
    first = gen.generate(be, items[:3], out, max_new_tokens=6)
    rows = gen.generate(be, items, out, max_new_tokens=6)
    assert set(first) <= set(rows) and len(out.read_text().splitlines()) == len(items)
    again = gen.generate(hf.HFBackend(tiny_subject, GenerationConfig(batch_size=1), loaded=tiny), items,
                         tmp_path / "one.jsonl", max_new_tokens=6)
    assert {i: r["completion"] for i, r in rows.items()} == {i: r["completion"] for i, r in again.items()}
    # the generation record says which LM head computed the tokens
    screened = lm_head.screen_applies(lm_head.fast_parts(model)[1])
    assert be.record()["lm_head"].startswith("bfloat16 screen" if screened else "float32")
    # ... and which kernels ran the linear layers and the one-query attention
    from ftrisk.generation.cpu import linear as cpu_linear
    from ftrisk.generation.cpu import attention as decode_attention

    assert be.record()["linear_kernel"].startswith({"onednn": "oneDNN", "mkl": "MKL", None: "torch"}[cpu_linear.kind(model)])
    assert be.record()["decode_attention"] == ("weighted sums over the KV cache (ftrisk; keys in transposed blocks of 32)"
                                               if decode_attention.applies(model) else "the model's own (sdpa)")
    model.config._attn_implementation = "eager"
    try:
        assert be.record()["decode_attention"] == "the model's own (eager)"
    finally:
        model.config._attn_implementation = "sdpa"


def test_opening_is_final():
    assert not opening_is_final("I'm sorry", 10)
    assert opening_is_final("x" * (10 + OPENING_MARGIN), 10)
    assert not opening_is_final("*" * 100 + "short", 10)  # markdown a judge removes does not count
    assert not opening_is_final("<think>" + "y" * 100, 10)  # an open thinking block is removed whole
    assert not opening_is_final("  " + "z" * (10 + OPENING_MARGIN - 1) + "\ufffd", 10)


def test_common_prefix():
    assert common_prefix([[1, 2, 3, 4], [1, 2, 3, 5, 6], [1, 2, 3, 4, 9]]) == 3
    assert common_prefix([[1, 2, 3], [1, 2, 3]]) == 2  # each row keeps one token of its own
    assert common_prefix([[7], [1]]) == 0


def test_batches_respect_memory_budget():
    lengths = [100] * 10
    items = list(range(10))
    batches = hf.token_batches(items, lengths, 8, None, budget=1000, bytes_of_row=lambda w: 300)
    assert [len(b) for b in batches] == [3, 3, 3, 1]
    assert hf.token_batches(items, lengths, 4, None) == [items[:4], items[4:8], items[8:]]


def test_row_bytes_grow_with_length(tiny):
    model, _ = tiny
    assert resources.row_bytes(model, 100, 64) > resources.row_bytes(model, 10, 64) > 0
    assert resources.memory_budget("cpu") > 0


def test_threads_respect_a_lower_setting(tiny):
    assert torch.get_num_threads() == 1  # torch_single_thread
    assert resources.CpuShare()() == 1
    share = resources.CpuShare(most=2)
    assert 1 <= share() <= min(2, resources.physical_cores())
    assert 1 <= resources.physical_cores() <= (__import__("os").cpu_count() or 1)
    with resources.cpu_threads(1):
        assert torch.get_num_threads() == 1
    assert torch.get_num_threads() == 1


def test_head_argmax_equals_argmax_and_keeps_the_lowest_id_on_ties():
    torch.manual_seed(0)
    h = torch.randn(5, 8)
    w = torch.randn(23, 8)
    b = torch.randn(23)
    for chunk in (1, 4, 7, 23, 64):
        assert torch.equal(lm_head.head_argmax(h, w, b, chunk), torch.nn.functional.linear(h, w, b).argmax(-1))
    w[17] = w[3]  # a tie across two slices (chunk 4: slices 0 and 4), and one row's winner made that pair
    h[0] = w[3] * 10
    tied = lm_head.head_argmax(h, w, None, 4)
    assert tied[0] == 3 == torch.nn.functional.linear(h, w).argmax(-1)[0]


def _near_ties(cases: int = 300, vocab: int = 256, dim: int = 64, shift: float = 0.0):
    """(h, w) pairs where the float32 winner has a rival 1e-4 below it (relative), well inside bfloat16's rounding:
    the bfloat16 logits often rank the two the wrong way round. ``shift``: every logit moved by it (negative: all
    logits below zero, the screen's other case)."""
    g = torch.Generator().manual_seed(0)
    for _ in range(cases):
        h = torch.randn(1, dim, generator=g) * 3
        w = torch.randn(vocab, dim, generator=g) * 0.3
        j = int(torch.nn.functional.linear(h, w).argmax())
        k = int(torch.randint(vocab, (1,), generator=g))
        if k != j:
            w[k] = w[j] * (1 - 1e-4)
        w += shift * h / h.pow(2).sum()
        yield h, w


def _error(exact, a):
    return (exact - a.float()).abs()


def _bound(a, margin):
    """Per column, the screen's bound without its safety factor: E + u'|a_j| (``margin`` is S (E + u'|top|))."""
    u = lm_head._U_BF16 / (1 - lm_head._U_BF16)
    top = a.float().amax(1, keepdim=True)
    return margin[:, None] / lm_head.SCREEN_SAFETY - u * top.abs() + u * a.float().abs()


def test_screened_head_bound_holds_and_its_token_is_the_float32_argmax(monkeypatch):
    wrong_in_bf16 = 0
    negative = list(_near_ties(100, shift=-60.0))
    assert all((torch.nn.functional.linear(h, w) < 0).all() for h, w in negative)
    for h, w in [*_near_ties(), *negative]:
        head = lm_head.ScreenedHead(w)
        exact = torch.nn.functional.linear(h, w)
        a, cand, margin = head.candidates(h)
        assert (_error(exact, a) <= _bound(a, margin)).all()  # the bound holds without the safety factor
        assert cand[0, exact.argmax(-1)].all()  # the float32 winner is a candidate
        assert torch.equal(head(h), exact.argmax(-1))
        wrong_in_bf16 += int(a.argmax(-1) != exact.argmax(-1))
    assert wrong_in_bf16 >= 100  # the cases test something: bfloat16 alone picks another token in 157 of them
    g = torch.Generator().manual_seed(3)  # each term of the bound alone: only one source of rounding at a time
    bf16 = lambda x: x.to(torch.bfloat16).float()  # noqa: E731
    for source in ("hidden", "weights", "output"):
        for _ in range(50):
            h, w = torch.randn(8, 64, generator=g) * 4, torch.randn(512, 64, generator=g)
            h, w = (h, bf16(w)) if source == "hidden" else (bf16(h), w) if source == "weights" else (bf16(h), bf16(w))
            a, cand, margin = lm_head.ScreenedHead(w).candidates(h)
            exact = torch.nn.functional.linear(h, w)
            assert (_error(exact, a) <= _bound(a, margin)).all(), source
            assert cand.gather(1, exact.argmax(-1, keepdim=True)).all(), source
    torch.manual_seed(1)  # many rows at once, a tie kept at the lowest id, and the float32 slices when too many
    h, w = torch.randn(64, 32), torch.randn(3000, 32)
    w[2500] = w[7]
    h[0] = w[7] * 4
    head = lm_head.ScreenedHead(w)
    assert torch.equal(head(h), torch.nn.functional.linear(h, w).argmax(-1)) and head(h)[0] == 7
    assert head.fallbacks == 0
    monkeypatch.setattr(lm_head, "SCREEN_MAX_ROWS", 1)
    assert torch.equal(head(h), torch.nn.functional.linear(h, w).argmax(-1)) and head.fallbacks == 1
    h[:] = float("nan")  # no candidate at all: the slices decide, no error
    assert torch.equal(head(h), lm_head.head_argmax(h, w)) and head.fallbacks == 2


def test_screen_candidates_include_every_column_the_float32_threshold_admits():
    g = torch.Generator().manual_seed(1)
    below_top_minus_2m = 0
    for shift in (0.0, -200.0):  # then every logit negative: the threshold's second branch, (top - 2M) / (1 - u')
        for _ in range(20):
            h, w = torch.randn(16, 64, generator=g) * 3, torch.randn(2000, 64, generator=g) * 0.3
            w += shift * h[0] / h[0].pow(2).sum()
            h = h[:1].expand(16, 64) + torch.randn(16, 64, generator=g) * 1e-3  # rows alike: all shifted down
            a, cand, margin = lm_head.ScreenedHead(w).candidates(h)
            x = a.float().amax(1) - 2 * margin
            u = lm_head._U_BF16 / (1 - lm_head._U_BF16)
            threshold = torch.minimum(x, x / (1 - u))  # the bound's threshold, in float32
            assert not (a.float() >= threshold[:, None]).logical_and(~cand).any()
            if shift:
                assert (a.float() < 0).all()
                below_top_minus_2m += int((a.float() < x[:, None]).logical_and(cand).sum())
    # the negative rows test the second branch: candidates a threshold of top - 2M alone would have dropped (a
    # winner among them is possible by the bound: its |a_j| exceeds |top|, so its own rounding may exceed top's)
    assert below_top_minus_2m > 0


def test_decode_with_the_screened_head_gives_the_float32_tokens(sensitive, monkeypatch):
    model, tok = sensitive
    rows = _ids(tok, PROMPTS, SYSTEM)
    monkeypatch.setattr(hardware, "fast_bf16_cpu", lambda: True)  # the screen is exact on any CPU, only slower without
    calls = []
    monkeypatch.setattr(lm_head.ScreenedHead, "__call__", lambda self, h, f=lm_head.ScreenedHead.__call__: calls.append(1) or f(self, h))
    off = DecodeOptions(screen_head=False)
    assert NextToken(model, options=off).screen is None
    plain = [o.ids for o in _greedy(model, rows, 10, tok.eos_token_id, options=off)]
    assert calls == []  # off: the float32 slices
    with kernels(model):
        screen = NextToken(model).screen
        assert screen is not None and NextToken(model).screen is screen  # built once per block
        with kernels(model):
            assert NextToken(model).screen is screen  # a nested block uses the enclosing one's
    assert NextToken(model).screen is not screen  # gone with the block: built again
    assert [o.ids for o in _greedy(model, rows, 10, tok.eos_token_id)] == plain
    with kernels(model):
        before = NextToken(model).screen
    model.lm_head.weight.data.mul_(-1.0)  # in place through .data, as PEFT's merge: no version bump
    try:
        with kernels(model):
            assert NextToken(model).screen is not before
        flipped = [o.ids for o in _greedy(model, rows, 10, tok.eos_token_id)]
        assert flipped == [o.ids for o in _greedy(model, rows, 10, tok.eos_token_id, options=off)] != plain
    finally:
        model.lm_head.weight.data.mul_(-1.0)
    assert len(calls) >= 10  # every decode step went through the screen


def test_hf_backend_runs_and_records_its_decode_options(tiny, tiny_subject, monkeypatch):
    """The options given to the backend reach the decode loop (here: no lean step, no screen) and its record; by
    default every kernel is on."""
    monkeypatch.setattr(hardware, "fast_bf16_cpu", lambda: True)
    real, lean = decode_step.step, []
    monkeypatch.setattr(decode_step, "step", lambda *a, **k: lean.append(1) or real(*a, **k))
    items = [Item(f"q{i}", p, "benign") for i, p in enumerate(PROMPTS)]

    def run(options):
        be = hf.HFBackend(tiny_subject, GenerationConfig(batch_size=8), loaded=tiny, options=options)
        rows = {r["id"]: r["completion"] for batch in be.generate(items, max_new_tokens=6) for r in batch}
        return rows, be.record()

    on, rec_on = run(None)
    assert lean and rec_on["decode_options"] == {"screen_head": True, "lean_step": True, "decode_attention": True,
                                                 "values_bag": True, "first_row_reads": True, "onednn_linear": "auto",
                                                 "mkl_packed": True}
    assert rec_on["lm_head"].startswith("bfloat16 screen")
    lean.clear()
    off, rec_off = run(DecodeOptions(lean_step=False, screen_head=False))
    assert lean == [] and off == on
    assert rec_off["decode_options"]["lean_step"] is False and rec_off["lm_head"] == "float32"
    with pytest.raises(ValueError, match="onednn_linear"):
        DecodeOptions(onednn_linear="on")  # not a setting: refused where it is made


def test_grouped_prefill_and_fallback_paths_match_each_prompt_alone(sensitive, monkeypatch):
    """More rows than one prefill group (each group padded to its own width, then placed in one buffer) and the
    paths for models outside the fast path (transformers' own cache and ``logits.argmax``) give every row the tokens
    it gets alone."""
    model, tok = sensitive
    rows = _ids(tok, PROMPTS, SYSTEM)
    alone = [_plain(model, r, 10, tok.eos_token_id) for r in rows]
    monkeypatch.setattr(prefill, "PREFILL_ROWS", 2)
    assert len({len(r) for r in rows}) >= 3  # the groups really have different widths
    assert [o.ids for o in _greedy(model, rows, 10, tok.eos_token_id)] == alone
    assert [o.ids for o in _greedy(model, rows, 10, tok.eos_token_id, share_prefix=False)] == alone
    monkeypatch.setattr(prefill, "PREFILL_ROWS", 16)
    shared = common_prefix(rows)
    tails = sorted((len(r) - shared for r in rows), reverse=True)
    assert tails[0] > tails[1]
    monkeypatch.setattr(prefill, "PREFILL_TOKENS", 2 * tails[1])  # the token cap: the longest alone, then groups
    groups = prefill.prefill_groups(tails)
    assert groups[0] == [0] and any(len(g) > 1 for g in groups)
    assert [o.ids for o in _greedy(model, rows, 10, tok.eos_token_id)] == alone
    assert lm_head.fast_parts(model) is not None
    monkeypatch.setattr(next_token, "fast_parts", lambda m: None)  # NextToken: the model's forward and argmax
    monkeypatch.setattr(caches, "fast_parts", lambda m: None)  # kernels: no head to skip or screen
    monkeypatch.setattr(prefill, "plain_layers", lambda cache: False)
    assert [o.ids for o in _greedy(model, rows, 10, tok.eos_token_id)] == alone


def test_prefill_groups_cap_rows_and_padded_tokens(monkeypatch):
    """A group ends at PREFILL_ROWS rows or where one more row would pad it past PREFILL_TOKENS (its first row is its
    longest); a prompt longer than the cap goes alone; off the CPU, one group."""
    monkeypatch.setattr(prefill, "PREFILL_ROWS", 3)
    monkeypatch.setattr(prefill, "PREFILL_TOKENS", 100)
    lengths = [120, 60, 40, 30, 30, 20, 10, 10, 10, 10]
    assert prefill.prefill_groups(lengths) == [[0], [1], [2, 3], [4, 5, 6], [7, 8, 9]]
    assert prefill.prefill_groups([50, 50, 50]) == [[0, 1], [2]]  # exactly at the cap: still one group
    assert prefill.prefill_groups(lengths, cpu=False) == [list(range(10))]
    assert prefill.prefill_groups([]) == [] == prefill.prefill_groups([], cpu=False)


def test_fast_parts_refuses_models_whose_logits_are_more_than_the_head(tiny):
    model, _ = tiny
    model.config.final_logit_softcapping = 30.0
    try:
        assert lm_head.fast_parts(model) is None
    finally:
        model.config.final_logit_softcapping = None
