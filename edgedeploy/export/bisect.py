"""Parity bisection: which ``nn.Module`` is the first whose output an artifact no longer reproduces?

How it works (ONNX and MNN artifacts, which carry the exporter's scope names):

1. PyTorch: forward hooks on every named submodule of the *exported* (lowered) module record each module's output
   on one input (modules called more than once are not probes: their output is ambiguous).
2. Mapping: the module of every node comes from a fresh export of the same module at the artifact's opset (same
   exporter, same node names): the torch.export-based exporter's node metadata, or the TorchScript exporter's
   scope names (``/layer_3/layer_3.0/conv/Conv`` ← module ``layer_3.0.conv``); see :func:`export_node_modules`.
   A module's output in the artifact is the output of the *last* node (graph order) inside its scope.
3. Artifact: ONNX — the mapped tensors are added as graph outputs and the model is run once in onnxruntime;
   MNN — the converted graph keeps the ONNX tensor names, so the mapped variables are read from
   ``MNN.expr.load_as_dict`` after writing the input.
4. Errors per probe, in the order the modules finished in PyTorch: max abs error, normwise relative error
   ``max|a − r| / max|r|`` and cosine similarity. A probe is *bad* when its relative error exceeds ``tolerance``.
   The culprit is the first bad probe whose error *persists*: the next probe that is not inside it is bad too
   (or there is none). This skips probes that look wrong only because the exporter fused them with their
   neighbour (e.g. a Conv whose ONNX output already includes the folded BatchNorm): their error heals at the next
   probe, a real fault propagates.

TFLite and CoreML artifacts do not keep module scopes (litert-torch and coremltools rename tensors): bisection
raises :class:`~edgedeploy.errors.ConfigError` for them; export the same model to ONNX to bisect a numerical
problem of the lowered module itself.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from edgedeploy import registry
from edgedeploy._util import captured_fd_output
from edgedeploy.errors import ArtifactError, ConfigError

DEFAULT_TOLERANCE = {"fp32": 1e-3, "fp16": 2e-2, "int8": 0.25}
BISECT_FORMATS = tuple(f.name for f in registry.formats().values() if f.bisectable)


@dataclass
class ProbeResult:
    """One module's output compared: ``rel_error`` is normwise (max |a − r| / max |r|)."""

    module: str
    type: str
    tensor: str
    shape: list[int]
    max_abs_error: float | None
    rel_error: float | None
    cosine: float | None
    bad: bool
    note: str = ""


@dataclass
class BisectReport:
    """Probes in execution order, and the culprit: the first module whose error exceeds ``tolerance`` and persists."""

    artifact: str
    format: str
    tolerance: float
    input: str
    culprit: str | None
    culprit_type: str | None = None
    first_bad: str | None = None
    probes: list[ProbeResult] = field(default_factory=list)
    unmapped: int = 0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


# ----------------------------------------------------------------------------------------------- scope names
def scope_to_module(scope_segments: list[str]) -> str:
    """``["layer_1", "layer_1.0", "block"]`` → ``"layer_1.0.block"`` (the TorchScript exporter's scope naming:
    an indexed child of ``seq`` is written ``seq.0``)."""
    parts: list[str] = []
    prev: str | None = None
    for seg in scope_segments:
        if prev is not None and seg.startswith(prev + "."):
            parts.append(seg[len(prev) + 1 :])
        else:
            parts.append(seg)
        prev = seg
    return ".".join(parts)


def node_module(node_name: str) -> str | None:
    """Module name of an ONNX node called ``/a/a.0/conv/Conv`` (``"a.0.conv"``), None outside any module scope."""
    if not node_name.startswith("/"):
        return None
    segs = node_name.split("/")[1:-1]
    return scope_to_module(segs) if segs else None


def _ancestors(mod: str | None) -> list[str]:
    out = []
    while mod:
        out.append(mod)
        mod = mod.rpartition(".")[0]
    return out


def _inside(mod: str | None, scope: str) -> bool:
    return bool(mod) and (mod == scope or mod.startswith(scope + "."))  # type: ignore[union-attr]


def map_module_outputs(
    nodes: list[tuple[str, list[str], list[str]]],
    module_names: set[str],
    graph_outputs: set[str] = frozenset(),
    where: Mapping[str, str | None] | None = None,
) -> dict[str, str]:
    """{module name: the tensor that carries its output} from ``nodes`` = (node name, inputs, outputs) in graph order.

    A node's module is ``where[node]`` when given (:func:`export_node_modules`), else its TorchScript scope name
    (:func:`node_module`). A module's output is the last tensor produced inside its scope that leaves it: consumed
    by a node outside the scope, or a graph output. Tensors used only inside the scope (e.g. a transposed key
    inside an attention) are never taken for the module's output.
    """

    def module_of(name: str) -> str | None:
        placed = where.get(name) if where else None
        return placed if placed is not None else node_module(name)

    consumers: dict[str, list[str | None]] = {}
    for name, inputs, _ in nodes:
        for t in inputs:
            consumers.setdefault(t, []).append(module_of(name))
    last: dict[str, str] = {}
    for name, _, outputs in nodes:
        scopes = [m for m in _ancestors(module_of(name)) if m in module_names]
        for t in outputs:
            users = consumers.get(t, [])
            for scope in scopes:
                if t in graph_outputs or any(not _inside(u, scope) for u in users):
                    last[scope] = t
    return last


# ------------------------------------------------------------------------------------------------- reference
def torch_module_outputs(module: nn.Module, x: np.ndarray) -> tuple[dict[str, np.ndarray], list[str], np.ndarray]:
    """Run ``module`` once; returns ({module name: output}, names in completion order, final output).

    Only modules called exactly once with a single tensor output are recorded.
    """
    outputs: dict[str, np.ndarray] = {}
    order: list[str] = []
    calls: dict[str, int] = {}
    handles = []
    for name, mod in module.named_modules():
        if not name:
            continue

        def hook(m: nn.Module, args: tuple, out: Any, name: str = name) -> None:
            calls[name] = calls.get(name, 0) + 1
            if isinstance(out, torch.Tensor) and calls[name] == 1:
                outputs[name] = out.detach().float().numpy().copy()
                order.append(name)

        handles.append(mod.register_forward_hook(hook))
    try:
        with torch.inference_mode():
            final = module.eval()(torch.from_numpy(np.ascontiguousarray(x))).float().numpy()
    finally:
        for h in handles:
            h.remove()
    order = [n for n in order if calls.get(n) == 1]
    return {n: outputs[n] for n in order}, order, final


# -------------------------------------------------------------------------------------------------- artifacts
def export_node_modules(module: nn.Module, x: np.ndarray, opset: int) -> tuple[dict[str, str | None], Any]:
    """``({ONNX node name: module path of module}, graph)`` of a fresh export of ``module`` at ``opset``.

    The exporter is deterministic, so the node (and tensor) names are those of an artifact exported from the same
    module at the same opset, whatever its weights. The paths come from the export's source-map tables
    (:func:`edgedeploy.export.sourcemap.module_tables`): the torch.export-based exporter's node metadata before
    onnxsim, or the TorchScript exporter's scope names.
    """
    import onnx

    from edgedeploy.export.onnx import torch_to_onnx

    with tempfile.TemporaryDirectory(prefix="edgedeploy-bisect-") as tmp:
        exported = torch_to_onnx(module, torch.from_numpy(np.ascontiguousarray(x)), Path(tmp) / "ref.onnx", opset=opset)
        graph = onnx.load(str(exported.path)).graph
    tables = exported.extra.get("sourcemap_tables") or {}
    return dict(tables.get("nodes") or {}), graph


def _onnx_opset(model: Any) -> int:
    return next((int(o.version) for o in model.opset_import if o.domain in ("", "ai.onnx")), registry.DEFAULT_OPSET)


def _onnx_probe(
    artifact: Path, x: np.ndarray, module_names: set[str], module: nn.Module
) -> tuple[dict[str, str], dict[str, np.ndarray]]:
    import onnx
    import onnxruntime as ort

    model = onnx.load(str(artifact))
    where, _ = export_node_modules(module, x, _onnx_opset(model))
    nodes = [(n.name, list(n.input), list(n.output)) for n in model.graph.node]
    mapping = map_module_outputs(nodes, module_names, {o.name for o in model.graph.output}, where)
    existing = {o.name for o in model.graph.output}
    wanted = sorted(set(mapping.values()) - existing)
    for t in wanted:
        model.graph.output.append(onnx.helper.make_empty_tensor_value_info(t))
    opts = ort.SessionOptions()
    opts.log_severity_level = 3
    opts.intra_op_num_threads = os.cpu_count() or 1
    with tempfile.TemporaryDirectory(prefix="edgedeploy-bisect-") as tmp:
        probe = Path(tmp) / "probe.onnx"
        onnx.save(model, str(probe))
        sess = ort.InferenceSession(str(probe), sess_options=opts, providers=["CPUExecutionProvider"])
        names = [o.name for o in sess.get_outputs()]
        values = sess.run(names, {sess.get_inputs()[0].name: x})
    return mapping, {n: np.asarray(v, dtype=np.float32) for n, v in zip(names, values, strict=True)}


def _mnn_probe(
    artifact: Path, x: np.ndarray, module_names: set[str], module: nn.Module, opset: int
) -> tuple[dict[str, str], dict[str, np.ndarray]]:
    """The MNN converter keeps ONNX tensor names: map them on a fresh ONNX export of ``module`` at ``opset`` (the
    graph the MNN file was converted from), then read the surviving ones from the MNN file (fused ones are gone)."""
    from edgedeploy.runtimes.mnn_rt import import_mnn

    where, graph = export_node_modules(module, x, opset)
    nodes = [(n.name, list(n.input), list(n.output)) for n in graph.node]
    onnx_mapping = map_module_outputs(nodes, module_names, {o.name for o in graph.output}, where)

    mnn = import_mnn()
    F = mnn.expr
    with captured_fd_output():
        variables = F.load_as_dict(str(artifact))
    inputs = [n for n, v in variables.items() if v.op_type == "Input"]
    if not inputs:
        raise ArtifactError(f"{artifact}: no input variable found")
    mapping = {m: t for m, t in onnx_mapping.items() if t in variables}
    wanted = sorted(set(mapping.values()))
    values: dict[str, np.ndarray] = {}
    with captured_fd_output():
        rt = mnn.nn.create_runtime_manager(({"backend": "CPU", "numThread": os.cpu_count() or 1, "precision": "high"},))
        probe = mnn.nn.load_module_from_file(str(artifact), [inputs[0]], wanted, runtime_manager=rt)
        x = np.ascontiguousarray(x, dtype=np.float32)
        outs = probe.forward([F.const(x, list(x.shape), F.NCHW)])
        for t, v in zip(wanted, outs if isinstance(outs, list) else [outs], strict=True):
            if v.data_format == F.NC4HW4:
                v = F.convert(v, F.NCHW)
            values[t] = np.array(v.read(), dtype=np.float32)
    return mapping, values


def _compare(ref: np.ndarray, out: np.ndarray) -> tuple[float, float, float]:
    r = ref.astype(np.float64).reshape(-1)
    o = out.astype(np.float64).reshape(-1)
    diff = float(np.abs(o - r).max()) if r.size else 0.0
    rel = diff / max(float(np.abs(r).max()) if r.size else 0.0, 1e-12)
    denom = float(np.linalg.norm(o) * np.linalg.norm(r))
    cos = float(o @ r / denom) if denom > 0 else float(np.array_equal(o, r))
    return diff, rel, cos


def bisect_artifact(
    module: nn.Module,
    artifact: str | Path,
    fmt: str,
    input_shape: tuple[int, ...],
    tolerance: float | None = None,
    x: np.ndarray | None = None,
    precision: str = "fp32",
    opset: int | None = None,
) -> BisectReport:
    """Compare every module's output between ``module`` (the module that was exported, i.e. lowered) and
    ``artifact``; name the culprit (module docstring).

    ``input_shape`` is NCHW ``(1, 3, H, W)``; ``x`` defaults to the embedded photo at that size. ``tolerance`` is a
    normwise relative error (default per precision: :data:`DEFAULT_TOLERANCE`). ``opset``: the ONNX opset an MNN
    artifact was converted from (its manifest's; default: the MNN exporter's default). Raises :class:`ConfigError` for
    formats without module scopes (tflite, coreml), :class:`ArtifactError` for unreadable files.
    """
    from edgedeploy.data import real_image

    artifact = Path(artifact)
    if fmt not in BISECT_FORMATS:
        raise ConfigError(
            f"parity bisection needs module scopes in the artifact; {fmt} artifacts do not keep them "
            f"(supported: {', '.join(BISECT_FORMATS)}). Export the model to onnx to bisect the lowered module."
        )
    tol = DEFAULT_TOLERANCE.get(precision, 1e-3) if tolerance is None else tolerance
    described = "given input"
    if x is None:
        x = real_image(int(input_shape[-1]))
        described = f"grace_hopper.jpg at {input_shape[-1]}x{input_shape[-1]}"
    ref, order, _ = torch_module_outputs(module, x)
    types = {n: type(m).__name__ for n, m in module.named_modules()}
    try:
        if fmt == "onnx":
            mapping, values = _onnx_probe(artifact, x, set(order), module)
        else:
            mapping, values = _mnn_probe(artifact, x, set(order), module, opset or registry.DEFAULT_OPSET)
    except (ConfigError, ArtifactError):
        raise
    except Exception as e:
        raise ArtifactError(f"cannot run {artifact} for bisection: {str(e).splitlines()[0] if str(e) else e}") from e

    probes: list[ProbeResult] = []
    for name in order:
        tensor = mapping.get(name)
        if tensor is None or tensor not in values:
            continue
        r, o = ref[name], values[tensor]
        if r.size != o.size:
            probes.append(
                ProbeResult(name, types[name], tensor, list(r.shape), None, None, None, False, "shape differs")
            )
            continue
        diff, rel, cos = _compare(r, o)
        probes.append(ProbeResult(name, types[name], tensor, list(r.shape), diff, rel, cos, rel > tol))
    compared = [p for p in probes if p.rel_error is not None]
    culprit = first_bad = None
    for i, p in enumerate(compared):
        if not p.bad:
            continue
        first_bad = first_bad or p.module
        related = set(_ancestors(p.module))
        nxt = next(
            (
                q
                for q in compared[i + 1 :]
                if q.tensor != p.tensor and q.module not in related and not _inside(q.module, p.module)
            ),
            None,
        )
        if nxt is None or nxt.bad:
            culprit = p.module
            break
        p.note = "heals at next probe (fused op?)"
    return BisectReport(
        artifact=str(artifact),
        format=fmt,
        tolerance=tol,
        input=described,
        culprit=culprit,
        culprit_type=types.get(culprit) if culprit else None,
        first_bad=first_bad,
        probes=probes,
        unmapped=len(order) - len(probes),
    )
