"""The package's shape: five rooms by stage, data flowing one way through them.

    errors, logs, files, units       what every room uses (the top of the package)
    spec/   text → Spec → layer graph → analysis            no torch
    plan/   training-step memory, GPU rates, reports, drawing, diff    no torch
    data/   folders, decoding, colour statistics, preprocessing, scales, datasets
    nn/     the torch network and its weights files (compile, dense, export, checkpoints)
    run/    train and evaluate: configs, launch, the trainer, run folders, metrics
    cli/    the command line, a thin shell over the above

A module imports only from its own room, the rooms below it and the top; no module imports one that
imports it back, lazily or not; ``spec/`` and ``plan/`` reach no torch code (``vggspec analyze`` runs
without torch installed).
"""

import ast
from pathlib import Path

import networkx as nx

PACKAGE = Path(__file__).resolve().parent.parent / "vggspec"
BASE = ("errors", "logs", "files", "units")  # the top: every room may use them, they use no room
ROOMS = ("spec", "plan", "data", "nn", "run", "cli")  # in the order data flows: each may import those before it
TORCH_FREE_ROOMS = ("spec", "plan")


def module_names() -> dict[str, Path]:
    """``spec.parser``, ``errors``, ``cli`` (a package's ``__init__`` by the package's name) → its file."""
    found = {}
    for path in PACKAGE.rglob("*.py"):
        parts = path.relative_to(PACKAGE).with_suffix("").parts
        if parts[-1] == "__init__":
            parts = parts[:-1] or ("__init__",)
        found[".".join(parts)] = path
    return found


def imports(name: str, path: Path, modules: dict[str, Path]) -> set[str]:
    """The vggspec modules ``path`` imports anywhere (top level or inside a function)."""
    is_package = path.name == "__init__.py"
    package = name.split(".") if is_package and name != "__init__" else name.split(".")[:-1]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[: len(package) - (node.level - 1)] if node.level > 1 else package
                target = [*base, *(node.module.split(".") if node.module else [])]
            elif (node.module or "").startswith("vggspec"):
                target = node.module.split(".")[1:]
            else:
                continue
            for alias in node.names:  # from .spec import parser: the module spec.parser, else the package spec
                if alias.name == "__version__":  # a constant of the package's, not an arrow up to everything
                    continue
                whole = ".".join([*target, alias.name])
                found.add(whole if whole in modules else ".".join(target) or "__init__")
        elif isinstance(node, ast.Import):
            found |= {a.name.removeprefix("vggspec.") for a in node.names if a.name.startswith("vggspec.")}
    return {module for module in found if module in modules}


def module_graph() -> nx.DiGraph:
    modules = module_names()
    graph = nx.DiGraph()
    for name, path in modules.items():
        graph.add_node(name)
        graph.add_edges_from((name, target) for target in imports(name, path, modules) if target != name)
    return graph


def room(module: str) -> str:
    return module.split(".")[0]


def test_the_import_graph_finds_lazy_imports():
    """The check itself: a lazy import inside a function is an edge (the parser imports the analysis lazily)."""
    graph = module_graph()
    assert graph.has_edge("spec.spec", "spec.layers") and graph.has_edge("spec.parser", "spec.analysis")


def test_the_package_shows_its_rooms():
    top = sorted(path.name for path in PACKAGE.glob("*.py"))
    assert len(top) <= 8, top
    assert set(top) <= {f"{name}.py" for name in (*BASE, "__init__", "__main__")}, top
    for name in ROOMS:
        modules = [path for path in (PACKAGE / name).glob("*.py") if path.name != "__init__.py"]
        assert name == "cli" or len(modules) >= 3, (name, modules)


def test_no_vggspec_module_imports_one_that_imports_it_back():
    graph = module_graph()
    cycles = [" → ".join([*cycle, cycle[0]]) for cycle in nx.simple_cycles(graph)]
    assert not cycles, "import cycles: " + "; ".join(cycles)


def test_rooms_import_only_rooms_below_them():
    graph = module_graph()
    rank = {**{name: 0 for name in BASE}, **{name: i + 1 for i, name in enumerate(ROOMS)}, "__init__": len(ROOMS)}
    upward = [
        f"{source} → {target}"
        for source, target in graph.edges
        if room(source) in rank and rank[room(target)] > rank[room(source)]
    ]
    assert not upward, "imports up the pipeline: " + "; ".join(upward)


def test_spec_and_plan_never_reach_torch_code():
    """What `vggspec analyze` needs imports nothing that needs torch, however far down. The one torch import
    in these rooms is each layer kind's ``to_torch`` (its compile rule lives with its other rules), which only
    the compiler calls."""
    graph = module_graph()
    modules = module_names()
    torch_modules = {name for name, path in modules.items() if _imports_torch(path)}
    for name in [n for n in graph if room(n) in TORCH_FREE_ROOMS]:
        reached = (nx.descendants(graph, name) | {name}) & torch_modules
        assert not reached, (name, reached)


def _imports_torch(path: Path) -> bool:
    """A torch import anywhere but in a layer kind's ``to_torch`` or under ``if TYPE_CHECKING:``."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    exempt = {
        id(child)
        for node in ast.walk(tree)
        if (isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test))
        or (isinstance(node, ast.FunctionDef) and node.name == "to_torch")
        for child in ast.walk(node)
    }
    for node in ast.walk(tree):
        if id(node) in exempt:
            continue
        if isinstance(node, ast.Import) and any(a.name.split(".")[0] == "torch" for a in node.names):
            return True
        if isinstance(node, ast.ImportFrom) and not node.level and (node.module or "").split(".")[0] == "torch":
            return True
    return False


MAX_CLASS_LINES = 350  # the hard limit; aim for under 300


def test_no_class_is_longer_than_350_lines():
    """A class a reader can hold in mind at once: a longer one is several things, each of which wants its own
    name (the trainer was one class of 650 lines: its loop, its data, its network, its checkpoints)."""
    too_long = [
        f"{path.relative_to(PACKAGE)}: {node.name}, {node.end_lineno - node.lineno + 1} lines"
        for path in sorted(PACKAGE.rglob("*.py"))
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8")))
        if isinstance(node, ast.ClassDef) and node.end_lineno - node.lineno + 1 > MAX_CLASS_LINES
    ]
    assert not too_long, "classes over 350 lines: " + "; ".join(too_long)


def test_the_test_oracle_is_not_in_the_package():
    """tools/measured.py holds the budget to PyTorch's own measurements: tests and tools use it, users do not."""
    assert not list(PACKAGE.rglob("measured.py"))
