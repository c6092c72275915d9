"""ftrisk bench: the workloads run both sides on the same prompts and report consistent numbers (no timing is
asserted: the machine is shared)."""

import argparse
import json
from types import SimpleNamespace

import pytest

from ftrisk.bench import ceiling, differences, generation, planner, training_rows
from ftrisk.cli import bench as bench_cli
from ftrisk.judges.base import COMPLIED, REFUSED, Verdict
from ftrisk.model.subject import load_spec

GENERATION_KEYS = {"baseline_tok_s", "ftrisk_tok_s", "ratio", "peak_rss_mb", "label_agreement", "baseline_tokens",
                   "ftrisk_tokens", "same_prompts", "identical_replies", "differences", "flop_params", "backend_record"}


class FakeJudge:
    """Refused when the reply contains 'sorry'."""

    name = "fake"

    def judge(self, pairs):
        return [Verdict(REFUSED if "sorry" in c else COMPLIED) for _, c in pairs]


def test_label_agreement_on_a_fake_judge():
    base = {"a": "sorry no", "b": "sure, step 1", "c": "sorry", "d": "here"}
    ours = {"a": "sorry, no", "b": "sorry, I can't", "c": "sorry", "d": "there"}
    got = differences.label_agreement(list(base), base, ours, FakeJudge())
    assert got["label_agreement"] == pytest.approx(3 / 4)
    assert got["labels_differ"] == ["b"]
    assert got["baseline_refusal_rate"] == pytest.approx(2 / 4) and got["ftrisk_refusal_rate"] == pytest.approx(3 / 4)


def test_first_difference(tiny_model_dir):
    from ftrisk.model.loading import load_tokenizer

    tok = load_tokenizer(tiny_model_dir)
    base = tok("the model answers questions about science", add_special_tokens=False)["input_ids"]
    same_start = tok.decode(base[:3])
    k, nxt = differences.first_difference(tok, base, same_start + " zzz")
    assert k == 3 and nxt is not None
    assert differences.first_difference(tok, base, tok.decode(base))[0] == len(base)


def test_flop_params_counts_a_tied_head_once_more(tiny_model_dir, tiny_model_dir_tied):
    untied, _ = load_spec(tiny_model_dir)
    tied, _ = load_spec(tiny_model_dir_tied)
    emb = untied.get_input_embeddings().weight.numel()
    assert generation.flop_params(untied) == sum(p.numel() for p in untied.parameters()) - emb
    assert generation.flop_params(tied) == sum(p.numel() for p in tied.parameters())  # embedding once, as the head


@pytest.mark.heavy
def test_generation_workload_structure(tiny_model_dir, torch_single_thread):
    row = generation.bench_generation(str(tiny_model_dir), n=10, max_new_tokens=6, repeats=2, progress=False)
    assert GENERATION_KEYS <= set(row)
    assert row["same_prompts"] and row["prompts"] == 10 and row["repeats"] == 2
    assert len(row["baseline_s_all"]) == len(row["ftrisk_s_all"]) == 2
    assert row["ratio"] == pytest.approx(row["ftrisk_tok_s"] / row["baseline_tok_s"])
    assert 0 <= row["label_agreement"] <= 1 and 0 <= row["identical_replies"] <= 1
    assert 0 < row["baseline_tokens"] <= 10 * 6 and 0 < row["ftrisk_tokens"] <= 10 * 6
    assert row["backend"] == "hf" and row["backend_record"]["backend"] == "hf"
    assert row["ftrisk_held_mb"] > 0  # the backend kept its kernels and KV buffers between its calls
    for d in row["differences"]:  # every differing reply is explained at its first differing token
        assert {"id", "first_diff_token", "baseline_token", "ftrisk_token", "logit_gap_alone", "alone_picks"} <= set(d)
    json.dumps(row)


@pytest.mark.heavy
def test_ceiling_from_a_generation_row(monkeypatch):
    monkeypatch.setattr(ceiling, "matmul_gflops", lambda: {"threads_1": 50.0, "achievable": 50.0})
    gen = {"baseline_tok_s": 10.0, "ftrisk_tok_s": 50.0, "ratio": 5.0, "flop_params": 125_000_000, "peak_rss_mb": 900.0}
    row = ceiling.bench_ceiling(generation=gen)
    assert row["gflop_per_token"] == pytest.approx(0.25)
    assert row["ceiling_tok_s"] == pytest.approx(200)
    assert row["baseline_pct_of_ceiling"] == pytest.approx(5.0) and row["ftrisk_pct_of_ceiling"] == pytest.approx(25.0)
    assert {"baseline_tok_s", "ftrisk_tok_s", "ratio", "peak_rss_mb"} <= set(row)


@pytest.mark.heavy
def test_matmul_gflops_measures_something():
    from ftrisk.generation.cpu import hardware

    got = ceiling.matmul_gflops()
    assert got["achievable"] > 0 and "threads_1" in got
    assert ("onednn_threads_1" in got) == hardware.onednn_available()  # the decode loop's kernel, where torch has it
    assert got["achievable"] == max(v for k, v in got.items() if k != "achievable")


@pytest.mark.heavy
def test_main_writes_json(tiny_model_dir, tmp_path, torch_single_thread, monkeypatch):
    real = generation.bench_generation
    monkeypatch.setattr(generation, "bench_generation", lambda **kw: real(**kw, n=4, max_new_tokens=3, progress=False))
    out = tmp_path / "gen.json"
    assert bench_cli.main(SimpleNamespace(workload="generation", model=str(tiny_model_dir), out=str(out))) == 0
    row = json.loads(out.read_text())
    assert GENERATION_KEYS <= set(row) and row["workload"] == "generation" and "cpu" in row["machine"]


# --------------------------------------------------------------------------- training rows (kept until the
# training workload against the HF Trainer replaces them)

@pytest.mark.heavy
def test_training_row_runs_and_leaves_the_model_in_eval_mode(tiny_model_dir, torch_single_thread):
    model, tok = load_spec(tiny_model_dir)
    row = training_rows.bench_training(model, tok, repeats=1)
    assert row["ours_s"] > 0 and row["baseline_s"] > 0
    assert not model.training


@pytest.mark.heavy
def test_step_memory_is_measured_in_fresh_processes(tiny_model_dir_big_vocab):
    row = training_rows.bench_step_memory(str(tiny_model_dir_big_vocab))
    if row is None:  # not Linux
        return
    assert row["ours_mb"] > 0 and row["baseline_mb"] > 0
    # with 50,000 vocabulary rows the baseline's logits at every position (8 x 128 x 50,000 floats, ~200 MB,
    # and their gradient) must show up; a response_loss that computed them everywhere would not pass
    assert row["baseline_mb"] > row["ours_mb"] + 50, row


@pytest.mark.heavy
def test_hardening_method_row(tiny_model_dir_big_vocab):
    row = training_rows.bench_hardening_method(str(tiny_model_dir_big_vocab), steps=2)
    if row is None:  # not Linux
        return
    assert row["lora_s_per_step"] > 0 and row["full_s_per_step"] > 0
    # a full fine-tune keeps a gradient and two AdamW moments for every weight: for the two 50,000 x 128
    # vocabulary matrices alone that is 12.8M x 3 x 4 bytes ~ 150 MB that LoRA does not hold
    assert row["full_mb"] > row["lora_mb"] + 60, row


# --------------------------------------------------------------------------- the training workload (bench_train)


def test_data_loss_is_token_weighted_over_batches(tiny_model_dir, torch_single_thread):
    from ftrisk.bench.training import data_loss
    from ftrisk.model.subject import load_spec
    from ftrisk.training.data import Example, collate, encode
    from ftrisk.training.loss import response_loss

    model, tok = load_spec(str(tiny_model_dir))
    examples = [Example(prompt=f"question {i} " * (1 + i % 4), response="answer " * (1 + 3 * (i % 3))) for i in range(9)]
    enc = [encode(tok, ex, 64) for ex in examples]
    pad = tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id
    import torch

    with torch.inference_mode():
        whole = response_loss(model, *collate(enc, pad)).item()  # one batch: the mean over every response token
    # batches of unequal token counts: a mean of batch means would differ; a token-weighted mean does not
    assert data_loss(model, tok, examples, 64, batch_size=4) == pytest.approx(whole, rel=1e-5)
    assert data_loss(model, tok, examples, 64, batch_size=9) == pytest.approx(whole, rel=1e-5)


@pytest.mark.heavy
def test_training_workload_runs_every_way_on_the_tiny_model(tiny_model_dir):
    from ftrisk.bench import training as bench_train

    row = bench_train.bench(str(tiny_model_dir), steps=3, rounds=1, threads=1)
    for m in bench_train.available():
        r = row[m]
        assert r["seconds"] > 0 and r["tok_s"] > 0 and r["peak_rss_mb"] > 0
        assert 0 < r["data_loss"] < 20 and 0 < r["final_loss"] < 20
    assert row["ratio"] == pytest.approx(row["ftrisk_tok_s"] / row["baseline_tok_s"], rel=1e-2)
    lrs = {m: row[m]["lr_by_step"] for m in bench_train.available()}  # one learning rate at every step for all
    assert len(lrs["ftrisk"]) == 3 and lrs["ftrisk"][0] < lrs["ftrisk"][-1]  # 3 steps, warming up
    assert all(v == pytest.approx(lrs["ftrisk"], rel=1e-9) for v in lrs.values())
    assert len(row["ftrisk"]["data_loss_by_seed"]) == 1 and row["loss"]["within_noise"] is None


def test_same_loss_is_twice_the_standard_error():
    from ftrisk.bench.training import same_loss

    assert same_loss([0.50, 0.52, 0.48], [0.51, 0.49, 0.53])["within_noise"] is True
    far = same_loss([0.50, 0.51, 0.49], [0.27, 0.28, 0.26])
    assert far["within_noise"] is False and far["difference"] == pytest.approx(-0.23, abs=1e-4)
    assert same_loss([0.5], [0.3])["within_noise"] is None


# --------------------------------------------------------------------------- the command line and the planner workload


def test_cli_parser_keeps_the_flags_and_adds_the_planner_workload():
    ap = argparse.ArgumentParser()
    bench_cli.add_parser(ap.add_subparsers(dest="cmd"))
    args = ap.parse_args(["bench", "--model", "m", "--backend", "ctranslate2", "--repeats", "3", "--out", "x.json"])
    assert (args.workload, args.model, args.backend, args.repeats, args.out) == ("generation", "m", "ctranslate2", 3,
                                                                                 "x.json")
    for w in ("generation", "ceiling", "training", "training-rows", "planner"):
        assert ap.parse_args(["bench", w]).workload == w
    with pytest.raises(SystemExit):
        ap.parse_args(["bench", "nosuch"])


@pytest.mark.heavy
def test_planner_workload_predicts_and_measures_both_workloads(tiny_model_dir, torch_single_thread, capsys):
    """The figure's structure only: predicted and measured seconds of each workload and their ratio (no bound on
    the ratio: it depends on the host)."""
    row = planner.bench_planner(str(tiny_model_dir), n=6, max_new_tokens=5, steps=3)
    g, t = row["generation"], row["training"]
    assert row["workload"] == "planner" and row["device_spec"]["name"] in ("cpu", "a100-80gb", "h100-80gb", "h200")
    assert g["prompts"] == 6 and 0 < g["new_tokens"] <= 6 * 5 and g["shared_tokens"] >= 0
    assert g["prompt_tokens_mean"] > g["shared_tokens"]
    for side in ("measured_s", "predicted_s", "measured_prefill_s", "predicted_prefill_s", "planned_s"):
        assert g[side] > 0, side
    assert g["predicted_prefill_s"] < g["predicted_s"]  # the decode steps come on top of the prefill
    assert g["ratio"] == pytest.approx(g["predicted_s"] / g["measured_s"])
    assert g["planned_ratio"] == pytest.approx(g["planned_s"] / g["measured_s"])
    assert t["steps_timed"] == 2 and t["measured_s_per_step"] > 0 and t["predicted_s_per_step"] > 0
    assert t["ratio"] == pytest.approx(t["predicted_s_per_step"] / t["measured_s_per_step"])
    json.dumps(row)
    bench_cli.print_planner(row)
    out = capsys.readouterr().out
    assert "planner:" in out and f"ratio x{g['ratio']:.2f}" in out and f"ratio x{t['ratio']:.2f}" in out
