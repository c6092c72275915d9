"""``ftrisk plan``: parameter counts against transformers (meta device), LoRA counts against peft, the saved-activation
formula against autograd's own saved tensors, memory monotonicity, verdicts for the paper's models, the generation
model's structure (the passes the decode loop runs), CLI errors. No test depends on this host's speed: the planner's
accuracy on a host is a benchmark figure (``ftrisk bench planner``, tests/test_bench.py)."""

import argparse
import itertools
import json

import pytest
import torch

from ftrisk.cli import plan as plan_cli
from ftrisk.errors import FtriskError
from ftrisk.generation.cpu.prefill import PREFILL_ROWS, PREFILL_TOKENS
from ftrisk.plan import devices
from ftrisk.plan.activations import activation_bytes, layer_activation_bytes
from ftrisk.plan.devices import device_spec, load_gpus
from ftrisk.plan.estimate import plan, verdict, verdict_line
from ftrisk.plan.fit import fit_options, micro_batches
from ftrisk.plan.generation import (
    Pass,
    generation_passes,
    generation_seconds,
    pass_seconds,
)
from ftrisk.plan.inputs import job_from_config, resolve_model
from ftrisk.plan.job import Job
from ftrisk.plan.memory import devices_needed, memory
from ftrisk.plan.roofline import pass_bytes
from ftrisk.plan.shape import TARGETS, Shape, lora_params, param_counts
from ftrisk.plan.sweep import bisection_points, sweep_plan

SHIPPED = ["smollm2-135m-instruct", "llama-2-7b-chat-hf", "llama-2-13b-chat-hf", "llama-2-70b-chat-hf"]


def _shape(name):
    return resolve_model(name)[1]


def _measured_cpu(monkeypatch):
    """``cpu`` specs without measuring this host (its numbers do not matter to these tests)."""
    monkeypatch.setattr(devices, "measure_cpu_gflops", lambda: 50.0)
    monkeypatch.setattr(devices, "measure_onednn_gflops", lambda: 80.0)
    monkeypatch.setattr(devices, "measure_cpu_bandwidth", lambda: 10.0)


def _cpu(**kw):
    """A made-up CPU (gpus.yaml's cpu entry with fixed speeds): the tests check the model's structure, not a host."""
    return {**load_gpus()["cpu"], "name": "cpu", "memory_gib": 16.0, "fp32_tflops": 0.05,
            "generation_fp32_tflops": 0.08, "bandwidth_gbs": 10.0, **kw}


def _llama_config(shape, **kw):
    from transformers import LlamaConfig

    return LlamaConfig(hidden_size=shape.hidden, intermediate_size=shape.intermediate, num_hidden_layers=shape.layers,
                       num_attention_heads=shape.heads, num_key_value_heads=shape.kv_heads, vocab_size=shape.vocab,
                       tie_word_embeddings=shape.tied, **kw)


@pytest.mark.parametrize("name", SHIPPED + ["tiny"])
def test_param_count_equals_transformers(name):
    from transformers import LlamaForCausalLM

    shape = Shape(32, 64, 2, 4, 2, 512) if name == "tiny" else _shape(name)
    with torch.device("meta"):
        model = LlamaForCausalLM(_llama_config(shape))
    # parameters() lists a tied weight once, as the formula counts it
    assert param_counts(shape)["total"] == sum(p.numel() for p in model.parameters())


def test_known_sizes():
    sizes = {n: param_counts(_shape(n))["total"] for n in SHIPPED}
    assert sizes == {"smollm2-135m-instruct": 134_515_008, "llama-2-7b-chat-hf": 6_738_415_616,
                     "llama-2-13b-chat-hf": 13_015_864_320, "llama-2-70b-chat-hf": 68_976_648_192}


@pytest.mark.slow  # resolving the embedded model converts its GGUF file (about a minute in a fresh cache)
def test_shipped_smollm2_matches_the_embedded_model():
    from ftrisk.model import loading as models

    try:
        path = models.resolve(models.DEFAULT_SPEC)
    except FtriskError as e:
        pytest.skip(str(e))
    assert resolve_model(str(path))[1] == _shape("embedded:smollm2-135m-instruct")


@pytest.mark.parametrize("targets", [TARGETS, ("q_proj", "v_proj")])
def test_lora_count_equals_peft(targets):
    from peft import LoraConfig, get_peft_model
    from transformers import LlamaForCausalLM

    shape = Shape(32, 64, 2, 4, 2, 512)
    model = get_peft_model(LlamaForCausalLM(_llama_config(shape)), LoraConfig(r=4, target_modules=list(targets)))
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    assert lora_params(shape, 4, targets) == trainable


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("targets", [TARGETS, ("q_proj", "v_proj", "down_proj")])
@pytest.mark.parametrize("shape", [Shape(64, 176, 2, 4, 2, 300), Shape(576, 1536, 1, 9, 3, 300)])
@pytest.mark.parametrize("checkpointing", [False, True])
def test_activation_formula_equals_autograd_saved_tensors(dtype, targets, shape, checkpointing, torch_single_thread):
    """The count is what autograd really keeps in the forward (weights excluded) for a padded batch; with gradient
    checkpointing the forward keeps the layer inputs, and the formula adds the one layer recomputed at a time."""
    from peft import LoraConfig, get_peft_model
    from transformers import LlamaForCausalLM

    torch.manual_seed(0)
    model = LlamaForCausalLM(_llama_config(shape)).to(dtype)
    model = get_peft_model(model, LoraConfig(r=4, target_modules=list(targets)))
    if checkpointing:
        model.gradient_checkpointing_enable()
        model.enable_input_require_grads()
    model.train()
    b, s = 2, 24
    ids = torch.randint(0, shape.vocab, (b, s))
    mask = torch.ones_like(ids)
    mask[0, -3:] = 0  # padded, as ftrisk's batches are
    weights = {t.untyped_storage().data_ptr() for t in [*model.parameters(), *model.buffers()]}
    saved = {}

    def pack(t):
        ptr = t.untyped_storage().data_ptr()
        if ptr not in weights:
            saved[ptr] = t.untyped_storage().nbytes()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        model.get_base_model().get_decoder()(input_ids=ids, attention_mask=mask)
    e = torch.finfo(dtype).bits // 8
    predicted = activation_bytes(shape, e, 4, s, targets, checkpointing)
    if checkpointing:  # the layer recomputed in the backward is not in the forward's count
        predicted -= layer_activation_bytes(shape, e, 4, s, targets)
    assert sum(saved.values()) == pytest.approx(predicted * b * s, rel=0.02)


def test_memory_monotone_and_quantization_order():
    shape, spec = _shape("llama-2-7b-chat-hf"), device_spec("h200")
    totals = []
    for b, s in [(1, 64), (2, 64), (2, 128), (4, 128), (8, 256)]:
        job = Job(batch_size=b, seq_len=s, builtin_data=False)
        totals.append(memory(shape, job, spec)[0])
    for a, b in itertools.pairwise(totals):
        assert b["activations"] > a["activations"] and b["logits"] >= a["logits"]
        assert sum(b.values()) > sum(a.values())
    w = {q: memory(shape, Job(quantization=q), spec)[1]["weights"] for q in ("4bit", "8bit", "none")}
    assert w["4bit"] < w["8bit"] < w["none"]
    ckpt = memory(shape, Job(gradient_checkpointing=True, builtin_data=False), spec)[0]
    assert ckpt["activations"] < memory(shape, Job(builtin_data=False), spec)[0]["activations"] / 5


def test_paper_models_fit_as_in_the_paper():
    """Llama-2-70B QLoRA (checkpointing, as configs/llama2-70b-qlora.yaml) on one GPU; bf16 LoRA needs several."""
    shape = _shape("meta-llama/Llama-2-70b-chat-hf")
    qlora = Job(quantization="4bit", gradient_checkpointing=True)
    for gpu in ("h200", "a100-80gb"):
        assert plan(shape, qlora, device_spec(gpu))["fits_one_device"]
    bf16 = plan(shape, Job(), device_spec("a100-80gb"))
    assert not bf16["fits_one_device"] and bf16["devices_needed"] >= 2
    assert verdict(bf16).startswith(f"needs {bf16['devices_needed']} x a100-80gb (FSDP")
    p7 = plan(_shape("Llama-2-7b-chat-hf"), Job(), device_spec("h200"))
    assert verdict(p7).startswith("fits on one h200 (") and p7["attack_usd"] < 200


def test_yaml_config_is_planned_as_configured():
    name, shape, cfg = resolve_model("configs/llama2-70b-qlora.yaml")
    job = job_from_config(cfg)
    assert (shape.layers, job.quantization, job.gradient_checkpointing, job.batch_size) == (80, "4bit", True, 4)
    assert job.steps == 100 and job.new_tokens == 64 and len(job.prompt_tokens) == 120 + 240 + 100 + 250
    assert plan(shape, job, device_spec("a100-80gb"))["fits_one_device"]


def _cli(argv, capsys):
    ap = argparse.ArgumentParser()
    plan_cli.add_arguments(ap)
    code = plan_cli.main(ap.parse_args(argv))
    return code, capsys.readouterr().out


def test_cli_json_keys(capsys):
    code, out = _cli(["--model", "Llama-2-13b-chat-hf", "--gpu", "h200", "--json"], capsys)
    p = json.loads(out)
    assert code == 0 and {"fits_one_device", "devices_needed", "memory_gib", "attack_hours", "attack_usd"} <= set(p)
    assert set(p["memory_gib"]["attack"]) >= {"weights", "lora_and_optimizer", "activations", "logits", "total"}
    assert p["fits_one_device"] is True and p["devices_needed"] == 1


def test_cli_human_output(capsys):
    code, out = _cli(["--model", "meta-llama/Llama-2-70b-chat-hf", "--gpu", "a100-80gb", "--steps", "10"], capsys)
    assert code == 0 and "needs " in out and "x a100-80gb (FSDP" in out and "attack: 10 x 8 examples" in out


@pytest.mark.parametrize("argv, words", [
    (["--model", "org/unknown-model"], ["org/unknown-model", "config.json"]),
    (["--model", "Llama-2-7b-chat-hf", "--gpu", "tpu-v9"], ["tpu-v9", "a100-80gb", "h200", "cpu"]),
    (["--model", "Llama-2-7b-chat-hf", "--gpu", "cpu", "--quantization", "4bit"], ["4bit", "CUDA"]),
    (["--model", "Llama-2-7b-chat-hf", "--gpu", "h200", "--batch-size", "0"], ["--batch-size"]),
])
def test_cli_errors_are_one_line(argv, words, capsys, monkeypatch):
    _measured_cpu(monkeypatch)
    with pytest.raises(FtriskError) as e:
        _cli(argv, capsys)
    msg = str(e.value)
    assert "\n" not in msg and all(w in msg for w in words), msg


@pytest.mark.parametrize("content", ["{not json", "[1, 2]", '{"hidden_size": 8}'])
def test_unreadable_config_json_names_the_file(tmp_path, content):
    f = tmp_path / "config.json"
    f.write_text(content)
    with pytest.raises(FtriskError, match=str(f).replace("\\", "\\\\")):
        resolve_model(str(tmp_path))


def test_verdict_line_on_the_demo_config(monkeypatch):
    from ftrisk import config

    _measured_cpu(monkeypatch)
    cfg = config.load("configs/demo.yaml", ["model.device=cpu"])
    line = verdict_line(cfg)
    assert line.startswith("plan: fits on one cpu (") and "attack ~" in line and "\n" not in line


def test_cpu_spec_measures_matmul_and_the_decode_kernel(monkeypatch):
    _measured_cpu(monkeypatch)
    spec = device_spec("cpu")
    assert spec["fp32_tflops"] == pytest.approx(0.05) and spec["bandwidth_gbs"] == 10.0
    assert spec["generation_fp32_tflops"] == pytest.approx(0.08)  # the faster of MKL and oneDNN packed
    monkeypatch.setattr(devices, "measure_onednn_gflops", lambda: None)  # no oneDNN: the matmul's
    assert device_spec("cpu")["generation_fp32_tflops"] == pytest.approx(0.05)


def test_cli_add_parser_has_the_contract_shape(capsys):
    ap = argparse.ArgumentParser()
    parser = plan_cli.add_parser(ap.add_subparsers(dest="cmd"))
    args = ap.parse_args(["plan", "--model", "Llama-2-7b-chat-hf", "--gpu", "h100-80gb", "--steps", "100"])
    assert parser.prog.endswith("plan") and plan_cli.main(args) == 0
    out = capsys.readouterr().out
    # durations and dollars through ftrisk.formatting: "h" above an hour, minutes below, "$" with cents
    assert "attack: 100 x 8 examples: ~" in out and " min, $" in out and "x $3.00/h" in out


# --------------------------------------------------------------------------- generation: the decode loop's passes


def _passes(job, spec=None):
    return generation_passes(_shape("smollm2-135m-instruct"), job, spec or _cpu())


def test_shared_prefix_is_computed_once_per_batch():
    job = Job(dtype="float32", prompt_tokens=(43,) * 16, shared_tokens=24, new_tokens=32, gen_batch=16)
    passes = _passes(job)
    prefix = [p for p in passes if p.what == "prefix"]
    assert prefix == [Pass("prefix", 1, 24, 24, 0)]
    assert sum(p.tokens for p in passes if p.what == "prefill") == 16 * (43 - 24)  # each row's own tokens only
    alone = _passes(Job(dtype="float32", prompt_tokens=(43,) * 16, shared_tokens=0, new_tokens=32, gen_batch=16))
    assert not [p for p in alone if p.what == "prefix"]
    assert sum(p.tokens for p in alone if p.what == "prefill") == 16 * 43
    shape, spec = _shape("smollm2-135m-instruct"), _cpu()
    assert generation_seconds(shape, job, spec) < generation_seconds(
        shape, Job(dtype="float32", prompt_tokens=(43,) * 16, shared_tokens=0, new_tokens=32, gen_batch=16), spec)
    two = _passes(Job(dtype="float32", prompt_tokens=(43,) * 16, shared_tokens=24, new_tokens=32, gen_batch=8))
    assert [p.what for p in two].count("prefix") == 2  # once per batch
    # a batch of one row has nothing to share, and a prefix shorter than the loop's minimum is not split off
    assert not [p for p in _passes(Job(prompt_tokens=(43,), shared_tokens=24)) if p.what == "prefix"]
    assert not [p for p in _passes(Job(prompt_tokens=(43,) * 4, shared_tokens=2)) if p.what == "prefix"]


def test_prefill_groups_as_the_decode_loop_cuts_them():
    lengths = tuple(range(150, 110, -1))  # 40 prompts, longest first
    job = Job(dtype="float32", prompt_tokens=lengths, shared_tokens=24, new_tokens=8, gen_batch=64,
              max_batch_tokens=None)
    groups = [p for p in _passes(job) if p.what == "prefill"]
    assert all(p.rows <= PREFILL_ROWS and p.tokens <= PREFILL_TOKENS for p in groups)
    assert sum(p.rows for p in groups) == 40 and len(groups) > 40 / PREFILL_ROWS
    assert groups[0].tokens == groups[0].rows * (150 - 24)  # padded to the group's own longest
    gpu = [p for p in _passes(job, device_spec("a100-80gb")) if p.what == "prefill"]
    assert [p.rows for p in gpu] == [40]  # a GPU prefills the batch at once


def test_decode_steps_and_finished_rows_leaving():
    job = Job(dtype="float32", prompt_tokens=(40, 40, 40), shared_tokens=24, new_tokens=32, gen_batch=8,
              reply_tokens=(0, 5, 32))
    decode = [p for p in _passes(job) if p.what == "decode"]
    # the prefill gives the first token; a row that said EOS first never decodes; then rows leave as they end
    assert [p.rows for p in decode] == [2] * 5 + [1] * 26
    full = [p for p in _passes(Job(dtype="float32", prompt_tokens=(40,) * 3, new_tokens=32, gen_batch=8))
            if p.what == "decode"]
    assert [p.rows for p in full] == [3] * 31  # without reply lengths every row runs to new_tokens
    assert full[1].context - full[0].context == 2  # one more cache position per step
    assert full[1].kv_read - full[0].kv_read == 3  # each row reads one more position


def test_generation_seconds_scale_with_tokens_and_prompts():
    shape, spec = _shape("smollm2-135m-instruct"), _cpu()

    def secs(**kw):
        return generation_seconds(shape, Job(**{"dtype": "float32", "gen_batch": 16, **kw}), spec)

    base = secs(prompt_tokens=(60,) * 16, new_tokens=32)
    assert secs(prompt_tokens=(60,) * 16, new_tokens=64) > 1.8 * base - secs(prompt_tokens=(60,) * 16, new_tokens=1)
    assert secs(prompt_tokens=(60,) * 32, new_tokens=32) > 1.9 * base  # two batches: twice the work
    assert secs(prompt_tokens=(120,) * 16, new_tokens=32) > base
    assert secs(prompt_tokens=(60,) * 16, new_tokens=32, reply_tokens=(8,) * 16) < base  # replies that end early


@pytest.mark.parametrize("gpu", ["cpu", "a100-80gb"])
def test_generation_seconds_do_not_grow_with_the_batch_size(gpu):
    """Larger batches share each step's weight reads and dispatch over more rows."""
    shape = _shape("smollm2-135m-instruct" if gpu == "cpu" else "llama-2-7b-chat-hf")
    spec = _cpu() if gpu == "cpu" else device_spec(gpu)
    times = [generation_seconds(shape, Job(dtype="float32" if gpu == "cpu" else "bfloat16", prompt_tokens=(60,) * 128,
                                           gen_batch=b, max_batch_tokens=None), spec) for b in (1, 2, 8, 32, 128)]
    assert all(b <= a * (1 + 1e-9) for a, b in itertools.pairwise(times)), times
    assert times[-1] < times[0] / 4


def test_a_small_batch_decode_step_reads_the_weights_once():
    """Memory-bound: on a GPU one decode row of Llama-2-7B costs the weights' bytes over the bandwidth (or the host's
    dispatch of its layers, which the GPU overlaps, where that is longer)."""
    shape, spec = _shape("llama-2-7b-chat-hf"), dict(device_spec("h100-80gb"), dispatch_ms=0.0)
    job = Job(prompt_tokens=(60,), new_tokens=2)
    step = [p for p in generation_passes(shape, job, spec) if p.what == "decode"]
    assert len(step) == 1 and step[0].rows == 1
    nbytes = pass_bytes(shape, job) + step[0].kv_read * shape.kv_bytes_per_token(2)
    assert nbytes == pytest.approx(2 * (param_counts(shape)["total"] - shape.vocab * shape.hidden), rel=0.01)
    assert pass_seconds(shape, job, spec, step[0]) == pytest.approx(nbytes / (spec["bandwidth_gbs"] * 1e9))
    slow_host = dict(spec, dispatch_ms=1.5)
    assert pass_seconds(shape, job, slow_host, step[0]) == pytest.approx(shape.layers * 1.5e-3)


# --------------------------------------------------------------------------- what would fit one device


def test_70b_4bit_fits_one_a100_with_checkpointing_or_a_smaller_micro_batch(capsys):
    """The paper trained Llama-2-70B QLoRA on one A100-80GB: a bare config.json at batch 8 without checkpointing
    needs two, and the planner says which change makes it fit one; each change it names really fits."""
    shape, spec = _shape("llama-2-70b-chat-hf"), device_spec("a100-80gb")
    job = Job(quantization="4bit")
    p = plan(shape, job, spec)
    assert not p["fits_one_device"] and p["devices_needed"] == 2
    changes = [o["changes"] for o in p["fit"]]
    assert ["checkpointing"] in changes and all("4bit" not in c for c in changes)  # it is 4-bit already
    for o in fit_options(shape, job, spec):
        j = o["job"]
        assert devices_needed(memory(shape, j, spec)[0], shape, j, spec) == 1
        assert j.batch_size * j.grad_accum == job.batch_size * job.grad_accum  # the same optimizer step
        assert j.steps * j.batch_size == job.steps * job.batch_size  # the same examples
    assert "; fits on 1 x a100-80gb with " in verdict(p)
    code, out = _cli(["--model", "src/ftrisk/data/model_configs/llama-2-70b-chat-hf.json", "--gpu", "a100-80gb",
                      "--quantization", "4bit"], capsys)
    assert code == 0 and "needs 2 x a100-80gb" in out
    assert "fits on 1 x a100-80gb with gradient checkpointing (" in out and "GiB; attack ~" in out


def test_fit_options_prefer_the_same_model_and_drop_redundant_combinations():
    """A 16-bit 13B at batch 64 fits one A100 by itself with a smaller micro-batch or checkpointing; 4-bit (a
    different model under attack) only comes after them, and no option holds another option's changes."""
    shape, spec = _shape("llama-2-13b-chat-hf"), device_spec("a100-80gb")
    opts = fit_options(shape, Job(batch_size=64, lora_r=64), spec)
    names = [tuple(o["changes"]) for o in opts]
    assert ("checkpointing",) in names and ("micro-batch",) in names
    assert all(not set(a) < set(b) for a in names for b in names)
    kbit = [i for i, n in enumerate(names) if "4bit" in n]
    assert all(i > j for i in kbit for j, n in enumerate(names) if "4bit" not in n)
    plain = [o["attack_seconds"] for o in opts if "4bit" not in o["changes"]]
    assert plain == sorted(plain)  # the cheapest first


def test_a_job_that_no_change_fits_says_so(capsys):
    p = plan(_shape("llama-2-70b-chat-hf"), Job(quantization="4bit"), device_spec("rtx4090"))
    assert p["fit"] == [] and not p["fits_one_device"]
    assert verdict(p).endswith("no change fits one rtx4090 (not even gradient checkpointing, micro-batch 1 and a "
                               "4-bit base together)")


def test_micro_batches_divide_the_batch():
    assert micro_batches(8) == [4, 2, 1] and micro_batches(6) == [3, 2, 1] and micro_batches(1) == []


# --------------------------------------------------------------------------- sweeps


def _sweep_cfg(**sweep):
    from ftrisk import config

    cfg = config.RunConfig()
    cfg.capability.limit = 200
    for k, v in sweep.items():
        setattr(cfg.sweep, k, v)
    return cfg


def test_sweep_scales_with_trials_and_seed_reruns():
    shape, spec = _shape("llama-2-7b-chat-hf"), device_spec("a100-80gb")
    cfg = _sweep_cfg()
    ten, fifty = sweep_plan(shape, cfg, spec, trials=10), sweep_plan(shape, cfg, spec, trials=50)
    assert ten["reruns"] == fifty["reruns"] == 2 * 2  # top_k 2 x the 2 seeds beyond the first
    per_trial = fifty["per_trial"]["mean"]["gpu_hours"]
    grown = fifty["total"]["mean"]["gpu_hours"] - ten["total"]["mean"]["gpu_hours"]
    assert grown == pytest.approx(40 * per_trial, rel=0.01)
    assert fifty["total"]["mean"]["gpu_hours"] == pytest.approx(54 * per_trial + fifty["subject"]["gpu_hours"],
                                                                rel=0.01)
    t = fifty["per_trial"]
    assert t["median"]["gpu_hours"] <= t["max"]["gpu_hours"] and t["mean"]["gpu_hours"] <= t["max"]["gpu_hours"]
    assert fifty["total"]["max"]["usd"] == pytest.approx(fifty["total"]["max"]["gpu_hours"] * 1.8, rel=0.01)
    more_seeds = sweep_plan(shape, _sweep_cfg(seeds=[0, 1, 2, 3, 4], top_k=3), spec, trials=50)
    assert more_seeds["reruns"] == 12 and more_seeds["total"]["mean"]["usd"] > fifty["total"]["mean"]["usd"]


def test_sweep_trials_cost_follows_the_space():
    """A space of longer budgets costs more per trial; each trial's steps are capped by max_steps as training caps
    them (the costliest corner is the longest budget)."""
    from ftrisk.config.schema import SweepParam

    shape, spec = _shape("llama-2-7b-chat-hf"), device_spec("a100-80gb")

    def per_trial(high):
        cfg = _sweep_cfg(space=[SweepParam("train.batch_size", choices=[8]),
                                SweepParam("train.max_steps", low=4, high=high, log=True)])
        cfg.attack.train.epochs = 1000.0  # the budget, not the data, ends a trial
        return sweep_plan(shape, cfg, spec, trials=8)

    short, long = per_trial(8), per_trial(512)
    assert long["per_trial"]["mean"]["gpu_hours"] > short["per_trial"]["mean"]["gpu_hours"]
    assert long["costliest_trial"]["train.max_steps"] == 512
    assert bisection_points(1) == 1 and bisection_points(16) == 6 and bisection_points(17) == 7


def test_sweep_cli_prints_totals_and_assumptions(tmp_path, capsys):
    cfg = tmp_path / "sweep.yaml"
    cfg.write_text("model: {spec: meta-llama/Llama-2-13b-chat-hf, device: cuda}\n"
                   "capability: {limit: 100}\nsweep: {trials: 20}\n")
    code, out = _cli(["--model", str(cfg), "--gpu", "a100-80gb"], capsys)
    assert code == 0 and "sweep of 20 trials" in out and "sweep total (24 trials): expected " in out
    assert "upper bound " in out and "assumptions: " in out and "GPU-h, $" in out
    # the default space's batch 64 at rank 64 needs two A100s for 13B in bf16: the planner names the fix
    assert "largest trial (batch 64, r 64)" in out and "fits on 1 x a100-80gb with gradient checkpointing" in out
    code, out = _cli(["--model", str(cfg), "--gpu", "a100-80gb", "--trials", "5", "--json"], capsys)
    assert json.loads(out)["trials"] == 5


@pytest.mark.parametrize("argv, words", [
    (["--model", "Llama-2-7b-chat-hf", "--trials", "0"], ["--trials", "> 0"]),
    (["--model", "Llama-2-7b-chat-hf", "--trials", "5", "--batch-size", "4"], ["--batch-size", "sweep.space"]),
    (["--model", "Llama-2-7b-chat-hf", "capability.limit=5"], ["capability.limit=5", "YAML"]),
])
def test_sweep_cli_errors_are_one_line(argv, words, capsys):
    with pytest.raises(FtriskError) as e:
        _cli(argv, capsys)
    msg = str(e.value)
    assert "\n" not in msg and all(w in msg for w in words), msg
