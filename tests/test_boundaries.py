"""The shape of the ``gamews`` package: no import cycle, and one door to other
libraries' internals (only ``gamews/websocket/_protocol.py`` touches Autobahn's
or Twisted's private attributes, each use commented with the versions checked)."""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

from twisted.trial.unittest import SynchronousTestCase

import gamews

PACKAGE = Path(gamews.__file__).parent
ALLOWED = PACKAGE / "websocket" / "_protocol.py"
"""The one module allowed to touch Autobahn's and Twisted's private attributes."""
TESTS = Path(__file__).parent


def modules() -> dict[str, Path]:
    """Every module of the package by dotted name."""
    found: dict[str, Path] = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        found[".".join(parts)] = path
    return found


def import_graph() -> dict[str, set[str]]:
    """Module -> the gamews modules it imports (anywhere in it, ``TYPE_CHECKING``
    and function-level imports included)."""
    mods = modules()

    def owner(name: str) -> str | None:
        while name and name not in mods:
            name = name.rpartition(".")[0]
        return name or None

    graph: dict[str, set[str]] = {}
    for name, path in mods.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        targets: set[str | None] = set()
        for node in ast.walk(ast.parse(path.read_text("utf-8"))):
            if isinstance(node, ast.Import):
                targets.update(owner(a.name) for a in node.names)
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    up = package.split(".")[:len(package.split(".")) - node.level + 1]
                    base = ".".join([*up, base] if base else up)
                targets.update(owner(f"{base}.{a.name}") for a in node.names)
        graph[name] = {t for t in targets if t is not None and t != name}
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in sorted(graph.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def _private(name: str) -> bool:
    return name.startswith("_") and not name.startswith("__")


def own_names(tree: ast.AST, *, stores: bool) -> Iterator[str]:
    """The underscored names a module defines: functions, classes, class-level
    names, ``__slots__`` entries and (``stores``) attributes it assigns."""
    for node in ast.walk(tree):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            yield node.name
        elif isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store):
            yield node.id
        elif stores and isinstance(node, ast.Attribute) and isinstance(node.ctx, ast.Store):
            yield node.attr
        if isinstance(node, ast.Assign) and any(
                isinstance(t, ast.Name) and t.id == "__slots__" for t in node.targets):
            for item in ast.walk(node.value):
                if isinstance(item, ast.Constant) and isinstance(item.value, str):
                    yield item.value


def private_uses(tree: ast.AST) -> Iterator[tuple[int, str]]:
    """``(line, name)`` of each ``x._name`` and ``getattr(x, "_name")`` (and set/has)."""
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and _private(node.attr):
            yield node.lineno, node.attr
        elif (isinstance(node, ast.Call) and isinstance(node.func, ast.Name)
              and node.func.id in ("getattr", "setattr", "hasattr") and len(node.args) > 1
              and isinstance(node.args[1], ast.Constant) and isinstance(node.args[1].value, str)
              and _private(node.args[1].value)):
            yield node.lineno, node.args[1].value


def foreign_private_uses() -> dict[Path, list[tuple[int, str]]]:
    """Per module of gamews and its tests, the private attributes it touches that
    neither defines (outside the allowed module): Autobahn's, Twisted's, or another
    library's."""
    paths = [*modules().values(), *sorted(TESTS.rglob("*.py"))]
    trees = {path: ast.parse(path.read_text("utf-8")) for path in paths}
    own = {n for path, tree in trees.items() if path != ALLOWED
           for n in own_names(tree, stores=True)}
    allowed_own = own | set(own_names(trees[ALLOWED], stores=False))
    found: dict[Path, list[tuple[int, str]]] = {}
    for path, tree in trees.items():
        known = allowed_own if path == ALLOWED else own
        uses = sorted({(line, name) for line, name in private_uses(tree) if name not in known})
        if uses:
            found[path] = uses
    return found


class BoundaryTests(SynchronousTestCase):
    """No import cycle in gamews; one module reads other libraries' internals."""

    def test_no_import_cycle(self) -> None:
        """The import graph of gamews/ (every import, TYPE_CHECKING ones too) is acyclic."""
        graph = import_graph()
        self.assertIn("gamews.websocket._child", graph["gamews.websocket"])
        self.assertEqual(cycles(graph), [])

    def test_cycle_finder_finds_a_cycle(self) -> None:
        """The cycle finder reports a cycle (so an empty answer means something)."""
        self.assertEqual(cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}),
                         [["a", "b", "c"]])

    def test_private_attributes_only_in_the_protocol_module(self) -> None:
        """Only gamews/websocket/_protocol.py touches private attributes gamews does
        not define (Autobahn's, Twisted's); no test does."""
        found = foreign_private_uses()
        elsewhere = {str(p): uses for p, uses in found.items() if p != ALLOWED}
        self.assertEqual(elsewhere, {})
        self.assertTrue(found.get(ALLOWED), "the finder found nothing in the allowed module")

    def test_each_private_use_says_the_version_checked(self) -> None:
        """Each private access in the allowed module has a ``PRIVATE (...)`` comment
        naming the version checked, on its line or within the four lines above."""
        lines = ALLOWED.read_text("utf-8").splitlines()
        for line, name in foreign_private_uses()[ALLOWED]:
            above = "\n".join(lines[max(0, line - 5):line])
            self.assertRegex(above, r"PRIVATE \((Autobahn|Twisted) \d+\.\d+\.\d+\)",
                             f"{ALLOWED.name}:{line} uses {name} without saying so")

    def test_child_model_imports_no_autobahn(self) -> None:
        """The child model (gamews/websocket/_child.py) imports nothing from Autobahn
        nor the protocol module: it reaches the wire only through ``Wire``."""
        tree = ast.parse((PACKAGE / "websocket" / "_child.py").read_text("utf-8"))
        imported = {a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
        imported |= {n.module or "" for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)}
        self.assertIn("gamews.api", imported)
        self.assertEqual({m for m in imported if m.startswith(("autobahn", "txaio"))
                          or m == "gamews.websocket._protocol"}, set())
