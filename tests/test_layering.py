"""The package's wings import only wings below them, and no module imports itself back.

The order is documented in ARCHITECTURE.md. Imports are read from the source with
``ast`` (those inside functions too: a lazy import is still a dependency), so the test
needs nothing installed and names the two files of every offending import.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "ganno_bench"

# Wings, lowest first: a module may import its own wing and the wings before it.
WINGS = ("data", "inner", "envs", "agents", "benchmark", "baselines", "experiments", "cli")
# Top-level modules: the version sits below everything, the package's front door above.
BOTTOM = ("version",)
TOP = ("__init__",)


def module_name(path: Path, package: Path) -> str:
    parts = path.relative_to(package.parent).with_suffix("").parts
    return ".".join(parts)


def imported_modules(path: Path, name: str, known: set[str]) -> set[str]:
    """The package's modules that ``path`` imports (``from pkg import sub`` counts as
    importing ``pkg.sub`` when that is a module, else ``pkg`` itself)."""
    tree = ast.parse(path.read_text(), filename=str(path))
    package_of = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()
    root = next(iter(known)).split(".")[0]
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package_of.split(".")[: len(package_of.split(".")) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            targets = [f"{base}.{alias.name}" if f"{base}.{alias.name}" in known else base
                       for alias in node.names]
        else:
            continue
        for target in targets:
            if target.split(".")[0] != root:
                continue
            while target and target not in known:
                target = target.rpartition(".")[0]
            if target and target != name:
                found.add(target)
    return found


def import_graph(package: Path) -> dict[str, set[str]]:
    files = {module_name(p, package): p for p in package.rglob("*.py")}
    names = {n.removesuffix(".__init__") for n in files}
    graph = {}
    for name, path in files.items():
        short = name.removesuffix(".__init__")
        graph[short] = imported_modules(path, short, names)
    return graph


def rank(module: str, root: str) -> float:
    """Position of a module's wing in the order (top-level modules at the ends)."""
    parts = module.split(".")
    if len(parts) == 1:  # the package itself: its __init__
        return len(WINGS)
    wing = parts[1]
    if wing in BOTTOM:
        return -1
    if wing in WINGS:
        return WINGS.index(wing)
    raise AssertionError(
        f"{module} is in no wing: put it in one of {WINGS} (or list it in BOTTOM/TOP with "
        "a reason in ARCHITECTURE.md)"
    )


def file_of(module: str, package: Path) -> str:
    """The file behind ``module``, relative to the package's parent folder."""
    parts = module.split(".")[1:]
    path = package.joinpath(*parts).with_suffix(".py") if parts else package / "__init__.py"
    if not path.exists():
        path = package.joinpath(*parts, "__init__.py")
    return path.relative_to(package.parent).as_posix()


def upward_imports(graph: dict[str, set[str]], package: Path) -> list[str]:
    root = package.name
    problems = []
    for module, targets in sorted(graph.items()):
        for target in sorted(targets):
            if rank(target, root) > rank(module, root):
                problems.append(
                    f"{file_of(module, package)} imports {file_of(target, package)}: "
                    f"wing {target.split('.')[1] if '.' in target else target!r} is above "
                    f"{module.split('.')[1] if '.' in module else module!r}"
                )
    return problems


def import_cycles(graph: dict[str, set[str]], package: Path) -> list[str]:
    """One message per strongly connected group of modules that import each other
    (the package's own ``__init__`` importing its submodules is not a cycle)."""
    def edges(module: str) -> set[str]:
        # a package __init__ may import its own submodules; submodules importing the
        # package __init__ close the cycle and are reported
        return graph.get(module, set())

    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    groups: list[list[str]] = []
    counter = [0]

    def visit(v: str) -> None:
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on_stack.add(v)
        for w in edges(v):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            group = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                group.append(w)
                if w == v:
                    break
            if len(group) > 1:
                groups.append(sorted(group))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    messages = []
    for group in groups:
        pairs = [f"{file_of(a, package)} -> {file_of(b, package)}"
                 for a in group for b in sorted(graph[a]) if b in group]
        messages.append("import cycle: " + "; ".join(pairs))
    return messages


def test_no_wing_imports_a_wing_above_it():
    graph = import_graph(PACKAGE)
    assert upward_imports(graph, PACKAGE) == []


def test_no_import_cycles():
    graph = import_graph(PACKAGE)
    assert import_cycles(graph, PACKAGE) == []


def _fixture_package(tmp_path: Path, files: dict[str, str]) -> Path:
    package = tmp_path / "ganno_bench"
    for rel, text in files.items():
        path = package / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return package


def test_an_upward_import_is_caught_and_named(tmp_path):
    package = _fixture_package(
        tmp_path,
        {
            "__init__.py": "from ganno_bench.envs.layer_lr import Env\n",
            "inner/__init__.py": "",
            "inner/engine.py": "def run():\n    from ganno_bench.envs.layer_lr import Env\n",
            "envs/__init__.py": "",
            "envs/layer_lr.py": "from ganno_bench.inner.engine import run\nEnv = object\n",
        },
    )
    graph = import_graph(package)
    problems = upward_imports(graph, package)
    assert len(problems) == 1
    assert "inner/engine.py imports" in problems[0] and "envs/layer_lr.py" in problems[0]
    # the same pair is also a cycle
    cycles = import_cycles(graph, package)
    assert len(cycles) == 1 and "inner/engine.py" in cycles[0]


def test_a_cycle_inside_one_wing_is_caught(tmp_path):
    package = _fixture_package(
        tmp_path,
        {
            "__init__.py": "",
            "benchmark/__init__.py": "",
            "benchmark/evaluation.py": "from ganno_bench.benchmark import references\n",
            "benchmark/references.py": "from ganno_bench.benchmark.evaluation import x\n",
        },
    )
    graph = import_graph(package)
    assert upward_imports(graph, package) == []
    (cycle,) = import_cycles(graph, package)
    assert "benchmark/evaluation.py -> " in cycle and "benchmark/references.py" in cycle


def test_a_module_outside_every_wing_is_refused(tmp_path):
    package = _fixture_package(
        tmp_path, {"__init__.py": "", "helpers.py": "import ganno_bench.version\n",
                   "version.py": ""}
    )
    with pytest.raises(AssertionError, match="in no wing"):
        upward_imports(import_graph(package), package)
