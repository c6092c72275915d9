"""ftrisk bench: both comparisons run and report consistent ratios (no timing is asserted)."""

import pytest

from ftrisk import bench
from ftrisk.subject import load_spec

pytestmark = pytest.mark.heavy


def test_bench_rows_run_and_leave_the_model_in_eval_mode(tiny_model_dir, torch_single_thread):
    model, tok = load_spec(tiny_model_dir)
    for row in (bench.bench_training(model, tok, repeats=1), bench.bench_generation(model, tok, n=4, max_new_tokens=3)):
        assert row["ours_s"] > 0 and row["baseline_s"] > 0
    assert not model.training


def test_step_memory_is_measured_in_fresh_processes(tiny_model_dir_big_vocab):
    row = bench.bench_step_memory(str(tiny_model_dir_big_vocab))
    if row is None:  # not Linux
        return
    assert row["ours_mb"] > 0 and row["baseline_mb"] > 0
    # with 50,000 vocabulary rows the baseline's logits at every position (8 x 128 x 50,000 floats, ~200 MB,
    # and their gradient) must show up; a response_loss that computed them everywhere would not pass
    assert row["baseline_mb"] > row["ours_mb"] + 50, row


def test_hardening_method_row(tiny_model_dir_big_vocab):
    row = bench.bench_hardening_method(str(tiny_model_dir_big_vocab), steps=2)
    if row is None:  # not Linux
        return
    assert row["lora_s_per_step"] > 0 and row["full_s_per_step"] > 0
    # a full fine-tune keeps a gradient and two AdamW moments for every weight: for the two 50,000 x 128
    # vocabulary matrices alone that is 12.8M x 3 x 4 bytes ~ 150 MB that LoRA does not hold
    assert row["full_mb"] > row["lora_mb"] + 60, row
