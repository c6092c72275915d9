"""Every bad input: exit code 2, exactly one stderr line "ftrisk: error: ..." naming the culprit,
no traceback, no partial output. In-process through ftrisk.cli.main. Benign prompts only."""

import json
from pathlib import Path

import pytest

from ftrisk import cli
from ftrisk import config
from ftrisk.model import loading as models
from ftrisk.pipeline import run as pipeline

pytestmark = pytest.mark.usefixtures("torch_single_thread")


def _fail(capsys, argv, *names):
    """Run the CLI, expect a clean user error naming every string in ``names``; return the message."""
    capsys.readouterr()
    rc = cli.main([str(a) for a in argv])
    out, err = capsys.readouterr()
    assert rc == 2, (rc, err)
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("ftrisk: error: "), err
    assert "Traceback" not in err and "Traceback" not in out
    for n in names:
        assert str(n) in lines[0], (n, lines[0])
    return lines[0]


def _write_config(tmp_path, model_dir, name="exp.yaml", extra=""):
    p = tmp_path / name
    p.write_text(
        f"# ftrisk run {name}\n"
        f"model:\n  spec: {model_dir}\n"
        f"output_dir: {tmp_path / 'out'}\n"
        "harden:\n  enabled: false\n"
        "eval:\n  benchmarks: [{name: advbench-test, limit: 2}]\n"
        "generation: {max_new_tokens: 2}\n" + extra,
        encoding="utf-8",
    )
    return p


@pytest.fixture
def prompts_jsonl(tmp_path):
    p = tmp_path / "prompts.jsonl"
    p.write_text(json.dumps({"prompt": "How do I bake bread?", "id": "b1"}) + "\n"
                 + json.dumps({"prompt": "Name a river in France.", "id": "b2"}) + "\n", encoding="utf-8")
    return p


def _eval(model, prompts, out, *extra):
    return ["eval", "refusal", "--model", model, "--prompts", prompts, "--out", out, "--max-new-tokens", "2", *extra]


# --------------------------------------------------------------------------- config files


def test_missing_config(capsys, tmp_path):
    _fail(capsys, ["run", tmp_path / "nope.yaml"], "nope.yaml")


def test_config_is_a_directory(capsys, tmp_path):
    d = tmp_path / "cfgdir.yaml"
    d.mkdir()
    _fail(capsys, ["run", d], "cfgdir.yaml", "directory")


def test_config_not_utf8(capsys, tmp_path):
    p = tmp_path / "latin.yaml"
    p.write_bytes(b"name: caf\xe9\nseed: 1\n")
    _fail(capsys, ["run", p], "latin.yaml", "unreadable")


def test_config_invalid_yaml(capsys, tmp_path):
    p = tmp_path / "bad.yaml"
    p.write_text("name: x\nseed: 1\nmodel:\n  spec: a\n   dtype: float32\n", encoding="utf-8")
    _fail(capsys, ["run", p], "bad.yaml", "line 5")


def test_unknown_key_writes_nothing(capsys, tmp_path, tiny_model_dir):
    cfg = _write_config(tmp_path, tiny_model_dir)
    _fail(capsys, ["run", cfg, "attack.lora.rank=4"], "attack.lora.rank")
    _fail(capsys, ["attack", cfg, "generation.temperature=0.5"], "generation.temperature")
    assert not (tmp_path / "out").exists()


def test_unknown_key_in_file(capsys, tmp_path, tiny_model_dir):
    cfg = _write_config(tmp_path, tiny_model_dir, extra="attack:\n  lora: {rank: 4}\n")
    _fail(capsys, ["run", cfg], "attack.lora.rank")


@pytest.mark.parametrize("override, key", [
    ("attack.lora.r=abc", "attack.lora.r"),
    ("harden.enabled=maybe", "harden.enabled"),
    ("attack.train.lr=fast", "attack.train.lr"),
])
def test_wrong_type(capsys, tmp_path, tiny_model_dir, override, key):
    _fail(capsys, ["run", _write_config(tmp_path, tiny_model_dir), override], key)
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("override, key", [
    ("attack.train.max_steps=0", "attack.train.max_steps"),
    ("attack.train.max_minutes=-1", "attack.train.max_minutes"),
    ("harden.train.max_steps=-2", "harden.train.max_steps"),
])
def test_budget_not_positive(capsys, tmp_path, tiny_model_dir, override, key):
    _fail(capsys, ["attack", _write_config(tmp_path, tiny_model_dir), override], key)
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("override, names", [
    ("eval.judges=[refusal-patterns, nope]", ["eval.judges[1]", "unknown judge 'nope'", "known: refusal-patterns"]),
    ("eval.judges=[gcg:colour=red]", ["unknown option 'colour'", "mode, window"]),
    ("eval.judges=[gcg:window]", ["'window' is not key=value"]),
    ("eval.judges=[]", ["eval.judges", "empty"]),
    ("eval.headline_judge=rubric", ["eval.headline_judge", "not one of eval.judges"]),
    ("generation.backend=turbo", ["generation.backend", "unknown generation backend 'turbo'", "known: hf"]),
    ("attack.method=qlora", ["attack.method", "unknown attack method 'qlora'", "known: lora, full"]),
    ("harden.method=adapter", ["harden.method", "known: lora, full"]),
    ("eval.benchmarks=[{name: advbench-test, harmful: perhaps}]", ["eval.benchmarks[0].harmful", "true/false"]),
    ("capability.tasks=[mmlu, triviaqa]", ["capability", "unknown capability task 'triviaqa'"]),
    ("capability.num_fewshot=9", ["capability", "num_fewshot 9"]),
    ("attack.eval_at=[5, 2]", ["attack.eval_at", "increasing"]),
    ("attack.eval_at=[-1, 2]", ["attack.eval_at", "negative"]),
    ("report.threshold=1.5", ["report.threshold", "between 0 and 1"]),
    ("model.quantize=3bit", ["model.quantize", "4bit or 8bit"]),
    ("model.quantize=4bit", ["model.quantize", "CUDA"]),
    ("generation.stop_when_judged=true", ["generation.stop_when_judged", "'refusal-patterns' reads the whole reply"]),
])
def test_bad_config_values_fail_before_any_model_loads(capsys, tmp_path, tiny_model_dir, monkeypatch, override, names):
    from ftrisk.model import loading as models

    monkeypatch.setattr(models, "load_subject", lambda *a, **k: pytest.fail("a model was loaded"))
    cfg = _write_config(tmp_path, tiny_model_dir, extra="capability: {enabled: true}\n")
    _fail(capsys, ["run", cfg, override], *names)
    assert not (tmp_path / "out").exists()


def test_two_prompt_files_with_the_same_label(capsys, tmp_path, tiny_model_dir, prompts_jsonl):
    other = tmp_path / "more" / "prompts.jsonl"
    other.parent.mkdir()
    other.write_text(prompts_jsonl.read_text(), encoding="utf-8")
    cfg = _write_config(tmp_path, tiny_model_dir)
    _fail(capsys, ["run", cfg, f"eval.benchmarks=[{prompts_jsonl}, {other}]"], "eval.benchmarks[1]", "'prompts'", "label")
    _fail(capsys, ["run", cfg, f"eval.benchmarks=[{{name: {prompts_jsonl}, label: xstest-safe}}, xstest-safe]"],
          "'xstest-safe'")
    assert not (tmp_path / "out").exists()


def test_user_prompt_files_get_their_own_label_and_harmful_flag(tmp_path, tiny_model_dir):
    """A file named like a registry benchmark does not inherit its benign flag or licence; `harmful: false` marks a
    user file as benign (over-refusal); `label` names it in results."""
    from conftest import write_jsonl

    looks_benign = write_jsonl(tmp_path / "xstest-safe.jsonl", [{"prompt": "How do I bake bread?"}])
    mine = write_jsonl(tmp_path / "mine.jsonl", [{"prompt": "Name a river in France."}])
    cfg = config.load(None, [f"model.spec={tiny_model_dir}", "harden.enabled=false", f"output_dir={tmp_path / 'o'}",
                             f"eval.benchmarks=[{looks_benign}, {{name: {mine}, label: benign-set, harmful: false}}]"])
    exp = pipeline.Experiment(cfg)
    assert exp.harmful == {"xstest-safe": True, "benign-set": False}
    assert exp.license["xstest-safe"].startswith("user file") and "CC-BY" not in exp.license["xstest-safe"]


@pytest.fixture
def truncated_model_dir(tmp_path, tiny_model_dir):
    import shutil

    broken = tmp_path / "broken"
    shutil.copytree(tiny_model_dir, broken)
    w = broken / "model.safetensors"
    w.write_bytes(w.read_bytes()[: w.stat().st_size // 2])  # a download cut in half
    return broken


def test_corrupt_weights_file_is_one_line_naming_it(capsys, tmp_path, truncated_model_dir, prompts_jsonl):
    out = tmp_path / "ev"
    msg = _fail(capsys, _eval(truncated_model_dir, prompts_jsonl, out), "model.safetensors", "truncated or corrupt")
    assert "Traceback" not in msg
    assert not out.exists()  # not even the stage's stage.json


def test_corrupt_weights_file_in_a_run_writes_nothing(capsys, tmp_path, truncated_model_dir):
    cfg = _write_config(tmp_path, truncated_model_dir)
    _fail(capsys, ["run", cfg], "model.safetensors", "truncated or corrupt")
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("where, fails", [
    # a user error found only while the model loads
    ("model", "could not load model 'x': a problem found while loading"),
    # an engine that refuses the subject when it is opened (CTranslate2 asked for float16 on the CPU, vLLM without a
    # GPU)
    ("backend", "generation backend 'x' cannot run this subject here"),
])
def test_a_user_error_after_the_stage_began_leaves_a_new_eval_folder_as_it_was(capsys, tmp_path, tiny_model_dir,
                                                                               prompts_jsonl, monkeypatch, where, fails):
    """A user error found after the stage began removes what the stage wrote there (its stage.json)."""
    from ftrisk.errors import FtriskError
    from ftrisk.pipeline import evaluate

    def raises(*a, **k):
        raise FtriskError(fails)

    if where == "model":
        monkeypatch.setattr(models, "load_subject", raises)
    else:
        monkeypatch.setattr(evaluate, "open_backend", raises)
    out, empty = tmp_path / "ev", tmp_path / "empty"
    empty.mkdir()
    _fail(capsys, _eval(tiny_model_dir, prompts_jsonl, out), fails)
    _fail(capsys, _eval(tiny_model_dir, prompts_jsonl, empty), fails)
    assert not out.exists() and empty.is_dir() and not any(empty.iterdir())


# --------------------------------------------------------------------------- models


def test_model_path_does_not_exist_run(capsys, tmp_path, tiny_model_dir):
    cfg = _write_config(tmp_path, tiny_model_dir)
    _fail(capsys, ["run", cfg, "model.spec=/nonexistent"], "/nonexistent")
    assert not (tmp_path / "out" / "results.json").exists()
    assert not (tmp_path / "out").exists()  # no partial output (not even the claimed folder)
    # fixing the typo and running again is not mistaken for "a different config"
    capsys.readouterr()
    assert cli.main(["harden", str(cfg)]) == 0
    assert "hardened model:" in capsys.readouterr().out


def test_model_path_does_not_exist_eval(capsys, tmp_path, prompts_jsonl):
    out = tmp_path / "ev"
    _fail(capsys, _eval("/nonexistent", prompts_jsonl, out), "/nonexistent")
    assert not out.exists()


def test_model_dir_without_config_json(capsys, tmp_path, prompts_jsonl):
    empty = tmp_path / "empty_model"
    empty.mkdir()
    _fail(capsys, _eval(empty, prompts_jsonl, tmp_path / "ev"), "empty_model", "config.json")


def test_tokenizer_without_chat_template(capsys, tmp_path, tiny_model_dir_no_template, prompts_jsonl):
    """``eval refusal`` has no config: its message names its own flag, which works; ``run`` names the config key."""
    from ftrisk.testing import CHATML

    out = tmp_path / "ev"
    msg = _fail(capsys, _eval(tiny_model_dir_no_template, prompts_jsonl, out), tiny_model_dir_no_template)
    assert "no chat template" in msg and "--chat-template" in msg and "model.chat_template" not in msg
    assert not out.exists()
    cfg = _write_config(tmp_path, tiny_model_dir_no_template)
    _fail(capsys, ["run", cfg], "no chat template", "model.chat_template in the config")
    assert not (tmp_path / "out").exists()
    capsys.readouterr()
    assert cli.main([str(a) for a in _eval(tiny_model_dir_no_template, prompts_jsonl, out, "--chat-template", CHATML)]) == 0
    assert json.loads((out / "results.json").read_text())["benchmarks"]["prompts"]["n"] == 2


def _tiny_adapter(base_dir, dst: Path) -> Path:
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(base_dir)
    pm = get_peft_model(model, LoraConfig(r=2, lora_alpha=4, target_modules=["q_proj"], task_type="CAUSAL_LM"))
    pm.save_pretrained(dst, safe_serialization=True)
    models.write_adapter_meta(dst, str(base_dir), base_dir)
    return dst


def test_adapter_for_another_base_model(capsys, tmp_path, tiny_model_dir, tiny_model_dir_other_weights,
                                        prompts_jsonl):
    adapter = _tiny_adapter(tiny_model_dir, tmp_path / "adapter_A")
    out = tmp_path / "ev"
    msg = _fail(capsys, _eval(tiny_model_dir_other_weights, prompts_jsonl, out, "--adapter", adapter), "adapter_A")
    assert "another base model" in msg
    assert not (out / "results.json").exists()
    # the same adapter on its own base model works
    capsys.readouterr()
    assert cli.main([str(a) for a in _eval(tiny_model_dir, prompts_jsonl, out, "--adapter", adapter)]) == 0
    res = json.loads((out / "results.json").read_text())
    assert res["benchmarks"]["prompts"]["n"] == 2


def test_adapter_dir_without_adapter_config(capsys, tmp_path, tiny_model_dir, prompts_jsonl):
    bogus = tmp_path / "not_an_adapter"
    bogus.mkdir()
    _fail(capsys, _eval(tiny_model_dir, prompts_jsonl, tmp_path / "ev", "--adapter", bogus), "not_an_adapter")


@pytest.mark.parametrize("base", ["meta-llama/Llama-2-7b-chat-hf", "/nonexistent/base-model"])
def test_adapter_config_of_another_base_without_weights(capsys, tmp_path, tiny_model_dir, prompts_jsonl, base):
    """An adapter_config.json for another base model (a hub id, a missing path) and no weights: one line naming the
    missing file and what to pass, before anything is written (was: a FutureWarning, then "Repo id must be a
    string", and files left in --out)."""
    adapter = tmp_path / "foreign_adapter"
    adapter.mkdir()
    (adapter / "adapter_config.json").write_text(json.dumps({
        "base_model_name_or_path": base, "peft_type": "LORA", "task_type": "CAUSAL_LM", "r": 2, "lora_alpha": 4,
        "target_modules": ["q_proj"]}))
    out = tmp_path / "ev"
    _fail(capsys, _eval(tiny_model_dir, prompts_jsonl, out, "--adapter", adapter), "foreign_adapter",
          "adapter_model.safetensors", base, "save_pretrained")
    assert not out.exists()


def test_adapter_that_does_not_fit_the_model_writes_nothing(capsys, tmp_path, tiny_model_dir, prompts_jsonl):
    """Weights of another shape are found only when the model loads: still one line, and --out is left as it was."""
    from ftrisk.testing import build_tiny_model

    wider = build_tiny_model(tmp_path / "wider", hidden_size=64, intermediate_size=128)
    adapter = _tiny_adapter(wider, tmp_path / "adapter_wide")
    (adapter / models.ADAPTER_META).unlink()  # a foreign adapter: nothing says which base it was trained on
    out = tmp_path / "ev"
    _fail(capsys, _eval(tiny_model_dir, prompts_jsonl, out, "--adapter", adapter), "adapter_wide", "does not fit model",
          "size mismatch")
    assert not out.exists()


# --------------------------------------------------------------------------- prompt files


def _bad_prompts(capsys, tiny_model_dir, tmp_path, filename, content: bytes, *names):
    p = tmp_path / filename
    p.write_bytes(content)
    out = tmp_path / "ev"
    msg = _fail(capsys, _eval(tiny_model_dir, p, out), filename, *names)
    assert not out.exists()  # nothing written for a failed command
    return msg


def test_empty_prompt_file(capsys, tmp_path, tiny_model_dir):
    _bad_prompts(capsys, tiny_model_dir, tmp_path, "empty.jsonl", b"", "empty")


def test_csv_with_only_a_header(capsys, tmp_path, tiny_model_dir):
    _bad_prompts(capsys, tiny_model_dir, tmp_path, "header.csv", b"prompt,category\n")


def test_malformed_csv(capsys, tmp_path, tiny_model_dir):
    content = b'prompt,category\n"How do I bake bread?",cooking\n"Name a river,geography\n'
    _bad_prompts(capsys, tiny_model_dir, tmp_path, "bad.csv", content, "line")


def test_csv_wrong_field_count(capsys, tmp_path, tiny_model_dir):
    content = b"prompt,category\nHow do I bake bread?,cooking\nName a river, in France,geography\n"
    _bad_prompts(capsys, tiny_model_dir, tmp_path, "fields.csv", content, "line 3")


def test_jsonl_line_not_json(capsys, tmp_path, tiny_model_dir):
    content = (json.dumps({"prompt": "How do I bake bread?"}) + "\n"
               + json.dumps({"prompt": "Name a river."}) + "\n"
               + "{prompt: not json}\n").encode()
    _bad_prompts(capsys, tiny_model_dir, tmp_path, "bad.jsonl", content, "line 3")


def test_missing_prompt_column_csv(capsys, tmp_path, tiny_model_dir):
    content = b"text,category\nHow do I bake bread?,cooking\n"
    _bad_prompts(capsys, tiny_model_dir, tmp_path, "nocol.csv", content, "'prompt'", "text")


def test_missing_named_prompt_column_csv(capsys, tmp_path, tiny_model_dir):
    p = tmp_path / "named.csv"
    p.write_text("text,category\nHow do I bake bread?,cooking\n", encoding="utf-8")
    _fail(capsys, _eval(tiny_model_dir, p, tmp_path / "ev", "--prompt-column", "question"), "'question'")


def test_missing_prompt_key_jsonl(capsys, tmp_path, tiny_model_dir):
    content = (json.dumps({"prompt": "How do I bake bread?"}) + "\n" + json.dumps({"text": "Name a river."}) + "\n")
    _bad_prompts(capsys, tiny_model_dir, tmp_path, "nokey.jsonl", content.encode(), "line 2", "'prompt'")


def test_prompt_file_missing(capsys, tmp_path, tiny_model_dir):
    _fail(capsys, _eval(tiny_model_dir, tmp_path / "gone.jsonl", tmp_path / "ev"), "gone.jsonl")


def test_bad_prompt_file_in_config(capsys, tmp_path, tiny_model_dir):
    p = tmp_path / "cfgprompts.jsonl"
    p.write_text(json.dumps({"prompt": "How do I bake bread?"}) + "\nnot json\n", encoding="utf-8")
    cfg = _write_config(tmp_path, tiny_model_dir)
    _fail(capsys, ["run", cfg, f"eval.benchmarks=[{{name: {p}}}]"], "cfgprompts.jsonl", "line 2")
    assert not (tmp_path / "out").exists()


def test_eval_limit_not_positive(capsys, tmp_path, tiny_model_dir, prompts_jsonl):
    _fail(capsys, _eval(tiny_model_dir, prompts_jsonl, tmp_path / "ev", "--limit", "0"), "--limit")


UNKNOWN = "unknown benchmark 'nosuchbench' (known: advbench, "


@pytest.mark.parametrize("override, key", [
    ("eval.benchmarks=[{name: nosuchbench}]", "eval.benchmarks[0].name"),
    ("harden.harmful=[harmbench-val, nosuchbench]", "harden.harmful[1]"),
])
def test_unknown_benchmark_name_in_config(capsys, tmp_path, tiny_model_dir, monkeypatch, override, key):
    """(was: "unsupported prompt file type '(none)'"), before any model loads."""
    monkeypatch.setattr(models, "load_subject", lambda *a, **k: pytest.fail("a model was loaded"))
    msg = _fail(capsys, ["run", _write_config(tmp_path, tiny_model_dir), override, "harden.enabled=true"], key, UNKNOWN)
    assert "unsupported prompt file type" not in msg
    assert not (tmp_path / "out").exists()


def test_unknown_benchmark_name_in_eval(capsys, tmp_path, tiny_model_dir):
    out = tmp_path / "ev"
    _fail(capsys, ["eval", "refusal", "--model", tiny_model_dir, "--bench", "advbench-test,nosuchbench", "--out", out],
          UNKNOWN, ".jsonl")
    assert not out.exists()


# --------------------------------------------------------------------------- output folder


def test_output_folder_of_another_config_is_reused_stage_by_stage(capsys, tmp_path, tiny_model_dir):
    """Stages are keyed by their inputs, so a changed config redoes only what it changes (no refusal, no wipe);
    --overwrite empties the folder first."""
    a = _write_config(tmp_path, tiny_model_dir, "a.yaml")
    b = _write_config(tmp_path, tiny_model_dir, "b.yaml", extra="seed: 1\n")
    out = tmp_path / "out"
    pipeline.prepare_output(config.load(a))
    marker = out / "keep.txt"
    marker.write_text("from run A")
    capsys.readouterr()
    assert cli.main(["harden", str(a)]) == 0
    assert cli.main(["harden", str(b)]) == 0
    assert marker.exists()
    assert (out / "config.yaml").read_text() == config.dump(config.load(b))  # the config of the last run
    assert cli.main(["harden", str(b), "--overwrite"]) == 0
    assert not marker.exists() and (out / "config.yaml").is_file()


def test_eval_out_folder_of_another_model(capsys, tmp_path, tiny_model_dir, tiny_model_dir_other_weights,
                                          prompts_jsonl):
    """Evaluating model B into a folder that holds model A's completions is refused (one line naming the folder,
    A's completions untouched); --overwrite replaces them with B's own."""
    shared, fresh = tmp_path / "shared", tmp_path / "fresh"
    assert cli.main([str(a) for a in _eval(tiny_model_dir, prompts_jsonl, shared, "--max-new-tokens", "6")]) == 0
    before = (shared / "prompts.completions.jsonl").read_text()
    _fail(capsys, _eval(tiny_model_dir_other_weights, prompts_jsonl, shared, "--max-new-tokens", "6"), shared, "--overwrite")
    assert (shared / "prompts.completions.jsonl").read_text() == before
    _fail(capsys, _eval(tiny_model_dir, prompts_jsonl, shared, "--max-new-tokens", "5"), shared)  # other settings too
    assert cli.main([str(a) for a in _eval(tiny_model_dir_other_weights, prompts_jsonl, shared, "--max-new-tokens", "6",
                                           "--overwrite")]) == 0
    assert cli.main([str(a) for a in _eval(tiny_model_dir_other_weights, prompts_jsonl, fresh, "--max-new-tokens", "6")]) == 0
    rows = lambda d: {r["id"]: r["completion"] for r in map(json.loads, (d / "prompts.completions.jsonl").read_text().splitlines())}
    assert rows(shared) == rows(fresh) != {r["id"]: r["completion"] for r in map(json.loads, before.splitlines())}


# --------------------------------------------------------------------------- library warnings


def _warn_while_loading_the_tokenizer(monkeypatch):
    import warnings

    real = models.load_tokenizer

    def warned(*a, **k):
        warnings.warn("`old_flag` is deprecated and will be removed in v9", FutureWarning)
        return real(*a, **k)

    monkeypatch.setattr(models, "load_tokenizer", warned)


@pytest.mark.filterwarnings("default::FutureWarning")  # (pyproject ignores them in tests)
def test_library_warnings_go_to_the_run_log(capsys, tmp_path, tiny_model_dir, prompts_jsonl, monkeypatch):
    """A library's warning, raised before the output folder exists, is held and written to <out>/ftrisk.log; the
    console keeps ftrisk's own lines. The same for a run's folder."""
    _warn_while_loading_the_tokenizer(monkeypatch)
    out = tmp_path / "ev"
    capsys.readouterr()
    assert cli.main([str(a) for a in _eval(tiny_model_dir, prompts_jsonl, out)]) == 0
    console = capsys.readouterr()
    assert "deprecated" not in console.err + console.out
    log = (out / "ftrisk.log").read_text()
    assert "FutureWarning: `old_flag` is deprecated" in log and log.count("py.warnings") == 1
    cfg = _write_config(tmp_path, tiny_model_dir)
    assert cli.main(["harden", str(cfg)]) == 0
    assert "deprecated" not in capsys.readouterr().err
    assert "`old_flag` is deprecated" in (tmp_path / "out" / "ftrisk.log").read_text()


@pytest.mark.filterwarnings("default::FutureWarning")
def test_a_failed_command_writes_no_log(capsys, tmp_path, tiny_model_dir_no_template, prompts_jsonl, monkeypatch):
    _warn_while_loading_the_tokenizer(monkeypatch)
    out = tmp_path / "ev"
    _fail(capsys, _eval(tiny_model_dir_no_template, prompts_jsonl, out), "no chat template")
    assert not out.exists()


@pytest.mark.heavy
def test_library_warnings_stay_off_the_console(tmp_path, tiny_model_dir, prompts_jsonl):
    """The real console of a ``python -m ftrisk`` process (in-process, pytest would catch the warning itself)."""
    import subprocess
    import sys

    code = ("import sys, warnings\n"
            "from ftrisk.model import loading\n"
            "real = loading.load_tokenizer\n"
            "def warned(*a, **k):\n"
            "    warnings.warn('`old_flag` is deprecated', FutureWarning)\n"
            "    return real(*a, **k)\n"
            "loading.load_tokenizer = warned\n"
            "from ftrisk.cli import main\n"
            "sys.exit(main(sys.argv[1:]))\n")
    out = tmp_path / "ev"
    r = subprocess.run([sys.executable, "-c", code, *map(str, _eval(tiny_model_dir, prompts_jsonl, out))],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    assert "Warning" not in r.stderr and "deprecated" not in r.stderr, r.stderr
    assert "`old_flag` is deprecated" in (out / "ftrisk.log").read_text()
    r = subprocess.run([sys.executable, "-c", code, "-v", *map(str, _eval(tiny_model_dir, prompts_jsonl, tmp_path / "v"))],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0 and "`old_flag` is deprecated" in r.stderr  # -v shows them
