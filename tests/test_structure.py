"""The shape of the source tree: no import cycle among Kinema's modules, no module reaching into another's privates.

Both checks read the source (``ast``), never import it, so they see imports inside functions too (a cycle that only
closes at call time is still a cycle: it is why such imports get pushed into function bodies in the first place).

Rules of the import graph:

* every ``import kinema.x`` / ``from .x import y`` is an edge, at module level or inside a function or class body;
  imports under ``if TYPE_CHECKING:`` are not (they never run);
* ``from pkg import name`` is an edge to ``pkg.name`` when that is a module, and to ``pkg`` (its ``__init__``) when
  ``name`` is defined there; importing ``pkg.sub`` also runs the ``__init__`` of every package on the way that is not
  already being imported (an ancestor of the importing module always is, so that is no edge);
* a package's ``__init__`` importing its own submodules is normal; a submodule importing a name from its parent
  package's ``__init__`` is what closes real cycles, and counts.

Every cycle is reported at once (a strongly connected component, with one concrete loop through it and the line of
each import), so a failure shows all the work left, not the first problem.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

import kinema

SRC = Path(kinema.__file__).parent
ROOT = "kinema"
#: modules whose cycles are being untangled on their own: reported by their own test case, so the rest stays green.
AREAS = {"service": (f"{ROOT}.service",)}


@dataclass(frozen=True)
class Import:
    source: str  # the importing module
    target: str  # the module imported (its code runs)
    line: int
    names: tuple[str, ...]  # the names taken from it (``from target import a, b``); empty for a plain import


def module_files() -> dict[str, Path]:
    """Every module of the package: ``kinema.a.b`` -> its file (``__init__.py`` for a package)."""
    files: dict[str, Path] = {}
    for path in sorted(SRC.rglob("*.py")):
        parts = list(path.relative_to(SRC).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        files[".".join([ROOT, *parts])] = path
    return files


MODULES = module_files()


def is_package(module: str) -> bool:
    return MODULES[module].name == "__init__.py"


def ancestors(module: str) -> set[str]:
    """The packages that are necessarily being imported (or done) while ``module`` runs: its parents, and itself."""
    parts = module.split(".")
    return {".".join(parts[:i]) for i in range(1, len(parts) + 1)}


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _import_nodes(tree: ast.AST) -> Iterator[ast.Import | ast.ImportFrom]:
    """Every import statement that can run: anywhere in the tree except the body of ``if TYPE_CHECKING:``."""
    stack: list[ast.AST] = [tree]
    while stack:
        node = stack.pop()
        if isinstance(node, ast.Import | ast.ImportFrom):
            yield node
        if isinstance(node, ast.If) and _is_type_checking(node.test):
            stack.extend(node.orelse)
            continue
        stack.extend(ast.iter_child_nodes(node))


def _resolve_from(module: str, node: ast.ImportFrom) -> str | None:
    """The absolute module name of ``from <node.module> import ...``, or None when it is not Kinema's."""
    if node.level == 0:
        name = node.module or ""
        return name if name == ROOT or name.startswith(ROOT + ".") else None
    base = module.split(".")
    if not is_package(module):
        base.pop()
    if node.level > 1:
        base = base[: len(base) - (node.level - 1)]
    return ".".join([*base, *(node.module.split(".") if node.module else [])])


def _runs(module: str, target: str) -> list[str]:
    """The modules whose code runs when ``module`` imports ``target``: the packages on the way that are not its own
    ancestors (those are already importing), then ``target`` itself."""
    parts = target.split(".")
    own = ancestors(module)
    chain = [".".join(parts[:i]) for i in range(1, len(parts))]
    return [p for p in chain if p not in own and p in MODULES] + [target]


def imports_of(module: str) -> list[Import]:
    tree = ast.parse(MODULES[module].read_text(encoding="utf-8"), filename=str(MODULES[module]))
    found: list[Import] = []
    for node in _import_nodes(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name in MODULES:
                    found += [Import(module, t, node.lineno, ()) for t in _runs(module, alias.name)]
            continue
        target = _resolve_from(module, node)
        if target is None or target not in MODULES:  # not Kinema's, or no such module (reported apart)
            continue
        submodules = [a.name for a in node.names if f"{target}.{a.name}" in MODULES]
        names = tuple(a.name for a in node.names if a.name not in submodules)
        chain = _runs(module, target)
        if names or target not in ancestors(module):
            # the package (or module) itself runs, and gives these names: ``from .backends import get_backend``
            found += [Import(module, t, node.lineno, names if t == target else ()) for t in chain]
        else:
            # ``from . import engine`` from inside the package: only the submodules run
            found += [Import(module, t, node.lineno, ()) for t in chain[:-1]]
        for sub in submodules:
            found.append(Import(module, f"{target}.{sub}", node.lineno, ()))
    return found


def import_graph() -> dict[str, dict[str, Import]]:
    """module -> {imported module -> the first import of it}; self-imports dropped."""
    graph: dict[str, dict[str, Import]] = {m: {} for m in MODULES}
    for module in MODULES:
        for imp in sorted(imports_of(module), key=lambda i: i.line):
            if imp.target != module:
                graph[module].setdefault(imp.target, imp)
    return graph


def strongly_connected(graph: dict[str, dict[str, Import]]) -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan's algorithm, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    on_stack: set[str] = set()
    stack: list[str] = []
    components: list[list[str]] = []
    counter = 0
    for root in sorted(graph):
        if root in index:
            continue
        work: list[tuple[str, Iterator[str]]] = [(root, iter(sorted(graph[root])))]
        index[root] = low[root] = counter
        counter += 1
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = counter
                    counter += 1
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph[child]))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                if len(component) > 1:
                    components.append(sorted(component))
    return sorted(components)


def a_loop(graph: dict[str, dict[str, Import]], component: list[str]) -> list[Import]:
    """One concrete loop through the component's first module (breadth-first, so the shortest)."""
    members = set(component)
    start = component[0]
    paths: dict[str, list[Import]] = {start: []}
    queue = [start]
    while queue:
        node = queue.pop(0)
        for target, imp in sorted(graph[node].items()):
            if target == start:
                return [*paths[node], imp]
            if target in members and target not in paths:
                paths[target] = [*paths[node], imp]
                queue.append(target)
    raise AssertionError(f"no loop through {start}")  # a component always has one


def describe(imp: Import) -> str:
    what = f" ({', '.join(imp.names)})" if imp.names else ""
    return f"  {imp.source} -> {imp.target}{what}   at {MODULES[imp.source].relative_to(SRC.parent)}:{imp.line}"


def area_of(modules: list[str]) -> str:
    for area, prefixes in AREAS.items():
        if any(m == p or m.startswith(p + ".") for m in modules for p in prefixes):
            return area
    return "core"


def cycle_report(area: str) -> list[str]:
    graph = import_graph()
    report = []
    for component in strongly_connected(graph):
        if area_of(component) != area:
            continue
        members = set(component)
        inside = [imp for m in component for t, imp in sorted(graph[m].items()) if t in members]
        report.append(
            f"cycle among {len(component)} modules: {', '.join(component)}\n"
            "for example:\n"
            + "\n".join(describe(i) for i in a_loop(graph, component))
            + "\nevery import among them (break enough of these):\n"
            + "\n".join(describe(i) for i in inside)
        )
    return report


@pytest.mark.parametrize("area", ["core", *AREAS])
def test_no_import_cycle(area: str) -> None:
    """No module imports (directly or not, at import time or call time) a module that imports it back."""
    report = cycle_report(area)
    assert not report, f"{len(report)} import cycle(s) in {area}:\n\n" + "\n\n".join(report)


def test_every_import_of_kinema_names_one_of_its_modules() -> None:
    """An import the graph cannot place (a module renamed or not written yet) would fail when it runs."""
    unknown = []
    for module, path in MODULES.items():
        for node in _import_nodes(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names if a.name == ROOT or a.name.startswith(ROOT + ".")]
            else:
                target = _resolve_from(module, node)
                targets = [target] if target is not None else []
            unknown += [f"{path.relative_to(SRC.parent)}:{node.lineno}: {t}" for t in targets if t not in MODULES]
    assert not unknown, "imports of modules that do not exist:\n" + "\n".join(unknown)


def _is_private(name: str) -> bool:
    return name.startswith("_") and not (name.startswith("__") and name.endswith("__"))


def private_uses(module: str) -> list[str]:
    """``from .x import _name`` of another module's private name, and ``x._name`` on a Kinema module bound here."""
    path = MODULES[module]
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    where = path.relative_to(SRC.parent)
    found: list[str] = []
    bound: dict[str, str] = {}  # local name -> the Kinema module it is
    for node in _import_nodes(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name in MODULES and alias.asname:
                    bound[alias.asname] = alias.name
            continue
        target = _resolve_from(module, node)
        if target is None:
            continue
        for alias in node.names:
            sub = f"{target}.{alias.name}"
            if sub in MODULES:  # a module (``from . import _version``) is not a name reached into
                bound[alias.asname or alias.name] = sub
            elif _is_private(alias.name) and target != module:
                found.append(f"{where}:{node.lineno}: from {target} import {alias.name}")
    for expr in ast.walk(tree):
        if (
            isinstance(expr, ast.Attribute)
            and isinstance(expr.value, ast.Name)
            and expr.value.id in bound
            and _is_private(expr.attr)
            and bound[expr.value.id] != module
        ):
            found.append(f"{where}:{expr.lineno}: {expr.value.id}.{expr.attr} ({bound[expr.value.id]})")
    return found


@pytest.mark.parametrize("area", ["core", *AREAS])
def test_no_module_uses_another_modules_private_names(area: str) -> None:
    """A name that starts with ``_`` is its module's business: another module neither imports it nor reaches for it."""
    found = [use for m in MODULES if area_of([m]) == area for use in private_uses(m)]
    assert not found, f"{len(found)} use(s) of another module's private names in {area}:\n" + "\n".join(found)


# -- the checker itself ---------------------------------------------------------------------------------------------
def test_the_graph_resolves_relative_and_package_imports() -> None:
    graph = import_graph()
    # ``from .backends import get_backend``: the registry package's __init__ runs
    assert "kinema.backends" in graph["kinema.planner"]
    # ``from .backends.base import ...``: the package's __init__ runs too, then the submodule
    assert {"kinema.backends", "kinema.backends.base"} <= set(graph["kinema.engine"])
    # a package importing its own submodules is an edge down, never up
    assert "kinema.engine" in graph["kinema"]
    assert "kinema" not in graph["kinema.engine"]


def test_the_cycle_finder_finds_a_cycle() -> None:
    def imp(a: str, b: str) -> Import:
        return Import(a, b, 1, ())

    graph = {
        "a": {"b": imp("a", "b")},
        "b": {"c": imp("b", "c")},
        "c": {"a": imp("c", "a")},
        "d": {"a": imp("d", "a")},
    }
    assert strongly_connected(graph) == [["a", "b", "c"]]
    assert [i.target for i in a_loop(graph, ["a", "b", "c"])] == ["b", "c", "a"]


# -- the suite's rules (pyproject.toml) -----------------------------------------------------------------------------
def test_a_warning_from_kinemas_code_fails_the_test_and_a_third_partys_does_not() -> None:
    import warnings

    for module in ("kinema", "kinema.engine", "kinema.backends.diffusers"):
        with pytest.raises(UserWarning):
            warnings.warn_explicit("ours", UserWarning, "x.py", 1, module=module)
    for module in ("torch.nn.modules", "kinemax", "tests.kinema"):
        with warnings.catch_warnings(record=True):  # recorded (reported), not raised
            warnings.warn_explicit("theirs", DeprecationWarning, "x.py", 1, module=module)
