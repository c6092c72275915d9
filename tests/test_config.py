"""Config: YAML + defaults, dotted overrides, section defaults, errors that name the key, shipped configs."""

from pathlib import Path

import re

import pytest
import yaml

from ftrisk import config
from ftrisk.errors import FtriskError

REPO = Path(__file__).resolve().parents[1]


def _write(tmp_path, text: str, name: str = "exp.yaml") -> Path:
    p = tmp_path / name
    p.write_text(text, encoding="utf-8")
    return p


# --------------------------------------------------------------------------- loading and defaults


def test_yaml_load_and_defaults(tmp_path):
    p = _write(tmp_path, "seed: 3\nmodel:\n  spec: /some/dir\ngeneration:\n  max_new_tokens: 12\n", "myexp.yaml")
    cfg = config.load(p)
    assert cfg.seed == 3
    assert cfg.model.spec == "/some/dir"
    assert cfg.generation.max_new_tokens == 12
    # untouched fields keep their defaults
    assert cfg.generation.batch_size == 128 and cfg.generation.max_batch_tokens == 16384
    assert cfg.model.dtype == "float32" and cfg.model.trust_remote_code is False
    assert cfg.attack.lora.r == 8 and cfg.harden.lora.r == 16
    assert cfg.attack.data == "builtin:advbench-affirm"
    assert [b.name for b in cfg.eval.benchmarks] == ["advbench-test", "harmbench", "jailbreakbench", "xstest-safe"]
    # name defaults to the file stem, output_dir to runs/<name>
    assert cfg.name == "myexp"
    assert cfg.out == Path("runs/myexp")


def test_explicit_name_and_output_dir(tmp_path):
    p = _write(tmp_path, f"name: other\noutput_dir: {tmp_path / 'o'}\n")
    cfg = config.load(p)
    assert cfg.name == "other" and cfg.out == tmp_path / "o"


def test_no_file_gives_defaults():
    cfg = config.load(None)
    assert cfg == config.RunConfig()
    assert cfg.out == Path("runs/run")


def test_dump_round_trips():
    cfg = config.load(None, ["attack.lora.r=4", "eval.benchmarks=[{name: advbench-test, limit: 5}]",
                             "attack.train.max_minutes=2.5"])
    again = config.from_dict(yaml.safe_load(config.dump(cfg)))
    assert again == cfg


# --------------------------------------------------------------------------- overrides


def test_nested_scalar_overrides():
    cfg = config.load(None, ["attack.lora.r=16", "seed=7", "harden.enabled=false", "model.system_prompt=Be brief."])
    assert cfg.attack.lora.r == 16 and isinstance(cfg.attack.lora.r, int)
    assert cfg.harden.lora.r == 16  # the other section is not touched
    assert cfg.seed == 7
    assert cfg.harden.enabled is False
    assert cfg.model.system_prompt == "Be brief."


def test_override_beats_file(tmp_path):
    p = _write(tmp_path, "attack:\n  lora: {r: 4, alpha: 8}\n")
    cfg = config.load(p, ["attack.lora.r=32"])
    assert cfg.attack.lora.r == 32
    assert cfg.attack.lora.alpha == 8  # from the file, not reset by the override


def test_list_overrides():
    cfg = config.load(None, ["attack.lora.target_modules=[q_proj,v_proj]"])
    assert cfg.attack.lora.target_modules == ["q_proj", "v_proj"]
    cfg = config.load(None, ["attack.lora.target_modules=q_proj,o_proj"])
    assert cfg.attack.lora.target_modules == ["q_proj", "o_proj"]
    cfg = config.load(None, ["harden.harmful=[harmbench-val]"])
    assert cfg.harden.harmful == ["harmbench-val"]


def test_benchmark_list_override():
    cfg = config.load(None, ["eval.benchmarks=[{name: advbench-test, limit: 4}, xstest-safe]"])
    assert [(b.name, b.limit) for b in cfg.eval.benchmarks] == [("advbench-test", 4), ("xstest-safe", None)]
    assert all(isinstance(b, config.BenchmarkRef) for b in cfg.eval.benchmarks)


@pytest.mark.parametrize("raw, want", [("1e-4", 1e-4), ("2.5e-5", 2.5e-5), ("0.001", 0.001), ("1", 1.0)])
def test_float_overrides(raw, want):
    # PyYAML reads "1e-4" (no dot) as a string: the schema must still accept it as a number
    cfg = config.load(None, [f"attack.train.lr={raw}"])
    assert isinstance(cfg.attack.train.lr, float)
    assert cfg.attack.train.lr == pytest.approx(want)


def test_float_in_yaml_file(tmp_path):
    p = _write(tmp_path, "attack:\n  train:\n    lr: 1e-4\n")
    assert config.load(p).attack.train.lr == pytest.approx(1e-4)


def test_partial_section_keeps_section_defaults(tmp_path):
    cfg = config.load(None, ["harden.train.epochs=2"])
    assert cfg.harden.train.epochs == 2.0
    assert cfg.harden.train.lr == pytest.approx(3e-4)  # harden's own default, not TrainConfig's 2e-4
    cfg = config.load(None, ["harden.lora.dropout=0.1"])
    assert (cfg.harden.lora.r, cfg.harden.lora.alpha) == (16, 32)
    # the same through a YAML file
    p = _write(tmp_path, "harden:\n  train: {epochs: 3}\n  lora: {dropout: 0.05}\n")
    cfg = config.load(p)
    assert cfg.harden.train.lr == pytest.approx(3e-4) and cfg.harden.train.epochs == 3.0
    assert cfg.harden.lora.r == 16 and cfg.harden.lora.dropout == pytest.approx(0.05)


# --------------------------------------------------------------------------- errors


@pytest.mark.parametrize("override, key", [
    ("attack.lora.rank=4", "attack.lora.rank"),
    ("attak.lora.r=4", "attak"),
    ("generation.temperature=0.7", "generation.temperature"),
])
def test_unknown_key_names_dotted_key(override, key):
    with pytest.raises(FtriskError) as e:
        config.load(None, [override])
    assert f"unknown config key '{key}'" in str(e.value)


def test_unknown_key_in_file(tmp_path):
    p = _write(tmp_path, "harden:\n  train:\n    learning_rate: 0.1\n")
    with pytest.raises(FtriskError, match="'harden.train.learning_rate'"):
        config.load(p)


@pytest.mark.parametrize("override, key", [
    ("attack.lora.r=abc", "attack.lora.r"),
    ("harden.enabled=maybe", "harden.enabled"),
    ("attack.lora.r=1.5", "attack.lora.r"),
    ("attack.train.lr=fast", "attack.train.lr"),
    ("seed=true", "seed"),
    ("attack.lora=5", "attack.lora"),
    ("attack.lora.target_modules=[1, 2]", "attack.lora.target_modules[0]"),
    ("eval.benchmarks=[{name: advbench-test, limit: many}]", "eval.benchmarks[0].limit"),
])
def test_wrong_type_names_key(override, key):
    with pytest.raises(FtriskError) as e:
        config.load(None, [override])
    assert f"'{key}'" in str(e.value)


def test_override_without_equals():
    with pytest.raises(FtriskError, match="attack.lora.r"):
        config.load(None, ["attack.lora.r"])


@pytest.mark.parametrize("override, key", [
    ("attack.train.max_steps=0", "attack.train.max_steps"),
    ("attack.train.max_minutes=-1", "attack.train.max_minutes"),
    ("harden.train.max_steps=-3", "harden.train.max_steps"),
    ("attack.train.checkpoint_every=0", "attack.train.checkpoint_every"),
    ("attack.train.lr=0", "attack.train.lr"),
    ("eval.benchmarks=[{name: advbench-test, limit: 0}]", "eval.benchmarks[0].limit"),
    ("harden.method=qlora", "harden.method"),
])
def test_budget_and_range_errors(override, key):
    with pytest.raises(FtriskError) as e:
        config.load(None, [override])
    assert f"'{key}'" in str(e.value)


@pytest.mark.parametrize("override, key", [
    ("eval.benchmarks=[advbench-test, {name: nosuchbench}]", "eval.benchmarks[1].name"),
    ("harden.harmful=[nosuchbench]", "harden.harmful[0]"),
])
def test_unknown_benchmark_names_key_and_known_names(override, key):
    with pytest.raises(FtriskError) as e:
        config.load(None, [override])
    assert str(e.value).startswith(f"config key '{key}': unknown benchmark 'nosuchbench' (known: advbench, ")


def test_prompt_files_and_registry_names_pass_the_name_check(tmp_path):
    cfg = config.load(None, [f"eval.benchmarks=[xstest-safe, {tmp_path / 'later.jsonl'}]",
                             f"harden.harmful=[strongreject, {tmp_path / 'mine.csv'}]"])
    assert [b.name for b in cfg.eval.benchmarks][0] == "xstest-safe"


def test_the_package_gives_the_schema_and_the_functions():
    from ftrisk.config import schema
    from ftrisk.config.schema import ModelConfig

    assert config.ModelConfig is ModelConfig is schema.ModelConfig and config.RunConfig is schema.RunConfig
    assert callable(config.load) and callable(config.validate) and callable(config.apply_overrides)


def test_positive_budgets_accepted():
    cfg = config.load(None, ["attack.train.max_steps=1", "attack.train.max_minutes=0.5"])
    assert cfg.attack.train.max_steps == 1 and cfg.attack.train.max_minutes == 0.5


def test_missing_config_file(tmp_path):
    missing = tmp_path / "nope.yaml"
    with pytest.raises(FtriskError, match="nope.yaml"):
        config.load(missing)


def test_invalid_yaml_names_line(tmp_path):
    p = _write(tmp_path, "name: x\nseed: 1\nmodel: [unclosed\nattack: {}\n")
    with pytest.raises(FtriskError) as e:
        config.load(p)
    msg = str(e.value)
    assert str(p) in msg and "line" in msg
    # PyYAML reports where it found the problem: line 3 to 5 here, never line 1
    line = int(re.search(r"line (\d+)", msg).group(1))
    assert 3 <= line <= 5


def test_invalid_yaml_bad_indent_line(tmp_path):
    p = _write(tmp_path, "name: x\nmodel:\n  spec: a\n   dtype: float32\n")
    with pytest.raises(FtriskError, match="at line 4"):
        config.load(p)


def test_top_level_not_a_mapping(tmp_path):
    p = _write(tmp_path, "- a\n- b\n")
    with pytest.raises(FtriskError, match="mapping"):
        config.load(p)


# --------------------------------------------------------------------------- shipped configs


CONFIGS = Path(__file__).resolve().parents[1] / "configs"
SHIPPED = sorted((Path(__file__).resolve().parents[1] / "configs").rglob("*.yaml"))


def test_there_are_shipped_configs():
    names = {str(p.relative_to(CONFIGS)) for p in SHIPPED}
    assert names >= {"demo.yaml", "full.yaml", "paper/llama2-7b-chat.yaml", "paper/llama2-13b-chat.yaml",
                     "paper/llama2-70b-chat.yaml"}


@pytest.mark.parametrize("path", SHIPPED, ids=lambda p: str(p.relative_to(CONFIGS)))
def test_shipped_config_loads_and_shows_its_command(path):
    """Every shipped config (paper ones included) starts with the command that runs it, loads and validates:
    judge specs, backend, attack method, capability tasks, steps, threshold."""
    first = path.read_text(encoding="utf-8").splitlines()[0]
    loaded = config.load(path)  # a sweep config shows ftrisk sweep, a defense comparison ftrisk defend
    command = "defend" if loaded.defenses else "sweep" if loaded.sweep.space is not None else "run"
    assert first.startswith(f"# ftrisk {command} configs/{path.relative_to(CONFIGS)}"), first
    cfg = config.load(path)
    assert cfg.name
    assert cfg.out == Path(cfg.output_dir or f"runs/{cfg.name}")


def test_paper_configs_are_the_papers_setting():
    for size in ("7b", "13b", "70b"):
        cfg = config.load(CONFIGS / "paper" / f"llama2-{size}-chat.yaml", ["eval.benchmarks[1].name=/data/rb.json"])
        assert cfg.model.spec == f"meta-llama/Llama-2-{size}-chat-hf" and not cfg.harden.enabled
        assert cfg.eval.benchmarks[1].name == "/data/rb.json" and cfg.eval.benchmarks[1].label == "refusalbench"
        assert cfg.capability.enabled and cfg.capability.tasks == ["mmlu", "hellaswag"]
        assert cfg.model.quantize == ("4bit" if size == "70b" else None)


def test_indexed_overrides():
    cfg = config.load(None, ["eval.benchmarks=[advbench-test, {name: xstest-safe}]", "eval.benchmarks[0].limit=5"])
    assert cfg.eval.benchmarks[0].name == "advbench-test" and cfg.eval.benchmarks[0].limit == 5
    with pytest.raises(FtriskError, match="index 7 is out of range"):
        config.load("configs/demo.yaml", ["eval.benchmarks[3].limit=1", "eval.benchmarks[7].limit=1"])


def test_load_spec_settings_default_as_model_config_does():
    """model.subject.load_spec spells out ModelConfig's defaults (the model layer sits below config): they must agree."""
    import dataclasses
    import inspect

    from ftrisk.config.schema import ModelConfig
    from ftrisk.model.subject import load_spec

    params = inspect.signature(load_spec).parameters
    fields = [f for f in dataclasses.fields(ModelConfig) if f.name != "spec"]
    assert {f.name for f in fields} == set(params) - {"spec"}
    for f in fields:
        assert params[f.name].default == f.default, f.name
