"""What a plan is of: the model (``--model``: an ftrisk YAML, a model directory, a config.json or a shipped id)
and the job an ftrisk run config describes."""

from __future__ import annotations

import json
import math
from importlib import resources
from pathlib import Path

import yaml

from ftrisk import config
from ftrisk.errors import FtriskError
from ftrisk.plan.job import (
    ATTACK_EXAMPLE,
    CAPABILITY,
    CHARS_PER_TOKEN,
    TEMPLATE_TOKENS,
    Job,
)
from ftrisk.plan.shape import Shape
from ftrisk.prompts import benchmarks

#: Assumed size of a configured prompt file that does not exist (yet) on this machine.
USER_FILE_PROMPTS = 500


def _read_json(path: Path) -> dict:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise FtriskError(f"model config '{path}' is unreadable ({type(e).__name__}): "
                          "pass a valid config.json") from None
    if not isinstance(data, dict):
        raise FtriskError(f"model config '{path}' is not a JSON object: pass a Hugging Face config.json")
    return data


def resolve_model(arg: str, overrides: list[str] = ()):
    """``--model`` -> (name, Shape, RunConfig or None): an ftrisk YAML (with dotted ``overrides``), a model dir, a
    config.json or a shipped id."""
    p = Path(arg).expanduser()
    if p.suffix in (".yaml", ".yml"):
        cfg = config.load(p, list(overrides))
        return (*resolve_model(cfg.model.spec)[:2], cfg)
    if overrides:
        raise FtriskError(f"config overrides ({overrides[0]}, ...) need an ftrisk YAML as --model (got '{arg}')")
    if p.is_dir():
        if not (p / "config.json").is_file():
            raise FtriskError(f"model directory '{p}' has no config.json: pass a Hugging Face model directory")
        p = p / "config.json"
    if p.is_file() or p.suffix == ".json":
        return p.parent.name if p.name == "config.json" else p.stem, Shape.from_config(_read_json(p), str(p)), None
    key = arg.split(":", 1)[1] if arg.startswith("embedded:") else arg.rsplit("/", 1)[-1]
    shipped = resources.files("ftrisk").joinpath("data", "model_configs")
    if not shipped.joinpath(f"{key.lower()}.json").is_file():
        known = ", ".join(sorted(f.name[:-5] for f in shipped.iterdir() if f.name.endswith(".json")))
        raise FtriskError(f"model '{arg}': no config.json shipped for it (shipped: {known}); "
                          "pass the path of its config.json or of a local model directory")
    return key, Shape.from_config(json.loads(shipped.joinpath(f"{key.lower()}.json").read_text()), key), None


def has_sweep(arg: str) -> bool:
    """Whether ``--model`` is an ftrisk YAML with a ``sweep:`` section (a sweep config)."""
    p = Path(arg).expanduser()
    if p.suffix not in (".yaml", ".yml") or not p.is_file():
        return False
    data = yaml.safe_load(p.read_text(encoding="utf-8"))
    return isinstance(data, dict) and "sweep" in data


def prompt_tokens(prompts: list[str]) -> int:
    """The planner's estimate of an evaluation prompt's tokens: characters / 4 + the chat template's, rounded."""
    return round(sum(len(p) for p in prompts) / max(1, len(prompts)) / CHARS_PER_TOKEN + TEMPLATE_TOKENS)


def attack_examples(attack) -> int:
    """Distinct examples an attack section trains on: its data's (the builtin affirmatives: 400), at most
    ``n_examples``."""
    if attack.data == "builtin:advbench-affirm":
        n_ex = ATTACK_EXAMPLE["examples"]
    else:
        with open(attack.data, encoding="utf-8") as f:
            n_ex = sum(1 for ln in f if ln.strip())
    return min(n_ex, attack.n_examples) if attack.n_examples else n_ex


def benchmark_prompts(cfg) -> list[tuple[int, int, bool]]:
    """(mean prompt tokens, prompts, harmful) of each configured refusal benchmark."""
    out = []
    for ref in cfg.eval.benchmarks:
        registered = ref.name in benchmarks.names()
        if registered or Path(ref.name).is_file():
            items = (benchmarks.load(ref.name) if registered
                     else benchmarks.load_file(ref.name, ref.prompt_column, ref.category_column))
            mean, n = prompt_tokens([it.prompt for it in items]), len(items)
        else:  # a user prompt file not here yet (the paper configs' RefusalBench): plan with a typical size
            mean, n = 40 + TEMPLATE_TOKENS, USER_FILE_PROMPTS
        harmful = ref.harmful if ref.harmful is not None else (benchmarks.is_harmful(ref.name) if registered else True)
        out.append((mean, n if ref.limit is None else min(ref.limit, n), harmful))
    return out


def job_from_config(cfg) -> Job:
    """The attack and evaluation sizes of an ftrisk RunConfig."""
    t, c = cfg.attack.train, cfg.capability
    micro = math.ceil(math.ceil(attack_examples(cfg.attack) / t.batch_size) * t.epochs)
    prompts = tuple(mean for mean, n, _ in benchmark_prompts(cfg) for _ in range(n))
    return Job(quantization=cfg.model.quantize or "none", dtype=cfg.model.dtype,
               method=getattr(cfg.attack, "method", "lora"), batch_size=t.batch_size, seq_len=t.max_seq_len,
               steps=min(micro, t.max_steps * t.grad_accum) if t.max_steps else micro, grad_accum=t.grad_accum,
               lora_r=cfg.attack.lora.r, targets=tuple(cfg.attack.lora.target_modules),
               gradient_checkpointing=t.gradient_checkpointing, builtin_data=cfg.attack.data == "builtin:advbench-affirm",
               prompt_tokens=prompts, new_tokens=cfg.generation.max_new_tokens,
               gen_batch=cfg.generation.batch_size, max_batch_tokens=cfg.generation.max_batch_tokens,
               capability=tuple((task, c.limit or CAPABILITY[task][0], c.num_fewshot if task == "mmlu" else 0)
                                for task in c.tasks) if c.enabled else (), lm_eval_batch=c.batch_size)
