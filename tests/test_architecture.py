"""The package's shape: data flows one way through its modules (text → spec → graph → analysis /
compiler → trainer and evaluator → command line), so no module imports one that imports it back,
lazily or not."""

import ast
from pathlib import Path

import networkx as nx

PACKAGE = Path(__file__).resolve().parent.parent / "vggspec"


def imports(path: Path) -> set[str]:
    """The vggspec modules ``path`` imports anywhere (top level or inside a function)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.level == 1:  # from .x import y / from . import x
            found |= {node.module.split(".")[0]} if node.module else {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith("vggspec"):
            rest = node.module.split(".")[1:]
            found |= {rest[0]} if rest else {alias.name for alias in node.names}
        elif isinstance(node, ast.Import):
            found |= {a.name.split(".")[1] for a in node.names if a.name.startswith("vggspec.")}
    return found


def module_graph() -> nx.DiGraph:
    modules = {path.stem: path for path in PACKAGE.glob("*.py")}
    graph = nx.DiGraph()
    for name, path in modules.items():
        graph.add_node(name)
        graph.add_edges_from((name, target) for target in imports(path) & modules.keys() if target != name)
    return graph


def test_the_import_graph_finds_lazy_imports():
    """The check itself: a lazy import inside a function is an edge (cli imports train lazily)."""
    graph = module_graph()
    assert graph.has_edge("cli", "train") and graph.has_edge("spec", "layers")


def test_no_vggspec_module_imports_one_that_imports_it_back():
    graph = module_graph()
    cycles = [" → ".join([*cycle, cycle[0]]) for cycle in nx.simple_cycles(graph)]
    assert not cycles, "import cycles: " + "; ".join(cycles)


def test_the_language_half_never_reaches_up_to_torch_code():
    """What `vggspec analyze` needs (spec, graph, analysis, report, ...) imports nothing that needs torch."""
    graph = module_graph()
    torch_free = nx.descendants(graph, "report") | {"report"}
    torch_modules = {name for name in graph if "import torch" in (PACKAGE / f"{name}.py").read_text()}
    assert torch_free.isdisjoint(torch_modules), torch_free & torch_modules
