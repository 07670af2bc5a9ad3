"""The source map: runtime op names → ``nn.Module`` paths, written beside every ONNX-based artifact at export.

Chain: torch module scopes → ONNX node (and output tensor) names → MNN op names / onnxruntime's optimized node
names. The exporters carry the module hierarchy in the graph:

* the TorchScript exporter (opset ≤ 17) names nodes after module scopes: ``/layer_1/layer_1.0/block/conv/Conv``
  (a child of a container is written ``<container>.<index>``) → module ``layer_1.0.block.conv``; output tensors
  are ``<node>_output_<i>``;
* the ``torch.export`` exporter (opset ≥ 18) names nodes ``node_Conv_12`` and stores the hierarchy in the
  node's ``metadata_props``: ``pkg.torch.onnx.name_scopes`` (``['', 'layer_1', 'layer_1.0', …, 'conv2d_3']``)
  and ``namespace`` (``: Cls/layer_1: Cls/…``). Its optimizer folds a BatchNorm into the preceding Conv and keeps
  the BatchNorm's metadata, so such a Conv is placed on the BatchNorm module (a sibling of the conv).

onnxsim folds and fuses nodes; nodes it keeps keep their names, and a node it creates is matched through its
output tensors against the graph before simplification. A node left without a module (no scope, no metadata)
takes the common module of its consumers (a layout conversion or reorder is done for the op that reads it), else
of its producers. Module paths of the *lowered* export module (``edgedeploy.export.lowering``: e.g. a baked GCC
block replacing a GCC block) are mapped to the original module: the nearest ancestor path that exists in the
original ``named_modules()``.

MNN's converter names each op after its ONNX output tensor (``/conv_1/block/conv/Conv_output_0``); ops it creates
get generic names (``ConvolutionDepthwise46``, ``BinaryOp87``) resolved through the MNN graph's neighbours; at
run time geometry splits add ``_raster_<i>`` suffixes (stripped when resolving). onnxruntime's optimized graph
(``_nchwc`` suffixes, ``ReorderInput_token_<n>``) is resolved at profile time from the optimized model it dumps.

File: ``<artifact>.sourcemap.json`` (named in the manifest's ``sourcemap`` field)::

    {"sourcemap_version": 1, "artifact": "edgeformer_s.mnn", "format": "mnn",
     "modules": ["", "conv_1", "conv_1.block", …],          # the original named_modules() paths
     "lowered": ["layer_3.1.spatial_global_rep.0", …],      # paths replaced by export-time rewrites
     "nodes": {"<onnx node name>": "<module path>"}, "tensors": {"<onnx tensor name>": "<module path>"},
     "ops": {"<mnn op name>": "<module path>"}}            # MNN artifacts only

A module path is the dotted ``named_modules()`` path; ``""`` is the root module (ops in the model's own
``forward``), ``null`` an op nothing could place.
"""

from __future__ import annotations

import ast
import json
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from edgedeploy._util import atomic_write_text

SOURCEMAP_VERSION = 1
SUFFIX = ".sourcemap.json"
#: suffixes runtimes add to an op or tensor name: MNN geometry rasters, onnxruntime NCHWc copies, transposes and
#: fusions (onnxruntime names a fused node ``<first node>/<Name>Fusion/``: ``node_silu_3/QuickGeluFusion/``)
_RUNTIME_SUFFIX = re.compile(r"(?:_raster_\d+|_nchwc|___tr4.*|(?:/\w*Fusion/?)+)$")


def sourcemap_path(artifact: str | Path) -> Path:
    """``model.mnn`` → ``model.mnn.sourcemap.json``."""
    artifact = Path(artifact)
    return artifact.with_name(artifact.name + SUFFIX)


def scope_module(name: str, paths: set[str] | frozenset[str]) -> str | None:
    """The deepest module a TorchScript-exporter scope name lies in, or None when its first scope is unknown.

    ``/layer_1/layer_1.0/block/conv/Conv`` with ``layer_1.0.block.conv`` in ``paths`` → ``"layer_1.0.block.conv"``;
    ``/Flatten`` → ``""`` (the root); ``ConvolutionDepthwise46`` → None.
    """
    if not name.startswith("/"):
        return None
    cur = ""
    for comp in (p for p in name.split("/") if p):
        cands = [comp]
        last = cur.rsplit(".", 1)[-1]
        if cur and comp.startswith(last + "."):
            cands.insert(0, comp[len(last) + 1 :])
        found = None
        for c in cands:
            p = f"{cur}.{c}" if cur else c
            if p in paths:
                found = p
                break
        if found is None and comp in paths and comp.startswith(cur + "."):
            found = comp  # a scope written as the full path
        if found is None:
            break
        cur = found
    return cur


def metadata_module(props: Mapping[str, str], paths: set[str] | frozenset[str]) -> str | None:
    """The deepest module in a ``torch.export``-exporter node's ``name_scopes`` / ``namespace`` metadata, or None."""
    scopes: list[str] = []
    raw = props.get("pkg.torch.onnx.name_scopes")
    if raw:
        try:
            scopes = [str(s) for s in ast.literal_eval(raw)]
        except (ValueError, SyntaxError):
            scopes = []
    if not scopes and props.get("namespace"):
        scopes = [part.split(":")[0].strip() for part in props["namespace"].split("/")]
    best = None
    for s in scopes:
        if s in paths:
            best = s
    return best


def lca(paths: Iterable[str]) -> str:
    """The deepest common ancestor of dotted module paths (``""`` when they share none)."""
    items = [p.split(".") if p else [] for p in paths]
    if not items:
        return ""
    common = items[0]
    for parts in items[1:]:
        n = 0
        while n < min(len(common), len(parts)) and common[n] == parts[n]:
            n += 1
        common = common[:n]
    return ".".join(common)


def to_original(path: str | None, original: set[str] | frozenset[str]) -> str | None:
    """Map a module path of the lowered export module to the nearest ancestor in the original module."""
    if path is None:
        return None
    while path and path not in original:
        path = path.rpartition(".")[0]
    return path


@dataclass
class GraphNode:
    """One op of a runtime graph: its name, type, input and output tensor names."""

    name: str
    op_type: str
    inputs: Sequence[str] = ()
    outputs: Sequence[str] = ()
    props: Mapping[str, str] = field(default_factory=dict)


def fill_from_neighbours(nodes: Sequence[GraphNode], assign: dict[str, str | None], rounds: int = 64) -> None:
    """Give every unplaced node (``assign[name] is None``) the common module of its placed consumers; what is still
    unplaced then takes the common module of its placed producers. Each phase repeats until nothing changes (at
    most ``rounds`` passes), so a chain of converter-made ops (Reshape → Transpose → Unpack …) takes the module of
    the op it feeds, not of the op before it. ``assign`` is updated in place."""
    producer = {t: n.name for n in nodes for t in n.outputs if t}
    consumers: dict[str, list[str]] = {}
    for n in nodes:
        for t in n.inputs:
            if t:
                consumers.setdefault(t, []).append(n.name)

    def down(n: GraphNode) -> list[str]:
        return [assign[c] for t in n.outputs for c in consumers.get(t, ()) if assign.get(c) is not None]  # type: ignore[misc]

    def up(n: GraphNode) -> list[str]:
        return [assign[producer[t]] for t in n.inputs if t in producer and assign.get(producer[t]) is not None]  # type: ignore[misc]

    for near in (down, up):
        for _ in range(rounds):
            changed = False
            for n in reversed(nodes) if near is down else nodes:
                if assign.get(n.name) is not None:
                    continue
                found = near(n)
                if found:
                    assign[n.name] = lca(found)
                    changed = True
            if not changed:
                break


def onnx_graph_nodes(model: Any) -> list[GraphNode]:
    """The top-level nodes of an ``onnx.ModelProto`` as :class:`GraphNode` s (unnamed nodes named by output)."""
    return [
        GraphNode(
            n.name or (n.output[0] if n.output else f"{n.op_type}_{i}"),
            n.op_type,
            list(n.input),
            list(n.output),
            {p.key: p.value for p in n.metadata_props},
        )
        for i, n in enumerate(model.graph.node)
    ]


def onnx_tables(models: Sequence[Any], paths: set[str] | frozenset[str]) -> dict[str, dict[str, str | None]]:
    """``{"nodes": {node: module}, "tensors": {tensor: module}}`` for the last of ``models`` (ONNX protos of one
    export, before and after simplification), using the earlier ones to place nodes the simplifier created."""
    tensors: dict[str, str | None] = {}
    nodes: dict[str, str | None] = {}
    for model in models:
        graph = onnx_graph_nodes(model)
        assign: dict[str, str | None] = {}
        for n in graph:
            where = metadata_module(n.props, paths) if n.props else None
            if where is None:
                where = scope_module(n.name, paths)
            if where is None and n.name in nodes:
                where = nodes[n.name]
            if where is None:
                known = [tensors[t] for t in n.outputs if tensors.get(t) is not None]
                where = known[0] if known else None
            assign[n.name] = where
        fill_from_neighbours(graph, assign)
        nodes = assign
        for n in graph:
            for t in n.outputs:
                tensors[t] = assign[n.name]
    return {"nodes": nodes, "tensors": tensors}


@dataclass
class SourceMap:
    """A loaded source map (see the module docstring) with the resolver used by every runtime profiler."""

    modules: list[str]
    nodes: dict[str, str | None] = field(default_factory=dict)
    tensors: dict[str, str | None] = field(default_factory=dict)
    ops: dict[str, str | None] = field(default_factory=dict)
    lowered: list[str] = field(default_factory=list)
    format: str | None = None
    artifact: str | None = None
    origin: str = "export"

    def __post_init__(self) -> None:
        self._paths = frozenset(self.modules)

    def lookup(self, name: str) -> str | None:
        """The module of one runtime op name (``None`` when nothing places it); see :meth:`resolve`."""
        base = _RUNTIME_SUFFIX.sub("", name)
        for key in (name, base):
            for table in (self.ops, self.nodes, self.tensors):
                if table.get(key) is not None:
                    return table[key]
        where = scope_module(base, self._paths)
        return to_original(where, self._paths)

    def resolve(self, graph: Sequence[GraphNode]) -> dict[str, str | None]:
        """Place every node of a runtime graph: by name (tables, scope), by output tensors, then by neighbours."""
        assign: dict[str, str | None] = {}
        for n in graph:
            where = self.lookup(n.name)
            if where is None:
                for t in n.outputs:
                    where = self.lookup(t)
                    if where is not None:
                        break
            assign[n.name] = where
        fill_from_neighbours(graph, assign)
        return assign

    def to_dict(self) -> dict[str, Any]:
        return {
            "sourcemap_version": SOURCEMAP_VERSION,
            "artifact": self.artifact,
            "format": self.format,
            "origin": self.origin,
            "modules": self.modules,
            "lowered": self.lowered,
            "nodes": self.nodes,
            "tensors": self.tensors,
            "ops": self.ops,
        }

    @classmethod
    def load(cls, path: str | Path) -> SourceMap:
        """Read a ``.sourcemap.json``; :class:`~edgedeploy.errors.ArtifactError` when it is not one."""
        from edgedeploy.errors import ArtifactError

        try:
            d = json.loads(Path(path).read_text())
            return cls(
                modules=list(d["modules"]), nodes=dict(d.get("nodes") or {}), tensors=dict(d.get("tensors") or {}),
                ops=dict(d.get("ops") or {}), lowered=list(d.get("lowered") or []), format=d.get("format"),
                artifact=d.get("artifact"), origin=d.get("origin", "export"),
            )  # fmt: skip
        except (OSError, ValueError, KeyError, TypeError) as e:
            raise ArtifactError(f"{path} is not a valid source map: {e}") from e


def module_tables(export_module: Any, models: Sequence[Any]) -> dict[str, Any]:
    """Called by the ONNX exporter right after simplification: the node / tensor tables of the final graph in
    paths of ``export_module`` (the lowered module that was exported). Never raises: a failure is recorded."""
    try:
        paths = frozenset(name for name, _ in export_module.named_modules())
        return onnx_tables(models, paths)
    except Exception as e:  # noqa: BLE001 - the source map must never cost an export
        return {"error": f"{type(e).__name__}: {e}"}


def write_sourcemap(
    artifact: Path,
    fmt: str,
    module: Any,
    export_module: Any,
    tables: Mapping[str, Any] | None,
    runtime_graph: Callable[[Path], list[GraphNode]] | None = None,
) -> dict[str, str]:
    """Write ``<artifact>.sourcemap.json`` for an ONNX-based artifact; returns ``{"sourcemap": file name}`` for the
    manifest, or ``{}`` when the export carried no ONNX tables (TFLite, CoreML). ``runtime_graph(artifact)``: the
    converted file's own ops (MNN: :func:`edgedeploy.runtimes.mnn_rt.graph_nodes`), resolved into ``ops``. Never
    raises: a source map that cannot be written is a note (``{"sourcemap_error": …}``), never a failed export."""
    if not tables:
        return {}
    try:
        if "error" in tables:
            raise RuntimeError(tables["error"])
        original = frozenset(name for name, _ in module.named_modules())
        lowered = sorted(
            name for name, m in export_module.named_modules() if name and name in original
            and type(m) is not type(module.get_submodule(name))
        )  # fmt: skip
        sm = SourceMap(
            modules=[name for name, _ in module.named_modules()],
            nodes={k: to_original(v, original) for k, v in tables["nodes"].items()},
            tensors={k: to_original(v, original) for k, v in tables["tensors"].items()},
            lowered=lowered,
            format=fmt,
            artifact=Path(artifact).name,
        )
        if runtime_graph is not None:
            graph = [n for n in runtime_graph(Path(artifact)) if n.op_type not in ("Const", "Input")]
            sm.ops = sm.resolve(graph)
        path = sourcemap_path(artifact)
        atomic_write_text(path, json.dumps(sm.to_dict(), indent=0, sort_keys=False) + "\n")
        return {"sourcemap": path.name}
    except Exception as e:  # noqa: BLE001 - see the docstring
        return {"sourcemap_error": f"{type(e).__name__}: {e}"}


def derived_sourcemap(module: Any, artifact: Path | None = None, fmt: str | None = None) -> SourceMap:
    """A source map from the module tree alone (scope names; no export tables), for artifacts exported before
    source maps existed. Works for TorchScript-exporter names; ``origin`` says ``"derived"``."""
    return SourceMap(
        modules=[name for name, _ in module.named_modules()],
        format=fmt,
        artifact=Path(artifact).name if artifact else None,
        origin="derived",
    )
