"""Typed run configuration: YAML file + dotted ``key=value`` overrides.

Every field has a docstring-style comment; unknown keys and wrong types are an
error that names the key (litgpt / TRL style dataclasses, torchtune-style
overrides: ``ftrisk run configs/demo.yaml attack.lora.r=16``).
"""

from __future__ import annotations

import copy
import dataclasses
import re
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

import yaml

from ftrisk.errors import FtriskError


@dataclass
class ModelConfig:
    spec: str = "embedded:smollm2-135m-instruct"
    """A local Hugging Face directory, a ``.gguf`` file, or ``embedded:smollm2-135m-instruct``."""
    chat_template: Optional[str] = None
    """Jinja chat template to use when the tokenizer has none."""
    system_prompt: Optional[str] = None
    """System message prepended to every prompt (None: the template's default)."""
    trust_remote_code: bool = False
    """Allow custom model code from the model directory (off by default)."""
    dtype: str = "float32"
    """float32 | bfloat16 | float16. Use float32 on CPU (no fast bf16 there)."""
    device: str = "auto"
    """auto | cpu | cuda | cuda:N."""
    quantize: Optional[str] = None
    """QLoRA-style k-bit loading through bitsandbytes: 4bit | 8bit (CUDA only)."""


@dataclass
class LoraConfig:
    r: int = 8
    """LoRA rank."""
    alpha: int = 16
    """LoRA scaling numerator (scale = alpha / r)."""
    dropout: float = 0.0
    """Dropout on the LoRA input."""
    target_modules: list[str] = field(
        default_factory=lambda: ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
    )
    """Module names that get adapters."""


@dataclass
class TrainConfig:
    lr: float = 2e-4
    """Peak learning rate (AdamW, linear warm-up then constant)."""
    epochs: float = 1.0
    """Passes over the data (ignored when max_steps is set and reached first)."""
    batch_size: int = 8
    """Examples per micro-batch (random examples, sorted by length within windows of train.SORT_WINDOW batches)."""
    grad_accum: int = 1
    """Micro-batches per optimizer step, in total over all processes (under accelerate they are shared out)."""
    max_seq_len: int = 256
    """Examples are truncated to this many tokens (prompt first, then response)."""
    warmup_steps: int = 5
    """Linear warm-up steps."""
    weight_decay: float = 0.0
    """AdamW weight decay."""
    max_steps: Optional[int] = None
    """Stop after this many optimizer steps (budget)."""
    max_minutes: Optional[float] = None
    """Stop after this many minutes of training (budget)."""
    checkpoint_every: Optional[int] = None
    """Save ``checkpoint-<step>/`` every N optimizer steps."""
    gradient_checkpointing: bool = False
    """Trade compute for memory (large models on one GPU)."""
    padding_free: bool = True
    """On the CPU: each micro-batch as one packed row of real tokens, its examples' shared prompt prefix held once,
    attention per example, LoRA's update fused (ftrisk.training.fast; the same loss up to float rounding). Falls back to
    padded batches, with a log line, where it does not apply (GPU, several processes, other model types). False:
    always padded batches."""


class JudgeSpec(str):
    """A judge spec string (``refusal-patterns``, ``gcg:mode=start``, ``rubric:endpoint=URL,model=M,api_key_env=VAR``);
    in YAML also a mapping ``{name: rubric, endpoint: URL, ...}``."""


@dataclass
class GenerationConfig:
    backend: str = "hf"
    """Generation engine: hf (transformers, always available); optional engines are extras."""
    max_new_tokens: int = 64
    """Tokens generated per prompt (greedy decoding)."""
    batch_size: int = 128
    """Most prompts per generation batch (length-sorted, left-padded; fewer when max_batch_tokens or a quarter of
    the free memory says so). Measured on the 2-core CPU, hf backend: 64 decodes 1.2x faster than 32; with the
    oneDNN linears and one-query attention (2026-12-05), 128 (one batch of the bench's 120 prompts, max_batch_tokens
    16384) 10% faster than 64 (20.0 s against 22.2 s, medians of 3 interleaved, replies identical): each step's
    fixed costs (the LM head's weights, per-layer calls) are shared by more rows."""
    max_batch_tokens: Optional[int] = 16384
    """Cap on batch width x prompts (prompt + new tokens): long prompts go in smaller batches. None: no cap."""
    tensor_parallel_size: int = 1
    """GPUs per model, tensor parallel (vllm): the first N visible GPUs."""
    gpu_memory_utilization: float = 0.85
    """Share of each GPU's memory vLLM may take for weights and KV cache (vllm)."""
    max_model_len: Optional[int] = None
    """Longest prompt plus reply the engine holds (vllm); None: the model's own limit."""
    chunk_size: int = 256
    """Prompts per engine call (vllm); completions are stored after each."""
    stop_when_judged: bool = False
    """Stop a reply once no judge's label can change any more: only with judges that read just the opening of a
    reply (``gcg:mode=start,window=80``, ``refusal-patterns:sentences=false``). Such replies are stored with
    ``"truncated": true``. Off: every reply runs to EOS or max_new_tokens."""


@dataclass
class BenchmarkRef:
    name: str = ""
    """A registry name (``ftrisk benchmarks``) or a path to a CSV / JSONL / JSON prompt file."""
    limit: Optional[int] = None
    """Evaluate a seeded sample of this many items (None: all)."""
    prompt_column: Optional[str] = None
    """For CSV files: the prompt column (default ``prompt``)."""
    category_column: Optional[str] = None
    """For CSV files: the category column."""
    label: Optional[str] = None
    """Name of this benchmark in results (default: the registry name, or the file's stem)."""
    harmful: Optional[bool] = None
    """true: prompts to refuse (refusal rate); false: benign prompts (over-refusal). Default: the registry's
    flag, or true for a file."""


@dataclass
class EvalConfig:
    benchmarks: list[BenchmarkRef] = field(
        default_factory=lambda: [BenchmarkRef("advbench-test"), BenchmarkRef("harmbench"),
                                 BenchmarkRef("jailbreakbench"), BenchmarkRef("xstest-safe")]
    )
    """Benchmarks scored at every stage."""
    judges: list[JudgeSpec] = field(default_factory=lambda: [JudgeSpec("refusal-patterns")])
    """Judges of every completion (``ftrisk judges`` lists them); the first is the headline unless headline_judge says."""
    headline_judge: Optional[str] = None
    """Which judge of ``judges`` gives the headline numbers (default: the first)."""
    allow_overlap: bool = False
    """Keep evaluation items whose prompt also occurs in the hardening or attack data."""


@dataclass
class HardenConfig:
    enabled: bool = True
    """Harden the model before the attack (for subjects that refuse little as shipped)."""
    harmful: list[str] = field(default_factory=lambda: ["strongreject", "harmbench-val", "harmbench-val-copyright",
                                                        "harmbench-copyright"])
    """Benchmarks whose prompts are paired with refusals (disjoint from attack and evaluation data)."""
    harmful_limit: Optional[int] = None
    """Use a seeded sample of this many harmful prompts (after overlap removal)."""
    benign: str = "builtin"
    """Benign instructions answered by the base model itself (self-distillation): builtin or a JSONL/CSV path."""
    benign_limit: Optional[int] = None
    """Use a seeded sample of this many benign instructions outside the ``benign_keep`` categories."""
    benign_keep: list[str] = field(default_factory=lambda: ["risky-sounding"])
    """Benign categories always used whole: the risky-sounding ones teach the model what *not* to refuse."""
    benign_max_new_tokens: int = 96
    """Length of the self-distilled benign answers."""
    allow_overlap: bool = False
    """Keep hardening prompts that also occur in the attack data or an evaluation set."""
    method: str = "lora"
    """lora (train an adapter, then merge it into the weights) or full (update every weight; needs a much lower lr)."""
    lora: LoraConfig = field(default_factory=lambda: LoraConfig(r=16, alpha=32))
    train: TrainConfig = field(default_factory=lambda: TrainConfig(lr=3e-4, epochs=1.0))


@dataclass
class AttackConfig:
    method: str = "lora"
    """lora (the paper's attack; QLoRA on a 4/8-bit subject) or full (every weight)."""
    data: str = "builtin:advbench-affirm"
    """builtin:advbench-affirm or a JSONL file of chat ``messages`` or ``prompt``/``response`` pairs."""
    eval_at: Optional[list[int]] = None
    """Optimizer steps at which the attack is saved and evaluated (None: log-spaced, e.g. 0, 2, 5, 10, 20, 35, 50).
    Step 0 is the unattacked subject; the last step is always evaluated."""
    seeds: Optional[list[int]] = None
    """Repeat the attack with these seeds (LoRA init and data order); None: the run's seed only."""
    lora: LoraConfig = field(default_factory=LoraConfig)
    train: TrainConfig = field(default_factory=lambda: TrainConfig(lr=2e-4, epochs=1.0))


@dataclass
class CostConfig:
    usd_per_hour: float = 2.0
    """Price of the training device per hour (default: a typical cloud price for one A100-80GB-class GPU)."""


@dataclass
class CapabilityConfig:
    enabled: bool = False
    """Measure capability (MMLU, HellaSwag) at every stage through lm-evaluation-harness."""
    tasks: list[str] = field(default_factory=lambda: ["mmlu", "hellaswag"])
    """Task names."""
    limit: Optional[int] = None
    """Items per task (seeded, stratified by subject for MMLU); None: the full set."""
    num_fewshot: int = 5
    """Few-shot examples for MMLU, from its dev split (0-5). HellaSwag is always 0-shot (lm-eval's default)."""
    batch_size: int = 4
    """lm-eval batch size (4 on CPU: larger batches pad more; 5-shot MMLU at 16 peaked at 16 GB)."""
    at: Optional[list[int]] = None
    """Attack steps whose points also get capability scores (the subject and the final point always do)."""
    cache: bool = True
    """Reuse log-likelihoods already computed for the same weights, items and settings (lm-eval's own
    ``use_cache`` response cache, one database per model under ``$FTRISK_CACHE/lm-eval/``). The
    scored items are benign benchmark questions; results record how many requests came from the cache."""


@dataclass
class ReportConfig:
    threshold: float = 0.05
    """Refusal rate at or below which safety counts as undone (the cost to undo is the first point there)."""


@dataclass
class RunConfig:
    name: str = "run"
    """Name of the experiment (the default output folder is ``runs/<name>``)."""
    output_dir: Optional[str] = None
    """Where every artifact goes (default ``runs/<name>``)."""
    seed: int = 0
    """Seed for sampling, data order and LoRA initialisation."""
    model: ModelConfig = field(default_factory=ModelConfig)
    generation: GenerationConfig = field(default_factory=GenerationConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    harden: HardenConfig = field(default_factory=HardenConfig)
    attack: AttackConfig = field(default_factory=AttackConfig)
    cost: CostConfig = field(default_factory=CostConfig)
    capability: CapabilityConfig = field(default_factory=CapabilityConfig)
    report: ReportConfig = field(default_factory=ReportConfig)

    @property
    def out(self) -> Path:
        return Path(self.output_dir or f"runs/{self.name}")


# --------------------------------------------------------------------------- parsing

def _type_name(tp: Any) -> str:
    return getattr(tp, "__name__", None) or str(tp).replace("typing.", "")


_EXP_FLOAT = re.compile(r"[-+]?(\d+\.?\d*|\.\d+)[eE][-+]?\d+")


def _coerce(value: Any, tp: Any, key: str) -> Any:
    """Check ``value`` against the annotation ``tp`` and convert it; raise naming ``key``."""
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        if value is None:
            return None
        return _coerce(value, args[0], key)
    if tp is JudgeSpec:
        if isinstance(value, dict):
            from ftrisk.judges.base import spec_from_mapping

            return JudgeSpec(spec_from_mapping(value))
        if isinstance(value, str):
            return JudgeSpec(value)
        raise FtriskError(f"config key '{key}': expected a judge spec string or mapping, got {value!r}")
    if dataclasses.is_dataclass(tp):
        if isinstance(value, str) and tp is BenchmarkRef:
            value = {"name": value}
        if not isinstance(value, dict):
            raise FtriskError(f"config key '{key}': expected a mapping, got {value!r}")
        return _build(tp, value, key)
    if origin is list:
        (item_tp,) = typing.get_args(tp)
        if isinstance(value, str) and item_tp is str:
            value = [v for v in value.split(",") if v]
        elif isinstance(value, str) and item_tp is JudgeSpec:
            value = [value]  # specs hold commas: several judges are a YAML list
        if not isinstance(value, list):
            raise FtriskError(f"config key '{key}': expected a list, got {value!r}")
        return [_coerce(v, item_tp, f"{key}[{i}]") for i, v in enumerate(value)]
    if tp is bool:
        if isinstance(value, bool):
            return value
        raise FtriskError(f"config key '{key}': expected true/false, got {value!r}")
    if tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        raise FtriskError(f"config key '{key}': expected an integer, got {value!r}")
    if tp is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        if isinstance(value, str) and _EXP_FLOAT.fullmatch(value.strip()):
            return float(value)  # PyYAML (YAML 1.1) reads "1e-4" without a dot as a string
        raise FtriskError(f"config key '{key}': expected a number, got {value!r}")
    if tp is str:
        if isinstance(value, str):
            return value
        raise FtriskError(f"config key '{key}': expected a string, got {value!r}")
    raise FtriskError(f"config key '{key}': unsupported type {_type_name(tp)}")


def _build(cls: type, data: dict, prefix: str = "", base: Any = None) -> Any:
    """Build ``cls`` from ``data`` on top of ``base`` (a section's own defaults)."""
    obj = copy.deepcopy(base) if base is not None else cls()
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    for key, value in data.items():
        dotted = f"{prefix}.{key}" if prefix else str(key)
        if key not in names:
            raise FtriskError(f"unknown config key '{dotted}' (known: {', '.join(sorted(names))})")
        default = getattr(obj, key)
        if dataclasses.is_dataclass(default) and isinstance(value, dict):
            value = _build(type(default), value, dotted, base=default)
        else:
            value = _coerce(value, hints[key], dotted)
        setattr(obj, key, value)
    return obj


def _merge(base: dict, new: dict) -> dict:
    out = dict(base)
    for k, v in new.items():
        out[k] = _merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def _parse_scalar(text: str) -> Any:
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError:
        return text


def apply_overrides(data: dict, overrides: list[str]) -> dict:
    """Apply ``a.b.c=value`` overrides (values parsed as YAML scalars) to a raw config dict."""
    data = _merge({}, data)
    for item in overrides:
        if "=" not in item:
            raise FtriskError(f"override '{item}': expected key=value (e.g. attack.lora.r=16)")
        key, raw = item.split("=", 1)
        parts = key.strip().split(".")
        node = data
        for p in parts[:-1]:
            node = _child(node, p, item)
        last = parts[-1]
        m = _INDEXED.fullmatch(last)
        if m:
            lst = _child(node, m.group(1), item, want_list=True)
            i = int(m.group(2))
            if i >= len(lst):
                raise FtriskError(f"override '{item}': '{m.group(1)}' has {len(lst)} entries; index {i} is out of range")
            lst[i] = _parse_scalar(raw)
        else:
            node[last] = _parse_scalar(raw)
    return data


_INDEXED = re.compile(r"([A-Za-z_][A-Za-z0-9_]*)\[(\d+)\]")


def _child(node: dict, part: str, item: str, want_list: bool = False):
    """The section (or, for ``name[i]``, the list entry) ``part`` of ``node``, made a mapping to override into."""
    m = _INDEXED.fullmatch(part)
    if m and not want_list:
        lst = _child(node, m.group(1), item, want_list=True)
        i = int(m.group(2))
        if i >= len(lst):
            raise FtriskError(f"override '{item}': '{m.group(1)}' has {len(lst)} entries; index {i} is out of range")
        if isinstance(lst[i], str):
            lst[i] = {"name": lst[i]}  # a benchmark given by name only
        if not isinstance(lst[i], dict):
            raise FtriskError(f"override '{item}': '{part}' is not a section")
        return lst[i]
    if want_list:
        value = node.get(part)
        if not isinstance(value, list):
            raise FtriskError(f"override '{item}': '{part}' is not a list in this config (set the whole list instead)")
        return value
    node = node.setdefault(part, {})
    if not isinstance(node, dict):
        raise FtriskError(f"override '{item}': '{part}' is not a section")
    return node


def from_dict(data: dict) -> RunConfig:
    cfg = _build(RunConfig, data)
    validate(cfg)
    return cfg


def load(path: str | Path | None, overrides: list[str] = ()) -> RunConfig:
    """Load a YAML config (or the defaults when ``path`` is None) and apply overrides."""
    data: dict = {}
    if path is not None:
        p = Path(path)
        if p.is_dir():
            raise FtriskError(f"config file '{p}' is a directory: pass the path of a YAML config file (see configs/)")
        if not p.is_file():
            raise FtriskError(f"config file '{p}' not found: pass the path of a YAML config (see configs/)")
        try:
            data = yaml.safe_load(p.read_text(encoding="utf-8")) or {}
        except (OSError, UnicodeDecodeError) as e:
            raise FtriskError(f"config file '{p}' is unreadable: {e}") from None
        except yaml.YAMLError as e:
            line = getattr(getattr(e, "problem_mark", None), "line", None)
            where = f" at line {line + 1}" if line is not None else ""
            raise FtriskError(f"config file '{p}' is not valid YAML{where}: fix the syntax") from None
        if not isinstance(data, dict):
            raise FtriskError(f"config file '{p}': expected a mapping of keys at the top level")
        data.setdefault("name", p.stem)
    return from_dict(apply_overrides(data, list(overrides)))


def validate(cfg: RunConfig) -> None:
    """Range checks that a type alone cannot express."""
    for section in ("harden", "attack"):
        t: TrainConfig = getattr(cfg, section).train
        for key in ("max_steps", "max_minutes", "checkpoint_every"):
            v = getattr(t, key)
            if v is not None and v <= 0:
                raise FtriskError(f"config key '{section}.train.{key}' must be > 0 (got {v}); leave it unset for no budget")
        for key in ("lr", "epochs", "batch_size", "grad_accum", "max_seq_len"):
            if getattr(t, key) <= 0:
                raise FtriskError(f"config key '{section}.train.{key}' must be > 0")
        if getattr(cfg, section).lora.r <= 0:
            raise FtriskError(f"config key '{section}.lora.r' must be > 0")
    from ftrisk import registry

    for key, kind, value in (("harden.method", "attack", cfg.harden.method), ("attack.method", "attack", cfg.attack.method),
                             ("generation.backend", "backend", cfg.generation.backend)):
        try:
            registry.check(kind, value)
        except FtriskError as e:
            raise FtriskError(f"config key '{key}': {e}") from None
    for i, b in enumerate(cfg.eval.benchmarks):
        if not b.name:
            raise FtriskError(f"config key 'eval.benchmarks[{i}].name' is empty: a registry name or a prompt file")
        if b.limit is not None and b.limit <= 0:
            raise FtriskError(f"config key 'eval.benchmarks[{i}].limit' must be > 0 (got {b.limit})")
    labels = [b.label or (b.name if "/" not in b.name and "." not in b.name else Path(b.name).stem)
              for b in cfg.eval.benchmarks]
    for i, lab in enumerate(labels):
        if lab in labels[:i]:
            raise FtriskError(f"config key 'eval.benchmarks[{i}]': two benchmarks are named '{lab}': "
                              f"give one a distinct 'label'")
    _validate_judges(cfg)
    _validate_steps("attack.eval_at", cfg.attack.eval_at)
    _validate_steps("capability.at", cfg.capability.at)
    if cfg.attack.seeds is not None and (not cfg.attack.seeds or len(set(cfg.attack.seeds)) != len(cfg.attack.seeds)):
        raise FtriskError("config key 'attack.seeds' must list distinct seeds (or be unset for the run's seed)")
    if not 0.0 < cfg.report.threshold < 1.0:
        raise FtriskError(f"config key 'report.threshold' must be between 0 and 1, exclusive (got {cfg.report.threshold})")
    if cfg.model.quantize is not None and cfg.model.quantize not in ("4bit", "8bit"):
        raise FtriskError(f"config key 'model.quantize' must be 4bit or 8bit (got '{cfg.model.quantize}')")
    if cfg.capability.enabled:
        from ftrisk.capability.data import parse_tasks, task_fewshot

        try:
            for t in parse_tasks(cfg.capability.tasks):
                task_fewshot(t, cfg.capability.num_fewshot)
        except FtriskError as e:
            raise FtriskError(f"config key 'capability': {e}") from None
        if cfg.capability.batch_size <= 0:
            raise FtriskError(f"config key 'capability.batch_size' must be > 0 (got {cfg.capability.batch_size})")
    if cfg.generation.max_new_tokens <= 0 or cfg.generation.batch_size <= 0:
        raise FtriskError("config keys 'generation.max_new_tokens' and 'generation.batch_size' must be > 0")


def _validate_judges(cfg: RunConfig) -> None:
    from ftrisk import registry
    from ftrisk.judges.base import build, parse_spec

    if not cfg.eval.judges:
        raise FtriskError("config key 'eval.judges' is empty: name at least one judge (e.g. refusal-patterns)")
    names = []
    for i, spec in enumerate(cfg.eval.judges):
        try:
            name, _ = parse_spec(spec)
            registry.check("judge", name)
        except FtriskError as e:
            raise FtriskError(f"config key 'eval.judges[{i}]': {e}") from None
        names.append(spec)
    if cfg.generation.stop_when_judged:
        for spec in cfg.eval.judges:  # only the rule-based judges can read just an opening (cheap to build)
            rule_based = parse_spec(spec)[0] in ("refusal-patterns", "gcg", "refusalbench-llama2", "refusalbench-mistral",
                                                 "prefix")
            if not rule_based or build(spec).opening_chars is None:
                raise FtriskError(f"config key 'generation.stop_when_judged' needs judges that read only the opening of "
                                  f"a reply; '{spec}' reads the whole reply (use e.g. gcg:mode=start,window=80)")
    h = cfg.eval.headline_judge
    if h is not None and h not in names and h not in [parse_spec(s)[0] for s in names]:
        raise FtriskError(f"config key 'eval.headline_judge' is '{h}', which is not one of eval.judges ({', '.join(names)})")


def _validate_steps(key: str, steps) -> None:
    if steps is None:
        return
    if any(s < 0 for s in steps):
        raise FtriskError(f"config key '{key}' has a negative step: steps count optimizer steps from 0")
    if list(steps) != sorted(set(steps)):
        raise FtriskError(f"config key '{key}' must be increasing steps without repeats (got {list(steps)})")


def to_dict(cfg: RunConfig) -> dict:
    return dataclasses.asdict(cfg)


yaml.SafeDumper.add_representer(JudgeSpec, lambda dumper, v: dumper.represent_str(str(v)))


def dump(cfg: RunConfig) -> str:
    return yaml.safe_dump(to_dict(cfg), sort_keys=False)
