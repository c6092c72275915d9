"""The decode loop's CPU kernels: float32 linears through oneDNN (:mod:`ftrisk.generation.cpu.linear`) and one-query
attention as weighted sums (:mod:`ftrisk.generation.cpu.attention`), each against torch's / transformers' own, and
:func:`ftrisk.generation.cpu.loop.greedy` with both on against both off and against plain ``model.generate``. Each
switch is set through :class:`ftrisk.generation.cpu.options.DecodeOptions`."""

import platform
import threading
import types

import pytest
import torch
import torch.nn.functional as F

from ftrisk import memory
from ftrisk.generation.cpu import attention as da
from ftrisk.generation.cpu import hardware, key_blocks, loop, resources, weighted_sums
from ftrisk.generation.cpu import linear as cl
from ftrisk.generation.cpu import mkl as cpu_mkl
from ftrisk.generation.cpu import onednn as cpu_onednn
from ftrisk.generation.cpu.caches import KernelCache, kernels, weights_fingerprint
from ftrisk.generation.cpu.kv_layer import growing_layer
from ftrisk.generation.cpu.next_token import NextToken
from ftrisk.generation.cpu.options import DecodeOptions, current, use
from ftrisk.tokens import common_prefix
from test_backend_hf import PROMPTS, SYSTEM, _ids, _plain, sensitive  # noqa: F401 (sensitive: a fixture)
from test_backend_hf import _greedy as _greedy_with

onednn = pytest.mark.skipif(not hardware.onednn_available(), reason="needs an x86-64 CPU and torch with oneDNN")

#: The kernels are tested on any x86-64 CPU, also an Intel one, where "auto" leaves the linears to MKL.
ON = DecodeOptions(onednn_linear=True)
#: The defaults: "auto" (MKL's packed SGEMM on an Intel CPU, oneDNN on another x86-64 one).
AUTO = DecodeOptions()

#: More prompts than the decode loop's MIN_ROWS, so that its decode steps take the oneDNN path (a finished row or
#: two may leave the batch).
MORE_PROMPTS = PROMPTS + ["Who built the first steam engine?", "What does a judge do in court?",
                          "Explain why the sky is blue.", "List three prime numbers."]


@pytest.fixture(autouse=True, scope="module")
def _one_thread(torch_single_thread):
    yield


def _greedy(model, rows, n, eos, **kw):
    """The decode loop with oneDNN's linears (:data:`ON`) unless ``options`` says otherwise."""
    kw.setdefault("options", ON)
    return _greedy_with(model, rows, n, eos, **kw)


class Net(torch.nn.Module):
    """Two float32 linears that oneDNN takes, one too narrow for it, one in bfloat16, and a head to skip."""

    def __init__(self):
        super().__init__()
        self.up = torch.nn.Linear(32, 64)
        self.down = torch.nn.Linear(64, 48, bias=False)
        self.narrow = torch.nn.Linear(48, 8)
        self.bf16 = torch.nn.Linear(32, 32).to(torch.bfloat16)
        self.head = torch.nn.Linear(48, 100)

    def forward(self, x):
        h = self.down(torch.relu(self.up(x)))
        return self.head(h), self.narrow(h)


@pytest.fixture
def net():
    with torch.random.fork_rng():
        torch.manual_seed(0)
        return Net().requires_grad_(False).eval()


@pytest.fixture
def onednn_calls(monkeypatch):
    """Row counts of the calls to oneDNN's linear op (``onednn.linear`` looks the op up at each call)."""
    real = torch.ops.mkldnn._linear_pointwise
    rows = []

    def spy(x, *args, **kwargs):
        rows.append(x.shape[0])
        return real(x, *args, **kwargs)

    monkeypatch.setattr(torch.ops.mkldnn, "_linear_pointwise", spy)
    return rows


@pytest.fixture
def fresh_available():
    """``hardware.onednn_available`` is cached per process: computed again in this test, and again after it."""
    hardware.onednn_available.cache_clear()
    yield
    hardware.onednn_available.cache_clear()


def _swapped(model):
    return {name for name, m in model.named_modules() if "forward" in m.__dict__}


def _ref(lin, x):
    return F.linear(x, lin.weight, lin.bias)


# --------------------------------------------------------------------------- linear (the float32 linears swapped)


@onednn
def test_float32_linears_but_the_head_run_through_onednn_and_are_restored(net, onednn_calls):
    """Exactly the wide float32 linears are swapped and packed (not the skipped head, the narrow or the bfloat16
    one), each call of a model forward at >= MIN_ROWS rows reaches oneDNN, and torch's forward is back after."""
    x = torch.randn(cl.MIN_ROWS, 32)
    want = net(x)
    with cl.onednn_linears(net, skip=net.head, options=ON) as n:
        assert n == 2 and _swapped(net) == {"up", "down"}
        assert all("_ftrisk_onednn" in m.__dict__ for m in (net.up, net.down))
        assert not any("_ftrisk_onednn" in m.__dict__ for m in (net.head, net.narrow, net.bf16))
        got = net(x)
    assert onednn_calls == [cl.MIN_ROWS, cl.MIN_ROWS]  # up and down, once each; head and narrow: torch's
    for g, w in zip(got, want):
        torch.testing.assert_close(g, w, rtol=1e-5, atol=1e-5)
    assert _swapped(net) == set()
    net(x)
    assert len(onednn_calls) == 2  # not after the block


@onednn
def test_outputs_match_torch_linear_and_few_rows_are_torch_bitwise(net, onednn_calls):
    lin = net.up
    many = [torch.randn(cl.MIN_ROWS, 32), torch.randn(2, 5, 32), torch.randn(32, 11).t(),  # 3-d, non-contiguous
            torch.randn(3, 4, 32) * 1e3]
    few = [torch.randn(1, 32), torch.randn(cl.MIN_ROWS - 1, 32), torch.randn(1, 1, 32), torch.randn(32)]
    with cl.onednn_linears(net, options=ON):
        got_many = [lin(x) for x in many]
        assert len(onednn_calls) == len(many)
        got_few = [lin(x) for x in few]
        assert len(onednn_calls) == len(many)  # below MIN_ROWS: torch's own linear
    for x, y in zip(many, got_many):
        assert y.shape == (*x.shape[:-1], 64) and y.dtype == torch.float32
        torch.testing.assert_close(y, _ref(lin, x), rtol=1e-5, atol=1e-5)
    for x, y in zip(few, got_few):
        assert torch.equal(y, _ref(lin, x))


@onednn
def test_forward_restored_when_the_block_raises(net, onednn_calls):
    with pytest.raises(RuntimeError, match="boom"):
        with cl.onednn_linears(net, skip=net.head, options=ON):
            assert _swapped(net) == {"up", "down"}
            raise RuntimeError("boom")
    assert _swapped(net) == set()
    x = torch.randn(cl.MIN_ROWS, 32)
    assert torch.equal(net.up(x), _ref(net.up, x)) and onednn_calls == []


@onednn
def test_packed_weights_live_as_long_as_the_block_and_follow_any_weight_change(net, onednn_calls):
    """Packed on entry, dropped on exit (a change through ``.data``, as PEFT's merge makes, bumps no version: a
    packed copy kept across blocks would be stale); a nested block packs nothing again; the bias is read at every
    call."""
    x = torch.randn(cl.MIN_ROWS, 32)
    with cl.onednn_linears(net, skip=net.head, options=ON):
        first = net.up.__dict__["_ftrisk_onednn"]
        with cl.onednn_linears(net, skip=net.head, options=ON) as nested:
            assert nested == 0 and net.up.__dict__["_ftrisk_onednn"] is first  # the enclosing block's
        assert _swapped(net) == {"up", "down"}  # the nested block's exit left the enclosing one's forwards
        with torch.no_grad():
            net.up.bias.add_(3.0)
        torch.testing.assert_close(net.up(x), _ref(net.up, x), rtol=1e-5, atol=1e-5)
    assert not any("_ftrisk_onednn" in m.__dict__ for m in net.modules())
    version = net.up.weight._version
    net.up.weight.data += 1.0  # in place, no version bump
    assert net.up.weight._version == version
    with cl.onednn_linears(net, skip=net.head, options=ON):
        assert net.up.__dict__["_ftrisk_onednn"] is not first
        y = net.up(x)
    torch.testing.assert_close(y, _ref(net.up, x), rtol=1e-5, atol=1e-5)
    assert len(onednn_calls) == 2


@onednn
def test_a_forward_already_on_the_instance_is_left_alone(net, onednn_calls):
    """accelerate's hooks set a forward on the instance: that layer is not taken, and its forward survives."""
    own = net.up.forward = lambda x: torch.zeros(1)
    with cl.onednn_linears(net, skip=net.head, options=ON) as n:
        assert n == 1 and _swapped(net) == {"up", "down"} and net.up.forward is own
    assert net.up.__dict__["forward"] is own and _swapped(net) == {"up"}


@onednn
def test_over_the_memory_budget_plain_weights_nothing_kept(net, onednn_calls, monkeypatch):
    asked = []

    def budget(device, fraction=0.25):
        asked.append((device, fraction))
        return 0

    monkeypatch.setattr(resources, "memory_budget", budget)
    x = torch.randn(2 * cl.MIN_ROWS, 32)
    with cl.onednn_linears(net, skip=net.head, options=ON) as n:
        assert n == 2
        got = net(x)
    assert asked == [("cpu", cl.PACK_MEMORY_FRACTION)]
    assert len(onednn_calls) == 2  # still oneDNN, on the plain weights
    assert not any("_ftrisk_onednn" in m.__dict__ for m in net.modules())
    for g, w in zip(got, net(x)):
        torch.testing.assert_close(g, w, rtol=1e-5, atol=1e-5)
    assert cl.describe(net, options=ON).startswith("oneDNN, weights not packed")  # the generation record says what ran
    if hardware.mkl_available():  # on Intel, MKL without its packing is torch's own linear, and the record says so
        monkeypatch.setattr(hardware, "cpu_info", lambda: ("GenuineIntel", frozenset({"avx512f"})))
        with cl.onednn_linears(net, skip=net.head, options=AUTO) as n:
            assert n == 0
        assert cl.describe(net, options=AUTO) == "torch (nn.Linear on an Intel CPU: MKL; too little free memory to pack its weights)"


@onednn
def test_describe_weighs_what_onednn_linears_would_pack(net, monkeypatch):
    """The record's packing claim is decided over the same layers as the swap: all but the skipped head, less those
    whose packings a kept cache already holds."""
    body = (net.up.weight.numel() + net.down.weight.numel()) * 4
    monkeypatch.setattr(resources, "memory_budget", lambda device, fraction=0.25: body)  # the body fits, not the head too
    keep = {}
    with cl.onednn_linears(net, skip=net.head, keep=keep, options=ON) as n:
        assert n == 2 and all(m.__dict__["_ftrisk_onednn"].data.is_mkldnn for m in (net.up, net.down))  # packed
    assert cl.describe(net, net.head, options=ON).startswith("oneDNN (float32")
    assert cl.describe(net, options=ON).startswith("oneDNN, weights not packed")  # the head counted too: over the budget
    monkeypatch.setattr(resources, "memory_budget", lambda device, fraction=0.25: 0)
    assert cl.describe(net, net.head, keep, options=ON).startswith("oneDNN (float32")  # kept packed: nothing left to pack
    assert cl.describe(net, net.head, options=ON).startswith("oneDNN, weights not packed")
    plain = {}
    with cl.onednn_linears(net, skip=net.head, keep=plain, options=ON):  # no room: the plain weights kept
        pass
    assert len(plain) == 2 and cl.describe(net, net.head, plain, options=ON).startswith("oneDNN, weights not packed")


@onednn
def test_gradients_still_flow_through_torch_linear(net, onednn_calls):
    """oneDNN's op has no autograd: a call that needs gradients (of the weights or of the input) takes torch's
    linear; without them, the same layer takes oneDNN again."""
    lin = net.up.requires_grad_(True)
    x = torch.randn(cl.MIN_ROWS, 32)
    with torch.enable_grad(), cl.onednn_linears(net, skip=net.head, options=ON):
        (lin(x) ** 2).sum().backward()  # trainable weights
        got_w, got_b = lin.weight.grad.clone(), lin.bias.grad.clone()
        lin.requires_grad_(False)
        xg = x.clone().requires_grad_(True)
        (net.down(torch.relu(lin(xg))) ** 2).sum().backward()  # frozen weights, an input that needs its gradient
        with torch.inference_mode():
            lin(x)
    assert onednn_calls == [cl.MIN_ROWS]  # only the call under inference_mode
    lin.requires_grad_(True)
    lin.zero_grad()
    with torch.enable_grad():
        (_ref(lin, x) ** 2).sum().backward()
        torch.testing.assert_close(got_w, lin.weight.grad)
        torch.testing.assert_close(got_b, lin.bias.grad)
        xr = x.clone().requires_grad_(True)
        (F.linear(torch.relu(_ref(lin, xr)), net.down.weight) ** 2).sum().backward()
    torch.testing.assert_close(xg.grad, xr.grad)


def test_applies_only_to_float32_on_x86_with_the_flag_on(net, fresh_available, monkeypatch):
    if not hardware.onednn_available():
        pytest.skip("needs an x86-64 CPU and torch with oneDNN")
    assert cl.applies(net, options=ON) and cl.describe(net, options=ON).startswith("oneDNN")
    off = DecodeOptions(onednn_linear=False)
    with cl.onednn_linears(net, options=off) as n:
        assert n == 0 and _swapped(net) == set()
    assert not cl.applies(net, options=off) and cl.describe(net, options=off) == "torch (nn.Linear)"
    bf16 = Net().to(torch.bfloat16)
    with cl.onednn_linears(bf16, options=ON) as n:
        assert n == 0 and _swapped(bf16) == set()
    assert not cl.applies(bf16, options=ON) and cl.describe(bf16, options=ON) == "torch (nn.Linear)"
    for machine in ("aarch64", "arm64"):
        monkeypatch.setattr(platform, "machine", lambda: machine)
        hardware.onednn_available.cache_clear()
        assert not cl.applies(net, options=ON) and cl.describe(net, options=ON) == "torch (nn.Linear)"
        with cl.onednn_linears(net, options=ON) as n:
            assert n == 0 and _swapped(net) == set()
    assert not cl.applies(torch.nn.Module(), options=ON)  # no parameters at all


def test_auto_takes_onednn_off_intel_and_packed_mkl_on_intel(net, fresh_available, monkeypatch):
    if not (hardware.onednn_available() and hardware.mkl_available()):
        pytest.skip("needs an x86-64 CPU and torch with oneDNN and MKL")
    for vendor, how in (("GenuineIntel", "mkl"), ("AuthenticAMD", "onednn"), ("", "onednn")):
        monkeypatch.setattr(hardware, "cpu_info", lambda v=vendor: (v, frozenset({"avx512f"})))
        assert cl.kind(net, options=AUTO) == how and cl.applies(net, options=AUTO)
        assert cl.kind(net, options=ON) == "onednn"  # True: oneDNN on any x86-64 CPU
        with cl.onednn_linears(net, skip=net.head, options=AUTO) as n:
            assert n == 2
            assert all(isinstance(m.__dict__["_ftrisk_onednn"],
                                  cpu_mkl.MklPacked if how == "mkl" else cpu_onednn.PackedWeight)
                       for m in (net.up, net.down))
        assert cl.describe(net, options=AUTO).startswith("MKL SGEMM, weights packed" if how == "mkl" else "oneDNN (float32")
        assert cl.describe(Net().to(torch.bfloat16), options=AUTO) == "torch (nn.Linear)"  # not for its dtype, anywhere
    monkeypatch.setattr(hardware, "cpu_info", lambda: ("GenuineIntel", frozenset({"avx512f"})))
    unpacked = DecodeOptions(mkl_packed=False)  # on Intel: torch's own linear (MKL, weights laid out per call)
    assert cl.kind(net, options=unpacked) is None
    assert cl.describe(net, options=unpacked) == "torch (nn.Linear on an Intel CPU: MKL)"
    with cl.onednn_linears(net, skip=net.head, options=unpacked) as n:
        assert n == 0
    screen_weight = cpu_onednn.packed_weight(torch.randn(4, 4), options=unpacked)
    assert isinstance(screen_weight, cpu_onednn.PackedWeight)  # the screen's weight: packed anyway
    off = DecodeOptions(onednn_linear=False)
    assert not isinstance(cpu_onednn.packed_weight(torch.randn(4, 4), options=off), cpu_onednn.PackedWeight)
    with pytest.raises(ValueError, match="onednn_linear"):  # not a setting: refused where the options are made
        DecodeOptions(onednn_linear="on")


def test_cpu_info_reads_vendor_and_flags():
    vendor, flags = hardware.cpu_info()
    if platform.machine().lower() in ("x86_64", "amd64"):
        assert vendor and "sse2" in flags


# --------------------------------------------------------------------------- decode_attention


def _module(groups, training=False):
    return types.SimpleNamespace(num_key_value_groups=groups, training=training, is_causal=True)


def _qkv(rows=5, heads=9, kv_heads=3, q=1, n=11, dim=16, seed=0):
    g = torch.Generator().manual_seed(seed)
    return (torch.randn(rows, heads, q, dim, generator=g), torch.randn(rows, kv_heads, n, dim, generator=g),
            torch.randn(rows, kv_heads, n, dim, generator=g))


def _left_padded(pads, n, q=1):
    """Boolean [rows, 1, q, n] mask: row i's first pads[i] keys padding, causal over the last q keys."""
    j = torch.arange(n)
    t = torch.arange(q)[:, None]
    return torch.stack([(j >= p) & (j <= n - q + t) for p in pads])[:, None]


@pytest.fixture
def sdpa_calls(monkeypatch):
    """Calls that ``decode_attention`` hands to transformers' ``sdpa`` function (imported at each call)."""
    from transformers.integrations import sdpa_attention

    real = sdpa_attention.sdpa_attention_forward
    calls = []

    def spy(*args, **kwargs):
        calls.append(args[1].shape)
        return real(*args, **kwargs)

    monkeypatch.setattr(sdpa_attention, "sdpa_attention_forward", spy)
    return calls, real


def test_decode_attention_equals_sdpa_for_one_query_with_grouped_heads(sdpa_calls):
    calls, sdpa = sdpa_calls
    mod = _module(3)
    q, k, v = _qkv()
    mask = _left_padded([0, 3, 7, 1, 10], 11)  # the last row attends to its one own key only
    for m, scaling in ((mask, None), (None, None), (mask, 0.3), (mask[:1], None)):  # [:1]: broadcast over rows
        got, weights = da.decode_attention(mod, q, k, v, m, scaling=scaling)
        want = sdpa(mod, q, k, v, m, scaling=scaling)[0]
        assert weights is None and got.shape == want.shape == (5, 1, 9, 16)
        torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)
    assert calls == []  # every one computed by the two products, none handed on
    # one key/value head per query head, and a transposed (non-contiguous) query as the model passes it
    q1, k1, v1 = _qkv(rows=3, heads=4, kv_heads=4, n=6, dim=8, seed=1)
    q1 = q1.transpose(1, 2).contiguous().transpose(1, 2)
    m1 = _left_padded([2, 0, 5], 6)
    torch.testing.assert_close(da.decode_attention(_module(1), q1, k1, v1, m1)[0], sdpa(_module(1), q1, k1, v1, m1)[0],
                               rtol=1e-5, atol=1e-5)


def test_decode_attention_hands_everything_else_to_sdpa_unchanged(sdpa_calls):
    calls, sdpa = sdpa_calls
    mod = _module(3)
    q, k, v = _qkv(q=4)
    mask = _left_padded([0, 3, 5, 1, 2], 11, q=4)
    assert torch.equal(da.decode_attention(mod, q, k, v, mask)[0], sdpa(mod, q, k, v, mask)[0])  # a prefill
    q, k, v = _qkv()
    additive = torch.zeros(5, 1, 1, 11).masked_fill(~_left_padded([0, 3, 7, 1, 10], 11), float("-inf"))
    assert torch.equal(da.decode_attention(mod, q, k, v, additive)[0], sdpa(mod, q, k, v, additive)[0])  # float mask
    bias = torch.randn(5, 9, 1, 11)
    assert torch.equal(da.decode_attention(mod, q, k, v, None, position_bias=bias)[0],
                       sdpa(mod, q, k, v, None, position_bias=bias)[0])
    torch.manual_seed(0)
    got = da.decode_attention(_module(3, training=True), q, k, v, None, dropout=0.5)[0]
    torch.manual_seed(0)
    assert torch.equal(got, sdpa(_module(3, training=True), q, k, v, None, dropout=0.5)[0])
    assert len(calls) == 4


def test_decode_attention_value_head_size_other_than_the_query_s():
    """Multi-head latent attention (DeepSeek-V2/V3, MiniCPM3) has values narrower than queries and keys."""
    from transformers.integrations.sdpa_attention import sdpa_attention_forward

    q, k, _ = _qkv(rows=3, heads=4, kv_heads=2, dim=24)
    v = torch.randn(3, 2, 11, 16)
    torch.testing.assert_close(da.decode_attention(_module(2), q, k, v, None)[0],
                               sdpa_attention_forward(_module(2), q, k, v, None)[0], rtol=1e-5, atol=1e-5)


def test_cpu_decode_attention_switches_and_restores(sensitive, monkeypatch):
    model, _ = sensitive
    assert model.config._attn_implementation == "sdpa"
    with da.cpu_decode_attention(model) as on:
        assert on and model.config._attn_implementation == da.ATTENTION
        assert {m.config._attn_implementation for m in model.modules() if hasattr(m, "config")} == {da.ATTENTION}
    assert model.config._attn_implementation == "sdpa"
    with pytest.raises(KeyError):
        with da.cpu_decode_attention(model):
            raise KeyError("boom")
    assert {m.config._attn_implementation for m in model.modules() if hasattr(m, "config")} == {"sdpa"}
    with da.cpu_decode_attention(model, options=DecodeOptions(decode_attention=False)) as on:
        assert not on and model.config._attn_implementation == "sdpa"


def test_cpu_decode_attention_leaves_an_eager_model_alone(sensitive):
    from transformers import LlamaForCausalLM

    cfg = sensitive[0].config.__class__.from_dict(sensitive[0].config.to_dict())
    cfg.num_hidden_layers = 1
    cfg._attn_implementation = "eager"
    eager = LlamaForCausalLM(cfg)
    assert eager.config._attn_implementation == "eager"
    with da.cpu_decode_attention(eager) as on:
        assert not on and eager.config._attn_implementation == "eager"
    assert eager.config._attn_implementation == "eager"


def test_cpu_decode_attention_restores_each_sub_config_s_own_setting():
    from transformers import LlavaConfig

    cfg = LlavaConfig()
    cfg._attn_implementation = {"": "sdpa", "text_config": "sdpa", "vision_config": "eager"}
    holder = torch.nn.Linear(2, 2)
    holder.config = cfg
    with da.cpu_decode_attention(holder):
        pass
    assert (cfg._attn_implementation, cfg.text_config._attn_implementation,
            cfg.vision_config._attn_implementation) == ("sdpa", "sdpa", "eager")


# --------------------------------------------------------------------------- blocked keys, values as weighted sums


def test_blocked_keys_written_in_pieces_read_back_and_scored_across_block_edges(monkeypatch):
    monkeypatch.setattr(key_blocks, "KEY_BLOCK", 4)
    g = torch.Generator().manual_seed(2)
    keys = torch.randn(5, 3, 14, 8, generator=g)
    q = torch.randn(5, 3, 3, 8, generator=g)

    def scores(n):
        return torch.einsum("rhgd,rhnd->rhgn", q, keys[:, :, :n])

    buf = keys.new_zeros(key_blocks.blocked_shape(keys, 5, 14))
    assert buf.shape == (5, 3, 5, 8, 4)  # 14 positions in 4 blocks of 4, and the open block's slot
    for a, b in ((0, 3), (3, 4), (4, 9), (9, 13)):  # as the prefill writes: a prefix, pieces across block edges
        key_blocks.write_blocked(buf, a, keys[:, :, a:b])
    key_blocks.open_block(buf, 13)
    assert torch.equal(key_blocks.unblocked(buf, 13), keys[:, :, :13])
    assert torch.equal(key_blocks.open_slot(buf)[:, :, :1], keys[:, :, 12:13])  # past the last whole block: the open slot
    for n in (1, 4, 5, 13):
        b = keys.new_zeros(key_blocks.blocked_shape(keys, 5, 14))
        key_blocks.write_blocked(b, 0, keys[:, :, :n])
        key_blocks.open_block(b, n)
        got = weighted_sums.blocked_scores(q, b, n)
        assert got.shape == (5, 3, 3, n)
        torch.testing.assert_close(got, scores(n), rtol=1e-5, atol=1e-5)
    dec = keys.new_zeros(key_blocks.blocked_shape(keys, 5, 14))  # as the decode loop appends: one position, or several
    key_blocks.write_blocked(dec, 0, keys[:, :, :2])
    key_blocks.open_block(dec, 2)
    n = 2
    for step in (1, 1, 1, 3, 1, 1, 2, 1, 1):  # across the block edges at 4, 8 and 12
        key_blocks.append_blocked(dec, n, keys[:, :, n:n + step])
        n += step
        assert torch.equal(key_blocks.unblocked(dec, n), keys[:, :, :n]), n
        torch.testing.assert_close(weighted_sums.blocked_scores(q, dec, n), scores(n), rtol=1e-5, atol=1e-5)
    assert n == 14 and torch.equal(dec[:, :, 2], keys[:, :, 8:12].transpose(-1, -2))  # a closed block, transposed
    part = keys.new_zeros(key_blocks.blocked_shape(keys, 5, 14))  # some rows only, as the prefill writes its groups
    rows = torch.tensor([4, 1])
    key_blocks.write_blocked(part, 2, keys[:2, :, 2:11], rows)
    key_blocks.open_block(part, 11)
    back = key_blocks.unblocked(part, 11)
    assert torch.equal(back[rows][:, :, 2:11], keys[:2, :, 2:11])
    assert not back[[0, 2, 3]].any() and not back[rows][:, :, :2].any()


def test_decode_attention_with_blocked_keys_equals_sdpa_and_hands_the_rest_on_unblocked(sdpa_calls, monkeypatch):
    monkeypatch.setattr(key_blocks, "KEY_BLOCK", 4)
    calls, sdpa = sdpa_calls
    mod = _module(3)
    q, k, v = _qkv()  # 11 keys
    buf = k.new_zeros(key_blocks.blocked_shape(k, 5, 13))
    key_blocks.write_blocked(buf, 0, k)
    key_blocks.open_block(buf, 11)
    vbuf = torch.zeros(5, 3, 13, 16)
    vbuf[:, :, :11] = v
    mask = _left_padded([0, 3, 7, 1, 10], 11)
    for m in (mask, None):
        torch.testing.assert_close(da.decode_attention(mod, q, buf, vbuf[:, :, :11], m)[0], sdpa(mod, q, k, v, m)[0],
                                   rtol=1e-5, atol=1e-5)
    assert calls == []
    additive = torch.zeros(5, 1, 1, 11).masked_fill(~mask, float("-inf"))  # a float mask: handed on, keys plain
    assert torch.equal(da.decode_attention(mod, q, buf, vbuf[:, :, :11], additive)[0], sdpa(mod, q, k, v, additive)[0])
    assert calls == [q.shape]


def test_positions_alike_in_every_row_and_masked_ones_are_read_from_the_first_row(sdpa_calls, monkeypatch):
    """Under ``same_positions(p)`` the first p positions, and every masked one, are read from row 0 (one copy in
    the CPU's cache): the same result as sdpa when the promise holds; a broken promise shows that they really are
    read from row 0."""
    monkeypatch.setattr(key_blocks, "KEY_BLOCK", 4)
    _, sdpa = sdpa_calls
    mod = _module(3)
    q, k, v = _qkv(n=14)
    k[:, :, :8], v[:, :, :8] = k[:1, :, :8], v[:1, :, :8]  # 8 positions alike in every row: two whole blocks
    mask = _left_padded([0, 0, 0, 0, 0], 14)
    mask[1, ..., 8:12] = False  # row 1: positions 8-11 masked (a whole block), row 2: 9-10 (part of one)
    mask[2, ..., 9:11] = False
    k[1, :, 8:12] = k[2, :, 9:11].mean() + 100  # masked: whatever is there must not matter
    buf = k.new_zeros(key_blocks.blocked_shape(k, 5, 16))
    key_blocks.write_blocked(buf, 0, k)
    key_blocks.open_block(buf, 14)
    want = sdpa(mod, q, k, v, mask)[0]
    for same in (0, 8):
        with da.same_positions(same):
            torch.testing.assert_close(da.decode_attention(mod, q, buf, v, mask)[0], want, rtol=1e-5, atol=1e-5)
            torch.testing.assert_close(da.decode_attention(mod, q, k, v, mask)[0], want, rtol=1e-5, atol=1e-5)
    broken_k, broken_v = k.clone(), v.clone()
    broken_k[3, :, :4] += 1.0  # row 3's first block no longer like row 0's
    broken_v[3, :, :8] += 1.0
    bbuf = k.new_zeros(key_blocks.blocked_shape(k, 5, 16))
    key_blocks.write_blocked(bbuf, 0, broken_k)
    key_blocks.open_block(bbuf, 14)
    honest = sdpa(mod, q, broken_k, broken_v, mask)[0]
    with da.same_positions(8):
        promised = da.decode_attention(mod, q, bbuf, broken_v, mask)[0]
    assert not torch.allclose(promised[3], honest[3], atol=1e-3)  # row 3 read row 0's copy
    torch.testing.assert_close(promised[[0, 1, 2, 4]], want[[0, 1, 2, 4]], rtol=1e-5, atol=1e-5)
    with use(DecodeOptions(first_row_reads=False)), da.same_positions(8):  # the running call's options
        torch.testing.assert_close(da.decode_attention(mod, q, bbuf, broken_v, mask)[0], honest, rtol=1e-5, atol=1e-5)


def test_the_additive_mask_is_remade_for_another_mask_or_a_changed_one(sdpa_calls):
    """The 0 / -inf form of a mask is kept for the mask object (every layer of a step gets the same one): another
    mask of the same shape, or the same mask changed in place, gets its own."""
    _, sdpa = sdpa_calls
    mod = _module(3)
    q, k, v = _qkv()
    first, second = _left_padded([0, 3, 7, 1, 10], 11), _left_padded([5, 0, 2, 9, 4], 11)
    for m in (first, second, first):
        torch.testing.assert_close(da.decode_attention(mod, q, k, v, m)[0], sdpa(mod, q, k, v, m)[0], rtol=1e-5,
                                   atol=1e-5)
    first[:, :, :, :6] = False  # in place: a new version
    torch.testing.assert_close(da.decode_attention(mod, q, k, v, first)[0], sdpa(mod, q, k, v, first)[0], rtol=1e-5,
                               atol=1e-5)


def test_weighted_values_sums_a_buffer_s_rows_and_falls_back_for_other_layouts(monkeypatch):
    real, bags = F.embedding_bag, []
    monkeypatch.setattr(F, "embedding_bag", lambda *a, **k: bags.append(a[1].shape) or real(*a, **k))
    g = torch.Generator().manual_seed(3)
    buf = torch.randn(4, 2, 9, 16, generator=g)
    p = torch.rand(4, 2, 3, 6, generator=g).softmax(-1)
    short = torch.randn(4 * 2 * 9 * 16 - 40, generator=g)  # a view whose storage ends before the 4th row's capacity
    cases = {"buffer": (buf[:, :, :6], True), "contiguous": (buf[:, :, :6].contiguous(), True),
             "transposed": (torch.randn(4, 2, 16, 9, generator=g).transpose(-1, -2)[:, :, :6], False),
             "every other row": (torch.randn(8, 2, 9, 16, generator=g)[::2, :, :6], False),
             "short storage": (short.as_strided((4, 2, 6, 16), (2 * 9 * 16, 9 * 16, 16, 1)), False)}
    for name, (v, bag) in cases.items():
        bags.clear()
        torch.testing.assert_close(weighted_sums.weighted_values(p, v), torch.matmul(p, v), rtol=1e-5, atol=1e-5, msg=name)
        assert bags == ([(4 * 2 * (9 if name == "buffer" else 6), 16)] if bag else []), name
    bags.clear()
    torch.testing.assert_close(weighted_sums.weighted_values(p.bfloat16(), buf[:, :, :6].bfloat16()).float(),
                               torch.matmul(p.bfloat16(), buf[:, :, :6].bfloat16()).float())
    assert bags == []  # bfloat16: the batched product
    weighted_sums.weighted_values(p, buf[:, :, :6], bag=False)
    assert bags == []
    q, k, v = _qkv()  # the attention: plain keys, so its only weighted sum is the values'
    for values_bag, calls in ((True, 1), (False, 0)):
        bags.clear()
        with use(DecodeOptions(values_bag=values_bag)):  # the running call's options
            torch.testing.assert_close(da.decode_attention(_module(3), q, k, v, None)[0],
                                       torch.matmul(torch.einsum("rhgd,rhnd->rhgn", q.view(5, 3, 3, 16), k).mul(0.25)
                                                    .softmax(-1), v).view(5, 1, 9, 16), rtol=1e-5, atol=1e-5)
        assert len(bags) == calls


@pytest.mark.parametrize("blocked", [False, True])
def test_dropping_rows_moves_the_kept_ones_up_in_place_and_any_other_selection_gathers(blocked, monkeypatch):
    monkeypatch.setattr(key_blocks, "KEY_BLOCK", 4)
    Growing = growing_layer()
    g = torch.Generator().manual_seed(4)
    keys, values = torch.randn(6, 2, 10, 8, generator=g), torch.randn(6, 2, 10, 8, generator=g)

    def layer():
        kb = keys.new_zeros(key_blocks.blocked_shape(keys, 6, 10)) if blocked else torch.zeros(6, 2, 10, 8)
        if blocked:
            key_blocks.write_blocked(kb, 0, keys[:, :, :7])
        else:
            kb[:, :, :7] = keys[:, :, :7]
        vb = torch.zeros(6, 2, 10, 8)
        vb[:, :, :7] = values[:, :, :7]
        return Growing(kb, vb, 7)

    def plain_keys(lay):
        return key_blocks.unblocked(lay.keys, lay.n) if blocked else lay.keys

    for keep in ([0, 2, 3, 5], [1, 4], [2, 0], [3, 3, 1], [0, 0, 1]):  # the last three: not increasing, a gather
        lay = layer()
        before = (lay.kbuf.data_ptr(), lay.vbuf.data_ptr())
        lay.batch_select_indices(torch.tensor(keep))
        assert torch.equal(plain_keys(lay), keys[keep][:, :, :7]) and torch.equal(lay.values, values[keep][:, :, :7])
        in_place = (lay.kbuf.data_ptr(), lay.vbuf.data_ptr()) == before
        assert in_place == (keep in ([0, 2, 3, 5], [1, 4])), keep
        lay.update(keys[:len(keep), :, 7:8], values[:len(keep), :, 7:8])  # the next step writes after them
        assert torch.equal(plain_keys(lay)[:, :, 7], keys[:len(keep), :, 7])


def test_keys_blocked_only_under_decode_attention_for_listed_float32_models(sensitive, monkeypatch):
    model, _ = sensitive
    assert not da.keys_blocked(model)  # sdpa outside the block
    with da.cpu_decode_attention(model):
        assert da.keys_blocked(model)
        monkeypatch.setattr(key_blocks, "BLOCKED_KEY_MODELS", ("qwen3",))
        assert not da.keys_blocked(model)
        monkeypatch.undo()
        monkeypatch.setattr(key_blocks, "KEY_BLOCK", 0)
        assert not da.keys_blocked(model)


# --------------------------------------------------------------------------- the decode loop with both


def test_greedy_same_tokens_with_the_cpu_kernels_on_and_off(sensitive, monkeypatch):
    """Both kernels really run in the decode steps (>= MIN_ROWS rows, one query per row) and change no token:
    the same ids as with both off, and as each prompt alone through ``model.generate``."""
    from transformers import AttentionInterface
    from transformers.integrations import sdpa_attention

    model, tok = sensitive
    eos = tok.eos_token_id
    rows = _ids(tok, MORE_PROMPTS, SYSTEM)
    assert len(rows) >= cl.MIN_ROWS + 2 and len({len(r) for r in rows}) > 1  # left padding in the decode steps
    alone = [_plain(model, r, 10, eos) for r in rows]

    step = []  # each forward pass's (new tokens per row, rows): 1 new token, a decode step
    hook = model.get_decoder().register_forward_pre_hook(
        lambda m, args, kw: step.append(tuple(kw["input_ids"].shape[::-1])), with_kwargs=True)
    real_op, linear_calls = torch.ops.mkldnn._linear_pointwise, []  # the forward pass of each float32 call

    def op(x, *args, **kwargs):
        if x.dtype == torch.float32:  # not the screened head's bfloat16 products
            linear_calls.append(step[-1])
        return real_op(x, *args, **kwargs)

    monkeypatch.setattr(torch.ops.mkldnn, "_linear_pointwise", op)
    da._register()
    real_attn, queries = AttentionInterface._global_mapping[da.ATTENTION], []
    monkeypatch.setitem(AttentionInterface._global_mapping, da.ATTENTION,
                        lambda m, q, *a, **k: queries.append(q.shape[2]) or real_attn(m, q, *a, **k))
    real_sdpa, handed_on = sdpa_attention.sdpa_attention_forward, []
    monkeypatch.setattr(sdpa_attention, "sdpa_attention_forward",
                        lambda m, q, *a, **k: handed_on.append(q.shape[2]) or real_sdpa(m, q, *a, **k))
    try:
        on = _greedy(model, rows, 10, eos)
        decode_steps = [n for q, n in step if q == 1]
        assert decode_steps and decode_steps[0] == len(rows)
        if hardware.onednn_available():  # every swapped linear once per decode step of >= MIN_ROWS rows, never below
            layers = len(cl.layers(model, skip=model.lm_head))
            assert layers == 7 * model.config.num_hidden_layers  # q k v o gate up down; not the head
            big = sum(n >= cl.MIN_ROWS for n in decode_steps)
            assert big >= 1 and sum(q == 1 for q, n in linear_calls) == layers * big
            assert all(n >= cl.MIN_ROWS for q, n in linear_calls if q == 1)
        assert queries.count(1) == len(decode_steps) * model.config.num_hidden_layers
        assert handed_on and 1 not in handed_on  # the prefill to sdpa, every decode step to the two products
        assert model.config._attn_implementation == "sdpa" and _swapped(model) == set()

        n_linear, n_attn = len(linear_calls), len(queries)
        off = _greedy(model, rows, 10, eos, options=DecodeOptions(onednn_linear=False, decode_attention=False))
        assert (len(linear_calls), len(queries)) == (n_linear, n_attn)  # off: neither runs
    finally:
        hook.remove()
    assert [o.ids for o in on] == [o.ids for o in off] == alone
    assert len({tuple(a) for a in alone}) > len(PROMPTS)  # replies that depend on the prompt


def test_greedy_with_blocked_keys_gives_each_prompt_its_own_tokens(sensitive, monkeypatch):
    """Small blocks, so that the prefill's pieces and the steps cross block edges; a row that stops early leaves
    the batch and its blocked keys with it."""
    model, tok = sensitive
    eos = tok.eos_token_id
    rows = _ids(tok, MORE_PROMPTS, SYSTEM)
    monkeypatch.setattr(key_blocks, "KEY_BLOCK", 4)
    real, scored, same = weighted_sums.blocked_scores, [], set()
    monkeypatch.setattr(weighted_sums, "blocked_scores",
                        lambda q, buf, n, *a: scored.append((q.shape[0], n)) or same.add(da._SAME.get()) or real(q, buf, n, *a))
    got = _greedy(model, rows, 10, eos, stop=lambda r, ids: r == 0 and len(ids) >= 3)
    assert scored and scored[0][0] == len(rows) and min(r for r, _ in scored) < len(rows)  # row 0 left
    assert max(n for _, n in scored) > 8  # more than two blocks
    prefix = common_prefix(rows)
    assert prefix >= loop.MIN_SHARED_PREFIX and same == {prefix + -prefix % 4}  # the prefix and its gap, alike
    alone = [_plain(model, r, 10, eos) for r in rows]
    assert got[0].truncated and got[0].ids == alone[0][:3]
    assert [o.ids for o in got[1:]] == alone[1:]


def test_greedy_runs_the_attention_under_its_own_options(sensitive, monkeypatch):
    """transformers calls the attention without ftrisk's options: it reads the running call's, which greedy sets
    (and which end with the call)."""
    model, tok = sensitive
    rows = _ids(tok, MORE_PROMPTS, SYSTEM)
    real, seen = weighted_sums.weighted_values, []
    monkeypatch.setattr(weighted_sums, "weighted_values",
                        lambda p, v, redirect=None, bag=True: seen.append((current(), redirect is not None, bag))
                        or real(p, v, redirect, bag))
    plain = DecodeOptions(values_bag=False, first_row_reads=False)
    for options in (ON, plain):
        seen.clear()
        _greedy(model, rows, 4, tok.eos_token_id, options=options)
        assert seen and {o for o, _, _ in seen} == {options}
        assert {r for _, r, _ in seen} == {options.first_row_reads} and {b for _, _, b in seen} == {options.values_bag}
    assert current() == DecodeOptions()
    seen.clear()
    with kernels(model, options=ON):  # within a block set up under other options: the call's own, for its steps
        _greedy(model, rows, 4, tok.eos_token_id, options=plain)
    assert seen and {o for o, _, _ in seen} == {plain}


# --------------------------------------------------------------------------- kept from one call to the next


def test_weights_fingerprint_sees_an_in_place_change_through_data(sensitive):
    model, _ = sensitive
    before = weights_fingerprint(model)
    assert before is not None and weights_fingerprint(model) == before
    w = model.model.layers[1].mlp.up_proj.weight
    old = w.data[3, 5].item()
    w.data[3, 5] = old + 1e-3  # one element, in place through .data: no version bump, same place
    try:
        assert weights_fingerprint(model) != before
    finally:
        w.data[3, 5] = old
    assert weights_fingerprint(model) == before
    w.data.mul_(-1.0)  # every sign flipped: an xor of the elements of each row would not see it
    head_only = weights_fingerprint(model, {model.lm_head})
    try:
        assert weights_fingerprint(model) != before
        assert weights_fingerprint(model, {model.lm_head}) == head_only  # only the weights asked for
    finally:
        w.data.mul_(-1.0)
    model.lm_head.weight.data[0, 0] += 1.0
    try:
        assert weights_fingerprint(model, {model.lm_head}) != head_only
    finally:
        model.lm_head.weight.data[0, 0] -= 1.0


def test_with_only_the_screen_kept_a_layer_change_keeps_it_and_a_head_change_rebuilds_it(sensitive, monkeypatch):
    """Where the linears are not packed (MKL's on an Intel CPU), the fingerprint covers the head's weight alone."""
    model, tok = sensitive
    unpacked = DecodeOptions(onednn_linear=False)
    monkeypatch.setattr(hardware, "fast_bf16_cpu", lambda: True)
    kept = KernelCache()
    with kernels(model, kept, options=unpacked):
        screen = NextToken(model, options=unpacked).screen
    assert screen is not None and kept.screen is screen and not kept.packed
    model.model.layers[0].mlp.down_proj.weight.data.mul_(-1.0)
    try:
        with kernels(model, kept, options=unpacked):
            assert NextToken(model, options=unpacked).screen is screen  # nothing built from that layer
    finally:
        model.model.layers[0].mlp.down_proj.weight.data.mul_(-1.0)
    with kernels(model, kept, options=ON):  # other options: built again (its weight now packed for oneDNN)
        assert NextToken(model, options=ON).screen is not screen
    model.lm_head.weight.data[0, 0] += 1.0
    try:
        with kernels(model, kept, options=unpacked):
            assert NextToken(model, options=unpacked).screen is not screen
    finally:
        model.lm_head.weight.data[0, 0] -= 1.0


@onednn
def test_kernel_cache_drops_what_other_options_built(sensitive, monkeypatch):
    """The same weights packed under other options are not reused: oneDNN's packings are no MKL packings."""
    if not hardware.mkl_available():
        pytest.skip("needs torch with MKL")
    model, _ = sensitive
    monkeypatch.setattr(hardware, "cpu_info", lambda: ("GenuineIntel", frozenset({"avx512f"})))  # "auto": MKL
    kept = KernelCache()
    with kernels(model, kept, options=ON):
        pass
    assert kept.packed and all(isinstance(w, cpu_onednn.PackedWeight) for w in kept.packed.values())
    with kernels(model, kept, options=AUTO):
        pass
    assert kept.packed and all(isinstance(w, cpu_mkl.MklPacked) for w in kept.packed.values())


def test_kernel_cache_keeps_packed_weights_and_screen_and_rebuilds_after_an_in_place_change(sensitive, monkeypatch):
    model, tok = sensitive
    eos = tok.eos_token_id
    rows = _ids(tok, MORE_PROMPTS, SYSTEM)
    monkeypatch.setattr(hardware, "fast_bf16_cpu", lambda: True)  # the screen is exact on any CPU
    packs = []
    real = cpu_onednn.PackedWeight

    class Counting(real):
        def __init__(self, *a, **k):
            packs.append(1)
            super().__init__(*a, **k)

    monkeypatch.setattr(cpu_onednn, "PackedWeight", Counting)
    layers = len(cl.layers(model, skip=model.lm_head)) if cl.applies(model, options=ON) else 0
    kept = KernelCache()
    with kernels(model, kept, options=ON):
        first = _greedy(model, rows, 8, eos)
        screen = NextToken(model, options=ON).screen
    assert screen is not None and kept.screen is screen and len(packs) == layers + 1  # + the screen's bfloat16 weight
    assert _swapped(model) == set() and "_ftrisk_screen" not in model.lm_head.__dict__  # the modules are plain again
    with kernels(model, kept, options=ON):
        again = _greedy(model, rows, 8, eos)
        assert NextToken(model, options=ON).screen is screen
    assert len(packs) == layers + 1 and [o.ids for o in again] == [o.ids for o in first]  # nothing built again

    w = model.model.layers[0].mlp.down_proj.weight  # a packed layer, changed as PEFT's merge does
    w.data.mul_(-1.0)
    try:
        with kernels(model, kept, options=ON):
            changed = _greedy(model, rows, 8, eos)
            assert NextToken(model, options=ON).screen is not screen
        assert len(packs) == 2 * (layers + 1)  # all built again
        fresh = _greedy(model, rows, 8, eos)  # no cache at all
        assert [o.ids for o in changed] == [o.ids for o in fresh] != [o.ids for o in first]
    finally:
        w.data.mul_(-1.0)
    kept.clear()
    assert not kept.packed and kept.screen is None and kept.held_bytes() == 0


def test_kv_pool_is_reused_zeroed_and_gives_each_prompt_its_own_tokens(sensitive):
    model, tok = sensitive
    eos = tok.eos_token_id
    rows = _ids(tok, MORE_PROMPTS, SYSTEM)
    kept = KernelCache()
    with kernels(model, kept, options=ON):
        first = _greedy(model, rows, 8, eos)
    assert len(kept.kv.flats) == 2 * model.config.num_hidden_layers
    where = {slot: f.data_ptr() for slot, f in kept.kv.flats.items()}
    with torch.inference_mode():
        for f in kept.kv.flats.values():
            f.fill_(float("nan"))  # whatever the last call left: a position the next one masks must not read it
    short = rows[2:6]
    with kernels(model, kept, options=ON):
        second = _greedy(model, short, 8, eos)
    assert {slot: f.data_ptr() for slot, f in kept.kv.flats.items()} == where  # the same storage, not fresh pages
    assert [o.ids for o in second] == [o.ids for o in _greedy(model, short, 8, eos)] == [o.ids for o in first[2:6]]
    early = lambda r, ids: r in (0, 2) and len(ids) >= 3  # noqa: E731 (rows leave: the kept rows move up in the pool)
    with kernels(model, kept, options=ON):
        third = _greedy(model, rows, 8, eos, stop=early)
    assert third[0].truncated and third[2].truncated
    assert [o.ids for o in third] == [o.ids for o in _greedy(model, rows, 8, eos, stop=early)]
    with kept.kv.lease() as a, kept.kv.lease() as b:
        assert a is kept.kv and b is None  # a second decode meanwhile gets fresh buffers


def test_hf_backend_keeps_its_kernels_between_calls_and_frees_them_on_close(tiny_subject):
    from ftrisk.config.schema import GenerationConfig
    from ftrisk.generation.hf import HFBackend
    from ftrisk.prompts.benchmarks import Item

    be = HFBackend(tiny_subject, GenerationConfig(max_new_tokens=4), options=ON)
    items = [Item(id=str(i), prompt=p) for i, p in enumerate(MORE_PROMPTS)]
    one = [r for rows in be.generate(items, max_new_tokens=4) for r in rows]
    held = be._kept.held_bytes()
    assert held > 0 and be._kept.kv.flats
    two = [r for rows in be.generate(items, max_new_tokens=4) for r in rows]
    assert one == two and be._kept.held_bytes() == held
    be.close()
    assert be._kept.held_bytes() == 0 and not be._kept.kv.flats


# --------------------------------------------------------------------------- MKL's packed SGEMM (an Intel CPU)

mkl = pytest.mark.skipif(not hardware.mkl_available(), reason="needs torch with MKL")


@mkl
def test_mkl_packed_linear_equals_torch_and_packs_only_when_the_rows_leave_its_range(monkeypatch):
    torch.manual_seed(0)
    w = torch.randn(96, 40)
    packs = []
    real = torch.ops.mkl._mkl_reorder_linear_weight
    monkeypatch.setattr(torch.ops.mkl, "_mkl_reorder_linear_weight",
                        lambda w, rows: packs.append(rows) or real(w, rows))
    p = cpu_mkl.MklPacked(w)
    assert p.nbytes() == 0  # nothing packed before the first call
    calls = []
    real_mm = torch.ops.mkl._mkl_linear
    monkeypatch.setattr(torch.ops.mkl, "_mkl_linear", lambda x, *a: calls.append(x.shape[0]) or real_mm(x, *a))
    for rows, packed_for in ((40, 40), (40, 40), (31, 40), (30, 40), (29, 40), (41, 41), (12, 41)):
        x = torch.randn(rows, 40) * 3
        y = p(x)
        assert y.shape == (rows, 96) and p.rows == packed_for
        torch.testing.assert_close(y, F.linear(x, w), rtol=1e-5, atol=1e-5)  # SGEMM: the order of sums may differ
    # 31 and 30 rows padded up to 40 (30 = MKL_PAD_FRACTION x 40); 29 and 12 rows: torch's own linear, no packing
    assert packs == [40, 41] and calls == [40, 40, 40, 40, 41]
    p(torch.randn(41, 40))
    assert packs == [40, 41] and p.nbytes() == w.numel() * 4
    with torch.inference_mode():  # the decode loop's mode; the buffer is written in it and used again outside it
        p(torch.randn(35, 40))
    pad = cpu_mkl._pad_buffer(41, 40, torch.float32, threading.get_ident())
    pad.fill_(float("nan"))  # whatever the pad rows hold stays in them: each output row is its own input row's
    x, b = torch.randn(35, 40), torch.randn(96)
    y = p(x, b)
    assert len(packs) == 2 and torch.isfinite(y).all()  # padded from 35 to 41 rows, not packed again
    torch.testing.assert_close(y, F.linear(x, w, b), rtol=1e-5, atol=1e-5)


@mkl
def test_mkl_swap_takes_one_token_decode_steps_only(net, monkeypatch):
    monkeypatch.setattr(hardware, "cpu_info", lambda: ("GenuineIntel", frozenset({"avx512f"})))
    calls = []
    real = torch.ops.mkl._mkl_linear
    monkeypatch.setattr(torch.ops.mkl, "_mkl_linear", lambda x, *a: calls.append(x.shape[0]) or real(x, *a))
    trims = []
    monkeypatch.setattr(memory, "release_freed_memory", lambda: trims.append(1))
    step = torch.randn(12, 1, 32)  # 12 rows, one new token each
    with torch.inference_mode(), cl.onednn_linears(net, skip=net.head, options=AUTO) as n:
        assert n == 2
        torch.testing.assert_close(net.up(step), _ref(net.up, step), rtol=1e-5, atol=1e-5)
        assert calls == [12]
        net.up(torch.randn(3, 5, 32))  # a prefill (several tokens a row): torch's own
        net.up(torch.randn(4, 1, 32))  # fewer rows than MIN_ROWS: torch's own
        assert calls == [12]
    with torch.inference_mode():
        net.up(step)
    assert calls == [12] and _swapped(net) == set()  # restored after the block
    assert trims == [1]  # its packings went with it (no cache kept them): freed memory returned


@mkl
def test_dropping_mkl_packings_returns_freed_memory(net, monkeypatch):
    """torch's MKL packings are ~4x the weight and ~1x touched: once dropped (a closed backend, other weights), the
    C heap's free pages go back to the system, else the next model's allocations grow into them."""
    monkeypatch.setattr(hardware, "cpu_info", lambda: ("GenuineIntel", frozenset({"avx512f"})))
    trims = []
    monkeypatch.setattr(memory, "release_freed_memory", lambda: trims.append(1))
    kept = KernelCache()

    def block():  # what caches.kernels does with the cache, for a model without a config
        kept.check(net, net.head, options=AUTO)
        return cl.onednn_linears(net, skip=net.head, keep=kept.packed, options=AUTO)

    with torch.inference_mode(), block():
        net.up(torch.randn(12, 1, 32))
    assert len(kept.packed) == 2 and trims == []
    with torch.no_grad():
        net.up.weight.mul_(2.0)  # other weights: the packings built from the old ones go
    with torch.inference_mode(), block():
        assert trims == [1]
        net.up(torch.randn(12, 1, 32))
    kept.clear()  # the backend's close
    assert trims == [1, 1] and not kept.packed
    kept.clear()
    assert trims == [1, 1]  # nothing held, nothing to return
