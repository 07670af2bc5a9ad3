"""The package's shape, read from its source with :mod:`ast` (nothing of edgedeploy is imported).

* **Import graph**, at *module* granularity: one node per ``.py`` file (a package's ``__init__.py`` is the
  package's node). An arrow ``a -> b`` is any ``import`` in ``a`` that names module ``b`` of edgedeploy, at the
  top or inside a function (a lazy import is still a dependency); imports under ``if TYPE_CHECKING:`` are
  annotations only and are left out, as is the implicit import of a parent package's ``__init__``.
  ``from edgedeploy.x import name`` is an arrow to ``edgedeploy.x.name`` when that is a module, else to
  ``edgedeploy.x``. The graph must have no circle, and at most one arrow may point up the layer table
  :data:`LAYERS` (DESIGN.md "Layers").
* **Parameters**: no function outside ``edgedeploy/nn/`` (whose constructors mirror the papers' configs) and
  click command callbacks takes more than 8 parameters. ``self`` / ``cls`` (first parameter of a method) are
  not counted; positional-only, positional, keyword-only each count 1, and ``*args`` and ``**kwargs`` count one
  each.
* **One command layer**: click and rich are imported only by command modules (:func:`is_command_module`).

``python tests/test_structure.py`` prints the numbers (modules, arrows, circles, upward arrows, offenders).
"""

from __future__ import annotations

import ast
import sys
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PKG = ROOT / "edgedeploy"
MAX_PARAMS = 8
MAX_UPWARD = 1

# Layer of each module: the longest matching dotted prefix wins (``edgedeploy.export.manifest`` before
# ``edgedeploy.export``). Bottom = 1. Layer 7 is the API, 8 the command layer (DESIGN.md's "api, then the
# command layer"); command modules are found by name (is_command_module), not listed here.
LAYERS: dict[str, int] = {
    # 1: no dependencies but errors / each other
    "edgedeploy.errors": 1,
    "edgedeploy._util": 1,
    "edgedeploy._paths": 1,
    "edgedeploy._version": 1,
    "edgedeploy.signals": 1,
    "edgedeploy.registry": 1,
    "edgedeploy.compat": 1,  # torch-family packages beside the pinned CPU torch (import_torchvision)
    "edgedeploy.usercode": 1,  # runs a user's callable / module: its failures become one-line UserCodeErrors
    "edgedeploy.outpaths": 1,  # output-path checks before any work (OutputError)
    # 2: records
    "edgedeploy.results.result": 2,
    "edgedeploy.results.stats": 2,
    "edgedeploy.results.timestamps": 2,
    "edgedeploy.results.store": 2,  # the records' files: one JSON run per file, atomic writes
    "edgedeploy.results.baseline": 2,
    "edgedeploy.results.sources": 2,
    "edgedeploy.export.manifest": 2,
    "edgedeploy.export.sourcemap": 2,
    "edgedeploy.limits": 2,
    "edgedeploy.options": 2,  # the typed requests (ExportOptions, BenchOptions)
    "edgedeploy.apitypes": 2,  # the typed requests' field-type checks (pydantic, strict)
    "edgedeploy.data": 2,
    # 3: models
    "edgedeploy.nn": 3,  # with nn.forms (the export forms, beside the families)
    "edgedeploy.zoo": 3,
    "edgedeploy.cards": 3,
    "edgedeploy.spec": 3,
    "edgedeploy.macs": 3,
    # 4: engines
    "edgedeploy.export": 4,
    "edgedeploy.runtimes": 4,
    # 5: measurement
    "edgedeploy.bench": 5,
    "edgedeploy.devices": 5,
    "edgedeploy.opprof": 5,
    # 6: decisions
    "edgedeploy.opprof.render": 6,  # the per-op report (rows, HTML page): a report, beside results/report
    "edgedeploy.results": 6,
    "edgedeploy.suite": 6,
    "edgedeploy.bench.suite_run": 7,  # runs a suite through the public API: it sits beside api
    "edgedeploy.bench.matrix": 7,  # the configuration matrix: suite cases through the public API, like suite_run
    "edgedeploy.results.ab_suite": 7,  # A/B of a suite at a git ref vs the working tree, through the public API
    # 7: the public API (edgedeploy/__init__ re-exports it)
    "edgedeploy.api": 7,
    "edgedeploy": 7,
}
COMMAND_LAYER = 8


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def is_command_module(name: str) -> bool:
    """``edgedeploy.cli``, ``edgedeploy.commands.*``, a package's ``cli`` module, and ``edgedeploy.clierrors``."""
    parts = name.split(".")
    return name in ("edgedeploy.cli", "edgedeploy.clierrors") or parts[1:2] == ["commands"] or parts[-1] == "cli"


def layer(name: str) -> int:
    if is_command_module(name):
        return COMMAND_LAYER
    parts = name.split(".")
    for n in range(len(parts), 0, -1):
        prefix = ".".join(parts[:n])
        if prefix in LAYERS:
            return LAYERS[prefix]
    raise KeyError(f"{name} has no layer in LAYERS")


def sources() -> dict[str, Path]:
    return {module_name(p): p for p in sorted(PKG.rglob("*.py"))}


def _runtime_nodes(tree: ast.AST) -> Iterator[ast.AST]:
    """Every node except what sits under ``if TYPE_CHECKING:``."""
    stack = [tree]
    while stack:
        node = stack.pop()
        yield node
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.If) and _is_type_checking(child.test):
                stack.extend(child.orelse)
                continue
            stack.append(child)


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _resolve_from(node: ast.ImportFrom, name: str, path: Path) -> str | None:
    if node.level == 0:
        return node.module
    base = module_name(path).split(".")
    if path.name != "__init__.py":
        base = base[:-1]
    base = base[: len(base) - (node.level - 1)]
    return ".".join(base + ([node.module] if node.module else []))


def imported_names(path: Path) -> Iterator[tuple[str, list[str]]]:
    """``(module, [names])`` of every runtime import in ``path`` (names empty for ``import x``)."""
    tree = ast.parse(path.read_text(), str(path))
    for node in _runtime_nodes(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield alias.name, []
        elif isinstance(node, ast.ImportFrom):
            mod = _resolve_from(node, node.module or "", path)
            if mod:
                yield mod, [a.name for a in node.names]


def import_graph() -> dict[str, set[str]]:
    """Module -> the edgedeploy modules it imports (see the module docstring for what counts)."""
    mods = sources()
    graph: dict[str, set[str]] = {m: set() for m in mods}
    for m, path in mods.items():
        for target, names in imported_names(path):
            if target != "edgedeploy" and not target.startswith("edgedeploy."):
                continue
            hits = [f"{target}.{n}" for n in names if f"{target}.{n}" in mods]
            if len(hits) < len(names) or not names:  # some names are attributes of target itself
                if target in mods:
                    hits.append(target)
            graph[m].update(h for h in hits if h != m)
    return graph


def circles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    out: list[list[str]] = []
    counter = [0]

    def visit(v: str) -> None:
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in sorted(graph[v]):
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
                out.append(sorted(comp))

    sys.setrecursionlimit(10000)
    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def upward_arrows(graph: dict[str, set[str]]) -> list[tuple[str, str, int, int]]:
    return sorted((a, b, layer(a), layer(b)) for a, bs in graph.items() for b in bs if layer(b) > layer(a))


def _is_click_callback(fn: ast.FunctionDef | ast.AsyncFunctionDef) -> bool:
    for d in fn.decorator_list:
        f = d.func if isinstance(d, ast.Call) else d
        name = f.attr if isinstance(f, ast.Attribute) else getattr(f, "id", "")
        if name in ("command", "group"):
            return True
    return False


def param_count(fn: ast.FunctionDef | ast.AsyncFunctionDef, is_method: bool) -> int:
    a = fn.args
    positional = [*a.posonlyargs, *a.args]
    if is_method and positional and positional[0].arg in ("self", "cls"):
        positional = positional[1:]
    return len(positional) + len(a.kwonlyargs) + (a.vararg is not None) + (a.kwarg is not None)


def long_signatures() -> list[tuple[str, int]]:
    """``("module:function", n)`` for each function over :data:`MAX_PARAMS` outside nn/ and click callbacks."""
    offenders = []
    for m, path in sources().items():
        if m == "edgedeploy.nn" or m.startswith("edgedeploy.nn."):
            continue
        tree = ast.parse(path.read_text(), str(path))
        methods = {
            id(f)
            for c in ast.walk(tree)
            if isinstance(c, ast.ClassDef)
            for f in c.body
            if isinstance(f, ast.FunctionDef)
        }
        for fn in ast.walk(tree):
            if isinstance(fn, (ast.FunctionDef, ast.AsyncFunctionDef)) and not _is_click_callback(fn):
                n = param_count(fn, id(fn) in methods)
                if n > MAX_PARAMS:
                    offenders.append((f"{m}:{fn.name}", n))
    return sorted(offenders)


def ui_imports() -> list[tuple[str, str]]:
    """``(module, imported)`` for every click / rich import outside the command modules."""
    bad = []
    for m, path in sources().items():
        if is_command_module(m):
            continue
        tree = ast.parse(path.read_text(), str(path))
        for node in ast.walk(tree):  # TYPE_CHECKING imports count too: no UI types in library signatures
            names = (
                [a.name for a in node.names]
                if isinstance(node, ast.Import)
                else [node.module or ""]
                if isinstance(node, ast.ImportFrom) and node.level == 0
                else []
            )
            bad += [(m, n) for n in names if n.split(".")[0] in ("click", "rich")]
    return sorted(bad)


# --- the tests ---------------------------------------------------------------------------------------------


def test_every_module_has_a_layer() -> None:
    for m in sources():
        layer(m)  # KeyError names the module


def test_no_import_circles() -> None:
    found = circles(import_graph())
    assert not found, "import circles: " + "; ".join(" <-> ".join(c) for c in found)


def test_at_most_one_upward_arrow() -> None:
    up = upward_arrows(import_graph())
    assert len(up) <= MAX_UPWARD, "arrows up the layer table: " + ", ".join(
        f"{a} ({la}) -> {b} ({lb})" for a, b, la, lb in up
    )


def test_no_function_takes_more_than_eight_parameters() -> None:
    long = long_signatures()
    assert not long, "over 8 parameters (pass a typed options object): " + ", ".join(f"{f} {n}" for f, n in long)


def test_click_and_rich_only_in_command_modules() -> None:
    bad = ui_imports()
    assert not bad, "click / rich outside the command modules: " + ", ".join(f"{m} imports {n}" for m, n in bad)


def test_the_checks_can_fail(tmp_path: Path) -> None:
    """The analysers see what they should on a tiny hand-made tree (a circle, an upward arrow, a long signature)."""
    g = {"edgedeploy.errors": {"edgedeploy.api"}, "edgedeploy.api": {"edgedeploy.errors"}}
    assert circles(g) == [["edgedeploy.api", "edgedeploy.errors"]]
    assert upward_arrows(g) == [("edgedeploy.errors", "edgedeploy.api", 1, 7)]
    fn = ast.parse("def f(self, a, b, c, d, e, f, g, *args, h, **kw): pass").body[0]
    assert isinstance(fn, ast.FunctionDef)
    assert param_count(fn, is_method=True) == 10 and param_count(fn, is_method=False) == 11
    cb = ast.parse("@main.command('x')\n@click.option('--a')\ndef cb(a, b, c, d, e, f, g, h, i): pass").body[0]
    assert isinstance(cb, ast.FunctionDef) and _is_click_callback(cb)
    assert is_command_module("edgedeploy.results.cli") and not is_command_module("edgedeploy.results.report")


if __name__ == "__main__":
    g = import_graph()
    arrows = sum(len(v) for v in g.values())
    up = upward_arrows(g)
    circ = circles(g)
    print(f"modules {len(g)}, arrows {arrows}, circles {len(circ)}, upward arrows {len(up)}")
    for c in circ:
        print("  circle:", " <-> ".join(c))
    for a, b, la, lb in up:
        print(f"  up: {a} ({la}) -> {b} ({lb})")
    for f, n in long_signatures():
        print(f"  params: {f} {n}")
    for m, n in ui_imports():
        print(f"  ui: {m} imports {n}")
