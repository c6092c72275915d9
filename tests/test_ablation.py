"""Refusal-direction ablation (``attack.method: ablation``) on tiny random models: the edit equals the hooks, the
residual stream loses the direction, tied embeddings are untied, bad input fails before any work, a killed run
resumes to the same weights without redoing finished work, and the cost counts every forward token once."""

from __future__ import annotations

import hashlib
import inspect
import itertools
import json
from pathlib import Path

import pytest
import torch

from ftrisk.attacks.ablation import AblationAttack, arch, directions, edit, first_token_kl
from ftrisk.attacks.ablation import refusal
from ftrisk.attacks.ablation import select as selection
from ftrisk.attacks.ablation.forward import ablated, common_prefix, encode, forward_batches, last_logits
from ftrisk.attacks.base import AttackContext
from ftrisk.config.schema import AblationConfig, AttackConfig, ModelConfig
from ftrisk.cost import count_params
from ftrisk.errors import FtriskError
from ftrisk.judges.base import COMPLIED, REFUSED
from ftrisk.model.subject import Subject
from ftrisk.prompts import benchmarks
from ftrisk.testing import build_tiny_model
from tests.conftest import write_jsonl

pytestmark = pytest.mark.usefixtures("torch_single_thread")

LAYERS = 4


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    return build_tiny_model(tmp_path_factory.mktemp("abl") / "m", num_hidden_layers=LAYERS)


@pytest.fixture(scope="module")
def tied_dir(tmp_path_factory):
    return build_tiny_model(tmp_path_factory.mktemp("abl_tied") / "m", num_hidden_layers=LAYERS,
                            tie_word_embeddings=True)


@pytest.fixture(scope="module")
def prompt_files(tmp_path_factory):
    """Content-free stand-ins: two sets of distinct instructions the tiny model tells apart."""
    d = tmp_path_factory.mktemp("abl_prompts")
    harmful = write_jsonl(d / "harm.jsonl", [{"id": f"h{i}", "prompt": f"Explain the placeholder plan number {i} in "
                                              "detail"} for i in range(16)])
    harmless = write_jsonl(d / "safe.jsonl", [{"id": f"s{i}", "prompt": f"Write a short poem about river {i}"}
                                              for i in range(16)])
    return str(harmful), str(harmless)


def settings(prompt_files, **over) -> AttackConfig:
    a = dict(harmful=prompt_files[0], harmless=prompt_files[1], n_train=6, n_val=4, positions=3, top_k=2,
             val_max_new_tokens=3, kl_max=100.0)
    return AttackConfig(method="ablation", ablation=AblationConfig(**{**a, **over}))


def subject_of(path) -> Subject:
    return Subject.from_config(ModelConfig(spec=str(path), device="cpu"))


def run(cfg, path, out: Path, seed: int = 0, usd_per_hour: float = 3.6):
    return AblationAttack(cfg, AttackContext()).run(subject_of(path), [], out, seed=seed, eval_at=[],
                                                    usd_per_hour=usd_per_hour)


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def unit(n: int, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    r = torch.randn(n, generator=g)
    return r / r.norm()


def ids(model, n: int = 9) -> torch.Tensor:
    return torch.randint(3, model.config.vocab_size, (2, n), generator=torch.Generator().manual_seed(1))


# ---------------------------------------------------------------------------------------------- the edit


@pytest.mark.parametrize("tied", [False, True])
def test_edited_weights_give_the_hooked_models_logits(model_dir, tied_dir, tmp_path, tied):
    model, tok = subject_of(tied_dir if tied else model_dir).load()
    r = unit(model.config.hidden_size)
    x = ids(model)
    with torch.no_grad(), ablated(model, r, 1.0):
        hooked = model(x).logits
    original = model(x).logits.detach()
    assert not torch.allclose(hooked, original, atol=1e-3)  # the hooks do change the model
    assert edit.orthogonalise(model, r) is tied
    with torch.no_grad():
        assert torch.allclose(model(x).logits, hooked, atol=1e-5)
    edit.write_model(model, tok, tmp_path / "model", {"method": "ablation"})
    reloaded, _ = subject_of(tmp_path / "model").load()
    with torch.no_grad():
        assert torch.allclose(reloaded(x).logits, hooked, atol=1e-5)


def test_tied_embeddings_are_untied_and_the_output_layer_kept(tied_dir, tmp_path):
    model, tok = subject_of(tied_dir).load()
    before = model.get_input_embeddings().weight.detach().clone()
    r = unit(model.config.hidden_size, seed=3)
    edit.orthogonalise(model, r)
    edit.write_model(model, tok, tmp_path / "model", {})
    reloaded, _ = subject_of(tmp_path / "model").load()
    head, embed = reloaded.get_output_embeddings().weight, reloaded.get_input_embeddings().weight
    assert head.data_ptr() != embed.data_ptr() and reloaded.config.tie_word_embeddings is False
    assert torch.equal(head, before)  # the output layer is the original
    assert (embed @ r).abs().max() < 1e-5 < (before @ r).abs().max()


def _tiny(model_type: str, **extra):
    from transformers import AutoConfig, AutoModelForCausalLM

    cfg = AutoConfig.for_model(model_type, vocab_size=64, hidden_size=32, intermediate_size=64, num_hidden_layers=3,
                               num_attention_heads=4, num_key_value_heads=4, head_dim=8, pad_token_id=0,
                               bos_token_id=1, eos_token_id=2, **extra)
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_config(cfg).eval()
    with torch.no_grad():  # norms start as the identity; a trained model's scale each channel differently
        for name, p in model.named_parameters():
            if "norm" in name:
                p.uniform_(0.5, 1.5)
    return model


def _residual_along(model, r) -> float:
    """Largest |h . r| / |h| over tokens of every decoder layer's input and the final norm's input."""
    seen = []

    def grab(_m, args, kwargs):
        h = args[0] if args else kwargs["hidden_states"]
        seen.append(((h @ r).abs() / h.norm(dim=-1)).max().item())

    handles = [l.register_forward_pre_hook(grab, with_kwargs=True) for l in model.model.layers]
    handles.append(model.model.norm.register_forward_pre_hook(grab, with_kwargs=True))
    with torch.no_grad():
        model(ids(model))
    for h in handles:
        h.remove()
    assert len(seen) == model.config.num_hidden_layers + 1
    return max(seen)


@pytest.mark.parametrize("model_type", [*sorted(arch.EDITABLE), "llama+bias"])
def test_after_the_edit_no_layer_sees_the_direction(model_type):
    """Every architecture of the table (and output projections with biases): the residual stream has no component
    along r anywhere."""
    bias = model_type.endswith("+bias")
    model = _tiny(model_type.removesuffix("+bias"), **({"attention_bias": True, "mlp_bias": True} if bias else {}))
    assert (model.model.layers[0].self_attn.o_proj.bias is not None) is bias
    with torch.no_grad():
        for layer in model.model.layers if bias else []:  # biases start at zero
            layer.self_attn.o_proj.bias.uniform_(-1, 1)
            layer.mlp.down_proj.bias.uniform_(-1, 1)
    r = unit(model.config.hidden_size, seed=5)
    assert _residual_along(model, r) > 1e-3
    edit.orthogonalise(model, r)
    assert _residual_along(model, r) < 1e-5


@pytest.mark.parametrize("model_type", ["gemma2", "olmo2"])
def test_post_normed_architectures_would_keep_the_direction(model_type, monkeypatch):
    """Why they are not in the table: with a norm after each sublayer, the same edit leaves the direction in."""
    monkeypatch.setitem(arch.EDITABLE, model_type, ("self_attn.o_proj", "mlp.down_proj"))
    model = _tiny(model_type)
    r = unit(model.config.hidden_size, seed=5)
    edit.orthogonalise(model, r)
    assert _residual_along(model, r) > 1e-3


# ---------------------------------------------------------------------------------------------- checks


def test_check_names_both_sets_on_overlap_and_writes_nothing(model_dir, tmp_path, monkeypatch):
    """A set the user names must be disjoint from every evaluation set: one line naming both, nothing written."""
    monkeypatch.chdir(tmp_path)
    sr = benchmarks.load("strongreject")
    protected = [benchmarks.Item(f"e{i}", it.prompt.upper(), source="my-eval") for i, it in enumerate(sr[:3])]
    cfg = AttackConfig(method="ablation", ablation=AblationConfig(harmful="strongreject"))
    with pytest.raises(FtriskError) as e:
        AblationAttack.check(cfg, subject=subject_of(model_dir), protected=protected)
    msg = str(e.value)
    assert "attack.ablation.harmful 'strongreject'" in msg and "'my-eval'" in msg and "shares 3 prompts" in msg
    assert f"id {sr[0].id}" in msg and "\n" not in msg
    mine = tmp_path / "harmless.jsonl"
    benign = directions_builtin_items()
    mine.write_text("".join(json.dumps({"prompt": it.prompt}) + "\n" for it in benign[:200]))
    cfg = AttackConfig(method="ablation", ablation=AblationConfig(harmless=str(mine)))
    with pytest.raises(FtriskError, match="attack.ablation.harmless '.*harmless.jsonl' shares 1 prompts with "
                                          "evaluation set 'over-refusal'"):
        AblationAttack.check(cfg, subject=subject_of(model_dir),
                             protected=[benchmarks.Item("x", benign[7].prompt, source="over-refusal")])
    assert list(tmp_path.iterdir()) == [mine]


def test_default_sets_leave_out_prompts_of_the_evaluation_sets(model_dir):
    """AdvBench's training goals share prompts with JailbreakBench: the default set drops them instead of failing."""
    from ftrisk.attacks.ablation import data

    train = benchmarks.load("advbench-train")
    protected = [benchmarks.Item(f"e{i}", it.prompt.upper(), source="my-eval") for i, it in enumerate(train[:3])]
    protected += [benchmarks.Item("x", directions_builtin_items()[7].prompt, source="over-refusal")]
    AblationAttack.check(AttackConfig(method="ablation"), subject=subject_of(model_dir), protected=protected)
    sets = data.prompt_sets(AblationConfig(), protected)
    assert len(sets["harmful"]) == len(train) - 3 and not {it.id for it in train[:3]} & {it.id for it in sets["harmful"]}
    assert len(sets["harmless"]) == len(directions_builtin_items()) - 1


def directions_builtin_items():
    from ftrisk.attacks.ablation import data

    return data.load("builtin", builtin=True)


def test_check_too_few_prompts(model_dir, prompt_files):
    with pytest.raises(FtriskError, match=r"attack.ablation.harmful '.*harm.jsonl' has 16 prompts, fewer than "
                                          r"n_train \+ n_val = 20"):
        AblationAttack.check(settings(prompt_files, n_train=16), subject=subject_of(model_dir), protected=[])


@pytest.mark.parametrize("model_type", ["gemma3", "mamba"])
def test_unknown_architecture_fails_before_any_model_loads(tmp_path, model_type, monkeypatch):
    (tmp_path / "config.json").write_text(json.dumps({"model_type": model_type}))  # no weights: nothing could load
    monkeypatch.setattr(Subject, "load", lambda *a, **k: pytest.fail("a model was loaded"))
    subject = Subject(spec=str(tmp_path), path=str(tmp_path), fingerprint="x")
    with pytest.raises(FtriskError) as e:
        AblationAttack.check(AttackConfig(method="ablation"), subject=subject, protected=[])
    msg = str(e.value)
    assert f"ablation cannot edit model type '{model_type}'" in msg and "llama, mistral, qwen2, qwen3" in msg
    assert ("post-feedforward norms" in msg) is (model_type == "gemma3")


def test_quantized_subject_is_refused(model_dir):
    import dataclasses

    subject = dataclasses.replace(subject_of(model_dir), quantize="4bit")
    with pytest.raises(FtriskError, match="unset model.quantize"):
        AblationAttack.check(AttackConfig(method="ablation"), subject=subject, protected=[])


# ---------------------------------------------------------------------------------------------- scores


def test_refusal_tokens_open_refused_replies_more_than_complied_ones():
    r, c = REFUSED, COMPLIED
    openers = [(5, r), (5, r), (7, r), (5, c), (9, c), (9, c), (8, r)]
    margin = refusal.opening_margin(openers)
    assert margin == pytest.approx({5: 2 / 4 - 1 / 3, 7: 1 / 4, 8: 1 / 4})
    assert refusal.pick(margin) == [7, 8, 5]
    assert refusal.pick({1: 0.5, 2: 0.04, 3: -0.2}) == [1]  # below a tenth of the best margin, or negative
    assert refusal.pick(refusal.opening_margin([(4, c), (6, c)])) == []  # nothing refused: the fallback's turn


def test_excess_tokens_fallback_rule():
    probs = {name: torch.zeros(10, dtype=torch.float64) for name in ("harmful_train", "harmless_train")}
    probs["harmful_train"][[2, 5, 7, 9]] = torch.tensor([0.5, 0.2, 0.04, 0.26], dtype=torch.float64)
    probs["harmless_train"][[5, 9]] = torch.tensor([0.05, 0.95], dtype=torch.float64)
    acts = directions.Activations(mean={}, first_token=probs, val_logprobs={})
    assert directions.excess_tokens(acts, 5, 0.1) == [2, 5]  # 0.04 < a tenth of the largest excess; 9 less likely


def test_scores_by_hand():
    lp = torch.log(torch.tensor([[0.5, 0.3, 0.2], [0.1, 0.1, 0.8]]))
    assert selection.refusal_score(lp, [0]) == pytest.approx((0.0 + torch.log(torch.tensor(0.1 / 0.9)).item()) / 2,
                                                             abs=1e-6)
    other = torch.log(torch.tensor([[0.2, 0.3, 0.5], [0.1, 0.1, 0.8]]))
    kl = (0.5 * torch.log(torch.tensor(2.5)) + 0.2 * torch.log(torch.tensor(0.4))).item() / 2
    assert selection.kl_divergence(lp, other) == pytest.approx(kl, abs=1e-7)


def test_first_token_kl(model_dir, tmp_path):
    model, tok = subject_of(model_dir).load()
    prompts = ["Write a short poem about river 1", "Name a colour", "Count to three"]
    assert first_token_kl(model, model, tok, prompts) == pytest.approx(0.0, abs=1e-9)
    r = unit(model.config.hidden_size, seed=2)
    hooked = first_token_kl(model, r, tok, prompts)
    assert hooked > 1e-6
    edited, _ = subject_of(model_dir).load()
    edit.orthogonalise(edited, r)
    assert first_token_kl(model, edited, tok, prompts) == pytest.approx(hooked, rel=1e-3)


def test_batches_that_share_the_prompt_prefix_give_each_rows_own_logits(model_dir):
    """The shared prefix is run once and its cache reused: each row's logits and hidden states are those of the row
    run alone, hooks included."""
    model, tok = subject_of(model_dir).load()
    rows = encode(tok, ["Name a colour", "Write a short poem about river 12 and the sea", "Count to three"], None)
    assert common_prefix(rows) >= 3
    r = unit(model.config.hidden_size, seed=4)
    for direction in (None, r):
        with torch.no_grad(), ablated(model, direction):
            alone = [model(torch.tensor([row]), output_hidden_states=True) for row in rows]
            shared = list(forward_batches(model, rows, tok.pad_token_id, batch_size=2, keep=2, hidden=True))
            logits = last_logits(model, rows, tok.pad_token_id)
        assert [i for i, _ in shared] == [0, 1]
        for i, one in enumerate(alone):
            b, j = divmod(i, 2)
            assert torch.allclose(logits[i], one.logits[0, -1], atol=1e-5)
            assert torch.allclose(shared[b][1].logits[j, -1], one.logits[0, -1], atol=1e-5)
            for layer in range(LAYERS):
                assert torch.allclose(shared[b][1].hidden_states[layer][j, -2:], one.hidden_states[layer][0, -2:],
                                      atol=1e-5)


# ---------------------------------------------------------------------------------------------- the attack


@pytest.fixture(scope="module")
def reference(model_dir, prompt_files, tmp_path_factory):
    """One uninterrupted run: its folder and result."""
    out = tmp_path_factory.mktemp("abl_ref") / "attack"
    return out, run(settings(prompt_files), model_dir, out)


def test_run_writes_an_edited_model_and_its_record(reference, model_dir, prompt_files):
    out, res = reference
    cfg = settings(prompt_files)
    assert res.method == "ablation" and res.steps == 0 and res.stopped_by == "done" and len(res.points) == 1
    assert res.subject.path == str(out / "model") and res.points[0].subject == res.subject
    info = res.info
    kept = int(LAYERS * AblationConfig.max_layer_fraction)
    # layer 0's input is the embedding of the same post-instruction tokens for every prompt: no direction there
    assert info["direction_candidates"] == (kept - 1) * cfg.ablation.positions
    assert 1 <= info["layer"] < kept and -cfg.ablation.positions <= info["position"] <= -1
    assert info["n_harmful"] == info["n_harmless"] == 10 and info["candidates"] == "candidates.jsonl"
    rows = [json.loads(l) for l in (out / "candidates.jsonl").read_text().splitlines()][1:]
    scored = [r for r in rows if r["kind"] == "score"]
    assert len(scored) == info["direction_candidates"]
    # the 2 * top_k of lowest refusal score are brought within kl_max (all are at full strength, with kl_max=100),
    # and the top_k of them by the score at that strength are judged
    best_first = sorted(scored, key=lambda r: (r["refusal_score"], r["layer"], r["position"]))
    kl = [r for r in rows if r["kind"] == "strength"]
    assert [(r["layer"], r["position"]) for r in kl] == [(r["layer"], r["position"]) for r in best_first[:4]]
    assert all(r["strength"] == cfg.ablation.strength for r in kl) and info["strength"] == cfg.ablation.strength
    judged = [r for r in rows if r["kind"] == "judge"]
    rescored = sorted(kl, key=lambda r: (r["refusal_score"], r["layer"], r["position"]))
    assert [(r["layer"], r["position"]) for r in judged] == [(r["layer"], r["position"]) for r in rescored[:2]]
    chosen = next(r for r in kl if (r["layer"], r["position"]) == (info["layer"], info["position"]))
    assert info["kl_harmless"] == chosen["kl_harmless"]
    rates = {(r["layer"], r["position"]): r["refusal_rate"] for r in judged}
    assert info["val_refusal_rate"] == min(rates.values()) == rates[(info["layer"], info["position"])]
    saved = json.loads((out / "attack.json").read_text())
    assert saved["layer"] == info["layer"] and saved["subject"]["path"] == "model"
    record = json.loads((out / "model" / "ablation.json").read_text())
    assert record["layer"] == info["layer"] and record["base_fingerprint"] == subject_of(model_dir).fingerprint
    # the written model equals the base model with the chosen direction hooked out
    base, tok = subject_of(model_dir).load()
    edited, _ = res.subject.load()
    from safetensors.torch import load_file

    r = load_file(str(out / "direction.safetensors"))["direction"]
    x = torch.tensor([encode(tok, ["Write a short poem about river 3"], None)[0]])
    with torch.no_grad(), ablated(base, r):
        assert torch.allclose(edited(x).logits, base(x).logits, atol=1e-5)
    assert first_token_kl(base, edited, tok, ["Write a short poem about river 3"]) > 0


def test_cost_counts_two_n_flops_per_forward_token(reference, model_dir, prompt_files):
    out, res = reference
    cost = res.cost
    params = count_params(subject_of(model_dir).load()[0])
    assert cost["params"] == params and cost["flops"] == 2 * params * cost["forward_tokens"]
    assert cost["usd"] == pytest.approx(cost["wall_seconds"] / 3600 * 3.6, abs=2e-4) and cost["wall_seconds"] > 0
    assert cost["steps"] == 0 and cost["examples"] == 0
    # the activations pass reads every prompt once, the prefix the prompts of a set share once per set; each scored
    # candidate reads the harmful validation prompts again, each KL the harmless ones
    tok = subject_of(model_dir).load_tokenizer()
    from ftrisk.attacks.ablation import data

    a = settings(prompt_files).ablation
    prompts = data.split(data.prompt_sets(a, []), a.n_train, a.n_val, 0)
    tokens = {}
    for k, v in prompts.items():
        rows = encode(tok, [it.prompt for it in v], None)
        tokens[k] = sum(map(len, rows)) - (len(rows) - 1) * common_prefix(rows, keep=1)
        assert common_prefix(rows, keep=a.positions) == common_prefix(rows, keep=1) > 3  # the template and more
    rows = [json.loads(l) for l in (out / "candidates.jsonl").read_text().splitlines()][1:]
    at = {kind: [r["meter"]["forward_tokens"] for r in rows if r["kind"] == kind]
          for kind in ("refusal_tokens", "score", "strength", "judge")}
    # the refusal tokens: greedy replies to the harmful train prompts (whole), 1..val_max_new_tokens new tokens each
    whole = {k: sum(map(len, encode(tok, [it.prompt for it in v], None))) for k, v in prompts.items()}
    gap = at["refusal_tokens"][0] - sum(tokens.values()) - whole["harmful_train"]
    assert a.n_train <= gap <= a.n_train * a.val_max_new_tokens
    assert at["score"][0] == at["refusal_tokens"][0] + tokens["harmful_val"]
    assert all(y - x == tokens["harmful_val"] for x, y in itertools.pairwise(at["score"]))
    # each shortlisted candidate: its KL on the harmless prompts (within the bound at full strength here), then its
    # score at that strength on the harmful ones
    assert at["strength"][0] - at["score"][-1] == tokens["harmless_val"] + tokens["harmful_val"]
    assert all(y - x == tokens["harmless_val"] + tokens["harmful_val"] for x, y in itertools.pairwise(at["strength"]))
    # judging reads the harmful validation prompts (whole) and 1..val_max_new_tokens new tokens per reply
    gap = at["judge"][0] - at["strength"][-1] - whole["harmful_val"]
    assert a.n_val <= gap <= a.n_val * a.val_max_new_tokens
    assert cost["forward_tokens"] == at["judge"][-1]


class Killed(Exception):
    pass


def _kill_after(monkeypatch, module, name, calls: int):
    real = getattr(module, name)
    count = {"n": 0}

    def wrapper(*args, **kwargs):
        count["n"] += 1
        if count["n"] > calls:
            raise Killed
        return real(*args, **kwargs)

    monkeypatch.setattr(module, name, wrapper)


def _count(monkeypatch, module, name) -> dict:
    """Count calls of ``module.name`` (for a generator: the items it yields, i.e. the batches run)."""
    real, count = getattr(module, name), {"n": 0}

    def wrapper(*args, **kwargs):
        out = real(*args, **kwargs)
        if not inspect.isgenerator(out):
            count["n"] += 1
            return out
        return counted(out)

    def counted(gen):
        for item in gen:
            count["n"] += 1
            yield item

    monkeypatch.setattr(module, name, wrapper)
    return count


@pytest.mark.heavy
def test_a_killed_run_resumes_to_the_same_weights_without_redoing_work(reference, model_dir, prompt_files, tmp_path):
    ref_out, ref = reference
    cfg, out = settings(prompt_files), tmp_path / "attack"
    units = 4 * 1  # four prompt sets of <= 16 prompts: one batch each
    with pytest.MonkeyPatch.context() as mp:  # killed after two batches of the activations pass
        _kill_after(mp, directions, "save_atomic", 2)
        with pytest.raises(Killed):
            run(cfg, model_dir, out)
    with pytest.MonkeyPatch.context() as mp:  # killed after the refusal tokens and two candidates were scored
        passes = _count(mp, directions, "forward_batches")
        _kill_after(mp, selection.Candidates, "add", 3)
        with pytest.raises(Killed):
            run(cfg, model_dir, out)
        assert passes["n"] == units - 2  # the finished batches were not run again
    assert len((out / "candidates.jsonl").read_text().splitlines()) == 1 + 3
    with pytest.MonkeyPatch.context() as mp:  # killed while the edited model is written
        scored = _count(mp, selection, "last_logits")
        _kill_after(mp, edit, "write_json_atomic", 0)
        with pytest.raises(Killed):
            run(cfg, model_dir, out)
        # one validation set per candidate not yet scored, and two (its KL, its score at that strength) for each of
        # the 2 * top_k brought within the KL bound
        assert scored["n"] == ref.info["direction_candidates"] - 2 + 2 * 2 * 2
    assert not (out / "model").exists() and list(out.glob("model.tmp*"))
    with pytest.MonkeyPatch.context() as mp:
        passes, scored = _count(mp, directions, "forward_batches"), _count(mp, selection, "last_logits")
        res = run(cfg, model_dir, out)
        assert passes["n"] == 0 and scored["n"] == 0
    assert not list(out.glob("model.tmp*"))
    assert sha256(out / "model" / "model.safetensors") == sha256(ref_out / "model" / "model.safetensors")
    assert (res.info["layer"], res.info["position"]) == (ref.info["layer"], ref.info["position"])
    assert res.cost["forward_tokens"] == ref.cost["forward_tokens"]  # the work is counted once
    assert res.cost["flops"] == ref.cost["flops"]


@pytest.mark.heavy
def test_other_settings_in_the_same_folder_start_over(reference, model_dir, prompt_files, tmp_path):
    import shutil

    ref_out, ref = reference
    out = tmp_path / "attack"
    shutil.copytree(ref_out, out)
    res = run(settings(prompt_files, strength=0.5), model_dir, out)
    assert sha256(out / "model" / "model.safetensors") != sha256(ref_out / "model" / "model.safetensors")
    assert json.loads((out / "model" / "ablation.json").read_text())["strength"] == 0.5
    assert res.cost["forward_tokens"] >= ref.cost["forward_tokens"]


# ---------------------------------------------------------------------------------------------- embedded model


@pytest.mark.slow
def test_ablation_on_the_embedded_model(tmp_path):
    """SmolLM2-135M-Instruct (tied embeddings) with small sets: the written model is the hooked one (its first-token
    KL on the harmless validation prompts is the one the search reported), its output layer the original embedding,
    and its judged refusal on the harmful validation prompts no higher than the unablated model's. (The embedded
    model barely refuses as shipped, so this checks the mechanics, not that refusal falls.)"""
    from ftrisk import registry
    from ftrisk.attacks.ablation import data
    from ftrisk.attacks.ablation.forward import greedy_replies

    cfg = AttackConfig(method="ablation", ablation=AblationConfig(n_train=32, n_val=8, positions=1, top_k=2,
                                                                  val_max_new_tokens=16))
    subject = Subject.from_config(ModelConfig(spec="embedded:smollm2-135m-instruct", device="cpu"))
    protected = benchmarks.load("advbench-test")
    AblationAttack.check(cfg, subject=subject, protected=protected)
    res = AblationAttack(cfg, AttackContext(protected=protected)).run(subject, [], tmp_path, seed=0, eval_at=[],
                                                                     usd_per_hour=2.0)
    a, info = cfg.ablation, res.info
    assert info["direction_candidates"] == int(30 * a.max_layer_fraction) - 1  # layer 0: no direction
    assert info["kl_harmless"] <= a.kl_max and res.cost["flops"] == 2 * res.cost["params"] * res.cost["forward_tokens"]
    split = data.split(data.prompt_sets(a, protected), a.n_train, a.n_val, 0)
    base, tok = subject.load()
    edited, _ = res.subject.load()
    assert base.config.tie_word_embeddings and not edited.config.tie_word_embeddings
    assert torch.equal(edited.get_output_embeddings().weight, base.get_input_embeddings().weight)
    harmless = [it.prompt for it in split["harmless_val"]]
    assert first_token_kl(base, edited, tok, harmless) == pytest.approx(info["kl_harmless"], rel=1e-2, abs=1e-5)
    judge = registry.lookup("judge", "refusal-patterns")()
    val = split["harmful_val"]
    replies = greedy_replies(base, tok, encode(tok, [it.prompt for it in val], None), a.val_max_new_tokens)
    verdicts = judge.judge([(it.prompt, text) for it, (text, _) in zip(val, replies)])
    assert info["val_refusal_rate"] <= sum(v.label == REFUSED for v in verdicts) / len(val)


def test_a_direction_too_strong_for_the_kl_bound_is_removed_in_part(reference, model_dir, prompt_files, tmp_path):
    """With kl_max below every candidate's KL at full strength, each shortlisted candidate is judged at the largest
    strength (to 1/2**STRENGTH_STEPS) whose KL is within the bound, and the edit removes that much of it."""
    rows = [json.loads(l) for l in (reference[0] / "candidates.jsonl").read_text().splitlines()][1:]
    least = min(r["kl_harmless"] for r in rows if r["kind"] == "strength")
    assert least > 0
    bound = least / 4
    res = run(settings(prompt_files, kl_max=bound), model_dir, tmp_path / "attack")
    tuned = [json.loads(l) for l in (tmp_path / "attack" / "candidates.jsonl").read_text().splitlines()][1:]
    tuned = [r for r in tuned if r["kind"] == "strength"]
    step = 1 / 2 ** selection.STRENGTH_STEPS
    base, tok = subject_of(model_dir).load()
    a = settings(prompt_files).ablation
    from ftrisk.attacks.ablation import data
    from safetensors.torch import load_file

    harmless = [it.prompt for it in data.split(data.prompt_sets(a, []), a.n_train, a.n_val, 0)["harmless_val"]]
    for r in tuned:
        if r["refusal_score"] is None:  # within the bound only below MIN_STRENGTH: left out
            continue
        assert 0 < r["strength"] < 1 and r["kl_harmless"] <= bound
    # the chosen one: its KL as recorded, and one bisection step more is above the bound (the largest such strength)
    assert res.info["kl_max_met"] and 0 < res.info["strength"] < 1 and res.info["kl_harmless"] <= bound
    r = load_file(str(tmp_path / "attack" / "direction.safetensors"))["direction"]
    assert first_token_kl(base, r, tok, harmless, strength=res.info["strength"]) == pytest.approx(
        res.info["kl_harmless"], rel=1e-3)  # the search runs the shared prompt prefix once: float rounding
    assert first_token_kl(base, r, tok, harmless, strength=res.info["strength"] + step) > bound
    edited, _ = res.subject.load()
    x = torch.tensor([encode(tok, ["Write a short poem about river 3"], None)[0]])
    with torch.no_grad(), ablated(base, r, res.info["strength"]):
        assert torch.allclose(edited(x).logits, base(x).logits, atol=1e-5)
