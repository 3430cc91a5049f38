"""The package's layering, checked from the source: nothing imports upward, no import cycles, small modules.

Layers, bottom to top (a module may import its own layer and those below):

    errors, devices, atomic_files, progress  ->  envs  ->  config  ->  data  ->  evaluation  ->  agents  ->  collect
    ->  pipeline, report  ->  cli

``evaluation`` sits below ``agents`` because training loops evaluate their ladder rungs and validation levels;
whatever needs a loaded run composes the two above them (``rlgen evaluate``, ``rlgen.pipeline.evaluate_run``).
Every import counts, function-level ones and string references (``"rlgen.x.y:f"``, ``import_module("rlgen.x")``)
included, for both rules: a lazy import that closes a cycle (as
``envs.splits`` -> ``envs.suites`` -> ``envs.leakage`` -> ``envs.splits`` did) is still a cycle.
"""

import ast
import re
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "rlgen"

#: Top-level part of ``rlgen.<part>`` -> its layer (higher imports lower, never the reverse).
LAYERS: dict[str, int] = {
    "errors": 0, "devices": 0, "atomic_files": 0, "progress": 0, "__init__": 0,
    "envs": 1,
    "config": 2,
    "data": 3,
    "evaluation": 4,
    "agents": 5,
    "collect": 6,
    "pipeline": 7, "report": 7,
    "cli": 8, "cli_enjoy": 8, "cli_datasets": 8,
}  # fmt: skip

#: Modules allowed past ~500 lines, each with its reason (empty: none is).
LONG_MODULES: dict[str, str] = {}
MAX_LINES = 500


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}
#: The third field of :func:`rlgen_imports` for a string reference: it counts for the layer rule, not for cycles
#: (a registry naming the modules it loads on demand, as ``envs.suites`` does its built-in suites, is the
#: plugin pattern: the registry does not need them to import).
REFERENCE_EDGE = "reference"
#: A string that names an rlgen module (``rlgen.a.b``) or a function in one (``rlgen.a.b:f``).
REFERENCE = re.compile(r"^rlgen(\.[A-Za-z_]\w*)+(:[A-Za-z_]\w*)?$")


def layer(module: str) -> int:
    part = module.split(".")[1] if "." in module else "__init__"
    assert part in LAYERS, f"{module}: rlgen.{part} has no layer in tests/test_layout.py's LAYERS; give it one"
    return LAYERS[part]


def resolve(module: str, node: ast.ImportFrom) -> str:
    """The absolute module an ImportFrom names (relative imports resolved against ``module``)."""
    if not node.level:
        return node.module or ""
    base = module.split(".")
    is_package = MODULES[module].name == "__init__.py"
    base = base[: len(base) - node.level + (1 if is_package else 0)]
    return ".".join(base + ([node.module] if node.module else []))


def rlgen_imports(module: str) -> list[tuple[str, int, bool]]:
    """``(imported rlgen module, line, at module level)`` for every import in ``module``; ``from pkg import
    name`` counts as importing ``pkg.name`` when that is a module."""
    tree = ast.parse(MODULES[module].read_text())
    top_level = {id(n) for n in tree.body} | {id(n) for s in tree.body if isinstance(s, (ast.If, ast.Try)) for n in ast.walk(s)}
    # only the body of `if TYPE_CHECKING:` is for type checkers (its else branch runs)
    type_checking = {id(n) for s in tree.body if isinstance(s, ast.If) and ast.unparse(s.test) in ("TYPE_CHECKING", "typing.TYPE_CHECKING")
                     for b in s.body for n in ast.walk(b)}  # fmt: skip
    out = []
    for node in ast.walk(tree):
        if id(node) in type_checking:
            continue
        names: list[str] = []
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and REFERENCE.match(node.value):
            # "rlgen.pkg.module:function" (the registry's lazy references) or importlib.import_module("rlgen.pkg"):
            # an import all the same, only resolved later
            target = node.value.partition(":")[0]
            target = target if target in MODULES else target.rpartition(".")[0]
            if target == "rlgen" or target.startswith("rlgen."):
                out.append((target, node.lineno, REFERENCE_EDGE))
            continue
        elif isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            target = resolve(module, node)
            names = [f"{target}.{a.name}" if f"{target}.{a.name}" in MODULES else target for a in node.names]
        for name in names:
            if name == "rlgen" or name.startswith("rlgen."):
                out.append((name, node.lineno, id(node) in top_level))
    return out


def test_every_module_has_a_layer():
    for module in MODULES:
        layer(module)


def test_nothing_imports_upward():
    upward = []
    for module in MODULES:
        for target, line, _ in rlgen_imports(module):
            if target in MODULES and layer(target) > layer(module):
                upward.append(f"{MODULES[module].relative_to(PACKAGE.parent)}:{line}: {module} (layer {layer(module)}) imports {target} (layer {layer(target)})")
    assert not upward, "imports going up the layer order:\n" + "\n".join(upward)


def module_graph(module_level_only: bool = False) -> dict[str, set[str]]:
    graph: dict[str, set[str]] = {m: set() for m in MODULES}
    for module in MODULES:
        for target, _, top in rlgen_imports(module):
            if top == REFERENCE_EDGE:
                continue
            if (top or not module_level_only) and target in MODULES and target != module:
                graph[module].add(target)
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                return stack[stack.index(nxt):] + [nxt]
            if nxt not in state:
                found = visit(nxt)
                if found:
                    return found
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state:
            found = visit(node)
            if found:
                return found
    return None


@pytest.mark.parametrize("module_level_only", [True, False], ids=["module-level imports", "all imports"])
def test_no_import_cycles(module_level_only):
    cycle = find_cycle(module_graph(module_level_only))
    assert cycle is None, "import cycle: " + " -> ".join(cycle or [])


def test_the_cycle_check_finds_a_cycle():
    graph = {"rlgen.envs.splits": {"rlgen.envs.suites"}, "rlgen.envs.suites": {"rlgen.envs.leakage"}, "rlgen.envs.leakage": {"rlgen.envs.splits"}}
    cycle = find_cycle(graph)
    assert cycle is not None and cycle[0] == cycle[-1] and set(cycle) == set(graph)
    assert find_cycle({"rlgen.a": {"rlgen.b"}, "rlgen.b": set()}) is None


@pytest.mark.parametrize("module", sorted(MODULES))
def test_modules_stay_small(module):
    lines = len(MODULES[module].read_text().splitlines())
    assert lines <= MAX_LINES or module in LONG_MODULES, f"{module} has {lines} lines (at most {MAX_LINES}): split it by job"


def test_the_layer_check_sees_function_level_imports(tmp_path, monkeypatch):
    # data importing collect inside a function is still an upward import (rlgen.data.collect did this: agents.ppo)
    source = "def f():\n    from rlgen.agents.ppo_sb3 import train_ppo\n    return train_ppo\n"
    fake = PACKAGE / "data" / "dataset.py"
    monkeypatch.setitem(MODULES, "rlgen.data.fake", tmp_path / "fake.py")
    (tmp_path / "fake.py").write_text(source)
    found = [(t, top) for t, _, top in rlgen_imports("rlgen.data.fake")]
    assert found == [("rlgen.agents.ppo_sb3", False)] and layer("rlgen.agents.ppo_sb3") > layer("rlgen.data.fake") and fake.is_file()
