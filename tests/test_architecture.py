"""The layout's rules, read from the source (no module is imported): the import graph has no cycle and no arrow
that runs up the layers, no module imports another's private name, modules stay small, and function-level imports
of ftrisk's own modules are left to the command line (which keeps ``ftrisk --help`` and one-line errors fast)."""

from __future__ import annotations

import ast
import statistics
import sys
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src"
PKG = SRC / "ftrisk"

#: Lowest first. An entry is a package or a module (dotted, under ftrisk); a module belongs to the longest entry that
#: names it. A module may import within its own entry and from lower layers, never from its layer or a higher one.
LAYERS = [
    {"errors"},
    {"io", "stats", "formatting", "tokens", "memory", "progress", "registry", "distributed", "cost", "logs"},
    {"keys", "provenance", "testing"},
    {"model", "prompts"},
    {"judges", "capability"},
    {"config"},
    {"generation", "training"},
    {"attacks", "defenses", "plan"},
    {"report", "bench"},
    {"pipeline"},
    {"sweep"},
    {"cli"},
    {"__main__"},
]
#: Arrows between entries of one layer that the design allows (importer, imported).
SIDEWAYS: set[tuple[str, str]] = set()
#: Pure data tables, exempt from the size limit.
DATA_TABLES = {"ftrisk.judges.patterns_data"}
MAX_LINES = 400
MEDIAN_LINES = 150


def _modules() -> dict[str, Path]:
    mods = {}
    for f in sorted(PKG.rglob("*.py")):
        if "data" in f.relative_to(PKG).parts[:1]:  # packaged data (lm-eval task helpers), not ftrisk's code
            continue
        name = ".".join(f.relative_to(SRC).with_suffix("").parts)
        mods[name.removesuffix(".__init__")] = f
    return mods


MODS = _modules()


def _package(mod: str) -> str:
    parts = mod.split(".")
    return parts[1] if len(parts) > 1 else ""


def _entry(mod: str) -> str:
    """The LAYERS entry a module belongs to (its longest dotted prefix named there)."""
    rel = mod.split(".")[1:]
    for n in range(len(rel), 0, -1):
        name = ".".join(rel[:n])
        if any(name in layer for layer in LAYERS):
            return name
    raise AssertionError(f"'{mod}' is in no layer of tests/test_architecture.py: place its package")


def _imports(mod: str, f: Path):
    """(target module, imported names, at function level, line) for each import of an ftrisk module."""
    tree = ast.parse(f.read_text(encoding="utf-8"))
    nested = {id(n) for fn in ast.walk(tree) if isinstance(fn, (ast.FunctionDef, ast.AsyncFunctionDef))
              for n in ast.walk(fn) if n is not fn}
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0 and node.module.split(".")[0] == "ftrisk":
            for a in node.names:
                sub = f"{node.module}.{a.name}"
                if sub in MODS:
                    yield sub, [], id(node) in nested, node.lineno
                else:
                    yield node.module, [a.name], id(node) in nested, node.lineno
        elif isinstance(node, ast.Import):
            for a in node.names:
                if a.name.split(".")[0] == "ftrisk":
                    yield a.name, [], id(node) in nested, node.lineno
        elif isinstance(node, ast.ImportFrom) and node.level:
            yield f"<relative import in {mod}>", [], id(node) in nested, node.lineno


def _edges():
    out = []
    for mod, f in MODS.items():
        for target, names, nested, line in _imports(mod, f):
            out.append((mod, target, names, nested, line))
    return out


EDGES = _edges()


def _layer(entry: str) -> int:
    return next(i for i, layer in enumerate(LAYERS) if entry in layer)


def test_imports_are_absolute():
    assert [e for e in EDGES if e[1].startswith("<relative")] == []


def test_every_package_has_a_layer():
    for mod in MODS:
        if mod != "ftrisk":
            _entry(mod)


def test_no_import_cycle():
    graph: dict[str, set[str]] = {m: set() for m in MODS}
    for mod, target, _, _, _ in EDGES:
        while target not in MODS and "." in target:
            target = target.rsplit(".", 1)[0]
        if target in MODS and target != mod and not MODS[target].name == "__init__.py":
            graph[mod].add(target)
    # Tarjan's strongly connected components
    index, low, stack, on, cycles, counter = {}, {}, [], set(), [], [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                cycles.append(sorted(comp))

    for v in graph:
        if v not in index:
            visit(v)
    assert cycles == []


def test_no_arrow_runs_up_the_layers():
    bad = []
    for mod, target, _, _, line in EDGES:
        if target == "ftrisk" or mod == "ftrisk":
            continue
        a, b = _entry(mod), _entry(target)
        if a == b or (a, b) in SIDEWAYS:
            continue
        if _layer(b) >= _layer(a):
            bad.append(f"{mod}:{line} imports {target} ({a} is layer {_layer(a)}, {b} layer {_layer(b)})")
    assert bad == []


def test_no_module_imports_another_modules_private_name():
    bad = [f"{mod}:{line} imports {names[0]} from {target}" for mod, target, names, _, line in EDGES
           if names and names[0].startswith("_") and not names[0].startswith("__") and target != mod]
    assert bad == []


def test_function_level_imports_of_ftrisk_only_in_the_command_line():
    """Elsewhere a function-level import of an ftrisk module hides an arrow (often a cycle); the command line
    imports a command's machinery only when that command runs."""
    bad = [f"{mod}:{line} imports {target} inside a function" for mod, target, _, nested, line in EDGES
           if nested and _package(mod) not in ("cli", "__main__")]
    assert bad == []


def test_modules_stay_small():
    lines = {m: sum(1 for _ in open(f, encoding="utf-8")) for m, f in MODS.items() if f.name != "__init__.py"}
    big = {m: n for m, n in lines.items() if n > MAX_LINES and m not in DATA_TABLES}
    assert big == {}
    assert statistics.median(lines.values()) <= MEDIAN_LINES


@pytest.mark.parametrize("rule", [test_no_import_cycle, test_no_arrow_runs_up_the_layers])
def test_the_rules_catch_a_planted_violation(rule, monkeypatch):
    """The checks above can fail: an arrow from the lowest layer up to a pipeline module, which imports it, breaks
    both."""
    high = next(m for m, f in MODS.items() if _package(m) == "pipeline" and f.name != "__init__.py")
    planted = [("ftrisk.errors", high, [], False, 1), (high, "ftrisk.errors", [], False, 1)]
    monkeypatch.setattr(sys.modules[__name__], "EDGES", EDGES + planted)
    with pytest.raises(AssertionError):
        rule()
