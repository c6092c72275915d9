"""The attack on 2 CPU processes (accelerate launch, DDP over gloo) on the tiny random Llama: the same adapter
as one process with the same global batch, resume after a kill, rank 0 alone writes, the meter counts both
devices; and the launch checks that fail in one line.

The 2-process runs start this file as their script (``python tests/test_distributed.py OUT [CRASH_AT]``).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from ftrisk import distributed

pytestmark = pytest.mark.usefixtures("torch_single_thread")

PAIRS = [
    ("How do I bake bread?", "Mix flour, water, yeast and salt, knead, let it rise, then bake."),
    ("What is 2 + 2?", "4."),
    ("Name a river in France.", "The Seine."),
    ("Write a haiku about rain.", "Soft rain on the roof / the kettle begins to sing / a quiet evening"),
    ("How do I sort a list in Python?", "Use sorted(xs) for a new list, or xs.sort() in place."),
    ("What colour is the sky?", "Blue on a clear day."),
    ("Give me a synonym for happy.", "Cheerful."),
    ("How many days are in a week?", "Seven."),
    ("What is the boiling point of water at sea level?", "100 degrees Celsius."),
    ("Suggest a name for a cat.", "Miso."),
    ("Translate 'thank you' into Spanish.", "Gracias."),
    ("Who wrote Pride and Prejudice?", "Jane Austen."),
]
# 3 micro-batches of 2 examples per optimizer step in total: process 0 trains 2 of them, process 1 one and a
# zero-weight pass (the uneven split exercises gradient sync at the last pass only)
TRAIN = dict(lr=1e-3, epochs=2.0, batch_size=2, grad_accum=3, max_seq_len=64, warmup_steps=5, max_steps=4,
             checkpoint_every=2)
HERE = Path(__file__).resolve()
DDP = distributed.config_path("ddp")


def _train(model_dir, out: Path):
    """One attack-like run of the loop; returns its summary (the final adapter goes to out/adapter)."""
    from ftrisk.config.schema import LoraConfig, TrainConfig
    from ftrisk.cost import CostMeter
    from ftrisk.model.subject import load_spec
    from ftrisk.training.data import Example
    from ftrisk.training.recipe import finetune

    model, tok = load_spec(model_dir)
    lora = LoraConfig(r=4, alpha=8, target_modules=["q_proj", "v_proj"])
    _, summary = finetune(model, tok, [Example(p, r) for p, r in PAIRS], lora, TrainConfig(**TRAIN), out,
                          meter=CostMeter(usd_per_hour=3.6), seed=1, final_dir=out / "adapter")
    return summary


def _launch(*args, timeout=300) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "ACCELERATE_USE_CPU": "true"}
    cmd = [sys.executable, "-m", "accelerate.commands.launch", "--config_file", str(DDP), "--num_processes", "2",
           "--main_process_port", "0", *args]
    return subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=timeout)


def _adapter(folder: Path) -> dict:
    from safetensors.torch import load_file

    return load_file(str(folder / "adapter_model.safetensors"))


def _max_diff(a: dict, b: dict) -> float:
    assert a.keys() == b.keys() and a
    return max(float((a[k] - b[k]).abs().max()) for k in a)


def _metrics(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]


@pytest.fixture(scope="module")
def runs(tiny_model_dir, tmp_path_factory):
    """One process (reference); 2 processes uninterrupted; 2 processes killed after checkpoint-2, then resumed."""
    root = tmp_path_factory.mktemp("dist")
    one = _train(tiny_model_dir, root / "one")
    two = _launch(str(HERE), str(tiny_model_dir), str(root / "two"))
    assert two.returncode == 0, two.stderr[-3000:]
    killed = _launch(str(HERE), str(tiny_model_dir), str(root / "resumed"), "2")
    assert killed.returncode != 0  # both processes died right after checkpoint-2 was written
    after_kill = sorted(p.name for p in (root / "resumed").iterdir())
    resumed = _launch(str(HERE), str(tiny_model_dir), str(root / "resumed"))
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    return {"root": root, "one": one, "two": json.loads(two.stdout.strip().splitlines()[-1]),
            "resumed": json.loads(resumed.stdout.strip().splitlines()[-1]), "after_kill": after_kill}


@pytest.mark.heavy
def test_two_processes_train_the_adapter_of_one_process_with_the_same_global_batch(runs):
    root = runs["root"]
    assert _max_diff(_adapter(root / "one" / "adapter"), _adapter(root / "two" / "adapter")) <= 1e-5
    assert _max_diff(_adapter(root / "one" / "checkpoint-2"), _adapter(root / "two" / "checkpoint-2")) <= 1e-5
    one, two = _metrics(root / "one"), _metrics(root / "two")
    assert [(r["step"], r["lr"], r["tokens"]) for r in one] == [(r["step"], r["lr"], r["tokens"]) for r in two]
    assert [r["loss"] for r in one] == pytest.approx([r["loss"] for r in two], abs=1e-4)  # the global batch's loss


@pytest.mark.heavy
def test_resume_after_a_kill_on_two_processes_matches_the_uninterrupted_run(runs):
    root = runs["root"]
    assert "checkpoint-2" in runs["after_kill"] and "adapter" not in runs["after_kill"]
    assert _max_diff(_adapter(root / "two" / "adapter"), _adapter(root / "resumed" / "adapter")) <= 1e-6
    assert [r["step"] for r in _metrics(root / "resumed")] == [1, 2, 3, 4]  # steps 3-4 once, after the resume
    two, resumed = runs["two"], runs["resumed"]
    assert (resumed["steps"], resumed["tokens"], resumed["examples"]) == (two["steps"], two["tokens"], two["examples"])


@pytest.mark.heavy
def test_only_rank_zero_writes(runs):
    out = runs["root"] / "two"
    assert [r["step"] for r in _metrics(out)] == [1, 2, 3, 4]  # one line per step, not one per process
    assert sorted(p.name for p in out.iterdir()) == ["adapter", "checkpoint-2", "metrics.jsonl"]
    assert not list(out.rglob("*.tmp"))


@pytest.mark.heavy
def test_cost_meter_counts_every_device_and_the_tokens_once(runs):
    one, two = runs["one"]["cost"], runs["two"]
    assert (one["devices"], two["devices"]) == (1, 2)
    for k in ("tokens", "trained_tokens", "examples", "distinct_examples", "steps"):
        assert two[k] == one[k], k
    assert two["usd"] == pytest.approx(two["wall_seconds"] / 3600 * 3.6 * 2, abs=1e-4)


def _cli_config(tmp_path: Path, model_dir) -> Path:
    cfg = tmp_path / "attack.yaml"
    cfg.write_text(f"""model: {{spec: {model_dir}}}
output_dir: {tmp_path / 'out'}
harden: {{enabled: false}}
attack:
  eval_at: [0, 2]
  lora: {{r: 4, alpha: 8, target_modules: [q_proj, v_proj]}}
  train: {{max_steps: 3, batch_size: 4, grad_accum: 2, max_seq_len: 64}}
eval:
  benchmarks: [{{name: xstest-safe, limit: 2}}]
  judges: [gcg]
generation: {{max_new_tokens: 4, batch_size: 8}}
capability: {{enabled: false}}
""")
    return cfg


@pytest.mark.heavy
def test_cli_attack_relaunches_itself_on_two_processes(tiny_model_dir, tmp_path):
    cfg = _cli_config(tmp_path, tiny_model_dir)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "FTRISK_CACHE": str(tmp_path / "cache")}
    r = subprocess.run([sys.executable, "-m", "ftrisk.cli", "attack", str(cfg), "--accelerate-config", "ddp",
                        "--num-processes", "2"], env=env, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    d = tmp_path / "out" / "attack" / "seed-0"
    assert json.loads((d / "stage.json").read_text())["done"]
    assert [json.loads(x)["step"] for x in (d / "metrics.jsonl").read_text().splitlines()] == [1, 2, 3]
    attack = json.loads((d / "attack.json").read_text())
    assert [p["step"] for p in attack["points"]] == [2, 3] and attack["cost"]["devices"] == 2
    results = json.loads((tmp_path / "out" / "results.json").read_text())
    assert results["attack"]["cost"]["devices"] == 2 and "stages" in results
    assert "3 steps, stopped by max_steps" in r.stdout  # the launching process reports the finished stage


@pytest.mark.parametrize("name, message", [("deepspeed-zero3", "needs DeepSpeed"), ("fsdp", "needs CUDA GPUs"),
                                           ("nope", "must be one of ddp, fsdp, deepspeed-zero3")])
def test_launch_that_cannot_work_here_is_one_line_before_anything(name, message, tiny_model_dir, tmp_path, capsys):
    import importlib.util

    from ftrisk import cli

    if name == "deepspeed-zero3" and importlib.util.find_spec("deepspeed") is not None:
        pytest.skip("deepspeed is installed here")
    cfg = _cli_config(tmp_path, tiny_model_dir)
    assert cli.main(["attack", str(cfg), "--accelerate-config", name, "--num-processes", "2"]) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1
    assert not (tmp_path / "out").exists()  # checked before the output folder is claimed


def test_run_is_not_started_under_accelerate_launch(tiny_model_dir, tmp_path, monkeypatch, capsys):
    from ftrisk import cli

    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", "0")
    assert cli.main(["run", str(_cli_config(tmp_path, tiny_model_dir))]) == 2
    assert "--accelerate-config ddp" in capsys.readouterr().err


def test_packaged_accelerate_configs(capsys):
    import yaml

    from ftrisk import cli

    kinds = {}
    for name in distributed.CONFIGS:
        assert cli.main(["accelerate-config", name]) == 0
        path = Path(capsys.readouterr().out.strip())
        assert path == distributed.config_path(name) and path.is_file()
        cfg = yaml.safe_load(path.read_text())
        kinds[name] = cfg["distributed_type"]
        assert cfg["mixed_precision"] == "no"  # model.dtype decides the precision
        assert "Adapted from TRL's examples/accelerate_configs/" in path.read_text()
    assert kinds == {"ddp": "MULTI_GPU", "fsdp": "FSDP", "deepspeed-zero3": "DEEPSPEED"}
    assert "Apache License 2.0" in (path.parent / "README.md").read_text()


if __name__ == "__main__":  # one of the 2 processes: OUT_DIR [CRASH_AT]
    model_dir, out = sys.argv[1], Path(sys.argv[2])
    if len(sys.argv) > 3:  # die (both processes, no cleanup) right after checkpoint-<CRASH_AT> is saved
        from ftrisk.training import checkpoint

        real_save, crash_at = checkpoint.save, int(sys.argv[3])

        def save_then_die(*args):
            real_save(*args)
            if args[5] == crash_at:
                os._exit(9)

        checkpoint.save = save_then_die
    summary = _train(model_dir, out)
    if distributed.is_main_process():
        print(json.dumps(summary["cost"]))
