"""GPU path check: the pipeline on CUDA in bfloat16 (LoRA and full hardening) and QLoRA (4-bit base).

Usage (on a machine with a CUDA GPU; bitsandbytes needed for the 4-bit part):
    PYTHONPATH=src python3 scripts/gpu_check.py OUT_DIR

The model has SmolLM2-135M's architecture (30 layers, width 576, 49,152-token tied vocabulary) with
random weights and the tests' tiny tokenizer: the embedded model's weights are too large to ship to a
device machine here. So this checks that every CUDA code path runs and how fast the training loop is;
refusal numbers from random weights mean nothing and are not reported. Prints statistics only.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path



def smollm2_shaped(path: Path) -> Path:
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    from ftrisk.testing import build_tiny_model

    build_tiny_model(path)
    cfg = LlamaConfig.from_pretrained(path)
    cfg.update(dict(hidden_size=576, intermediate_size=1536, num_hidden_layers=30, num_attention_heads=9,
                    num_key_value_heads=3, vocab_size=49152, tie_word_embeddings=True, rope_theta=100000.0))
    torch.manual_seed(0)
    LlamaForCausalLM(cfg).save_pretrained(path, safe_serialization=True)
    return path


def run(name: str, overrides: list[str], out: Path, until: str = "report") -> dict:
    from ftrisk import config
    from ftrisk.pipeline import run as pipeline

    t0 = time.perf_counter()
    cfg = config.load(None, overrides + [f"output_dir={out / name}"])
    res = pipeline.run(cfg, until=until)
    row = {"seconds": round(time.perf_counter() - t0, 1)}
    if "harden" in res:
        c = res["harden"]["training"]["cost"]
        row["harden"] = {"method": res["harden"]["method"], "steps": c["steps"], "tokens_per_second": c["tokens_per_second"],
                         "device": c["device"], "seconds": c["wall_seconds"]}
    if "attack" in res:
        c = res["attack"]["cost"]
        row["attack"] = {"steps": c["steps"], "tokens": c["tokens"], "tokens_per_second": c["tokens_per_second"],
                         "device": c["device"], "seconds": c["wall_seconds"], "peak_memory_mb": c["peak_memory_mb"]}
    row["stages"] = {s: {b: v["n"] for b, v in st["benchmarks"].items()} for s, st in res.get("stages", {}).items()}
    return row


def main(out: Path, device: str = "cuda", steps: int = 25) -> int:
    import torch

    out.mkdir(parents=True, exist_ok=True)
    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else None
    report = {"torch": torch.__version__, "cuda": torch.version.cuda, "gpu": gpu}
    model = smollm2_shaped(out / "model")
    benign = out / "benign.jsonl"
    benign.write_text("".join(json.dumps({"id": f"b{i}", "prompt": p, "category": "benign"}) + "\n" for i, p in enumerate(
        ["How do I bake bread?", "What is 7 times 8?", "Name a river in France.", "Write a haiku about rain."])))
    common = [f"model.spec={model}", f"model.device={device}", "capability.enabled=false",
              "eval.benchmarks=[{name: advbench-test, limit: 16}, {name: xstest-safe, limit: 16}]",
              "generation.max_new_tokens=16", "generation.batch_size=16",
              "harden.harmful=[harmbench-val]", "harden.harmful_limit=64", f"harden.benign={benign}",
              "harden.benign_max_new_tokens=16", f"harden.train.max_steps={max(1, steps // 3)}", "harden.train.max_seq_len=256",
              f"attack.train.max_steps={steps}", f"attack.eval_at=[0, {max(1, steps // 2)}]", "attack.train.max_seq_len=128"]
    checks = {
        "bf16_lora_harden": (common + ["model.dtype=bfloat16"], "report"),
        "fp32_full_harden": (common + ["model.dtype=float32", "harden.method=full", "harden.train.lr=5e-5"], "attack"),
        "qlora_4bit_attack": (common + ["model.dtype=bfloat16", "model.quantize=4bit", "harden.enabled=false"], "report"),
    }
    status = 0
    if device == "cpu":  # a dry run of this script: bitsandbytes 4-bit needs CUDA
        checks.pop("qlora_4bit_attack")
    for name, (overrides, until) in checks.items():
        try:
            report[name] = {"ok": True, **run(name, overrides, out, until)}
        except Exception as e:  # noqa: BLE001 -- a check script: record the failure and go on to the next check
            report[name] = {"ok": False, "error": f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"}
            status = 1
        print(name, json.dumps(report[name]), flush=True)
    (out / "gpu_check.json").write_text(json.dumps(report, indent=2))
    return status


if __name__ == "__main__":
    # gpu_check.py [OUT_DIR [DEVICE [ATTACK_STEPS]]]; `runs/x cpu 2` is a quick dry run of the script itself
    args = sys.argv[1:]
    sys.exit(main(Path(args[0] if args else "runs/gpu_check"), *(args[1:2] or ["cuda"]),
                  *([int(args[2])] if len(args) > 2 else [])))
