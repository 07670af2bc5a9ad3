"""ncnn export: PyTorch → TorchScript (``torch.jit.trace``) → pnnx → ``x.param`` + ``x.bin``.

pnnx (PyPI ``pnnx``, Tencent's PyTorch Neural Network eXchange, `github.com/pnnx/pnnx`) is a self-contained
executable (libtorch linked in) that reads a TorchScript file and writes, besides the ncnn pair, a pnnx graph
(``.pnnx.param`` / ``.pnnx.bin``), a PyTorch re-implementation (``_pnnx.py``), an ONNX file (``.pnnx.onnx``) and an
ncnn test script (``_ncnn.py``). Here:

* the lowered module is traced on the batch-1 NCHW float32 example and pnnx runs on it as a subprocess, in a
  temporary folder beside the destination, with every output path pinned into that folder; only the ncnn pair is
  kept, and it is checked (no unconverted operator; ncnn loads it) *before* it is moved into place: ``x.bin``
  first, then ``x.param``, each with an atomic ``os.replace``, so both appear under their final names only when
  complete;
* pnnx's Python wrapper (``pnnx.export`` / ``pnnx.convert``) is not used: it imports and runs the generated
  ``_pnnx.py``. Only ``pnnx.EXEC_PATH`` (the executable's location) is read from it. The executable makes no
  network call (checked with strace in ``tests/test_ncnn.py``); traced here, it started no other program and
  wrote only into its working folder;
* pnnx (20261020) folds a ``padding_mode="circular"`` conv's padding into ncnn's ``Convolution`` as *zero*
  padding, a silently wrong model: such convs are exported as an explicit wrap-around (slices + concat) and an
  unpadded conv (:func:`explicit_circular_padding`, bitwise the same in PyTorch). A dict or nested output is
  traced as a flat tuple (the order of :func:`edgedeploy.export.parity.flatten_outputs`);
* pnnx leaves an operator it cannot map to an ncnn layer in the ``.param`` under its PyTorch name
  (``Tensor.reshape`` for a 6-D reshape, ``torch.unbind``, ``Tensor.slice`` with a step), which ncnn refuses to
  load. Such a file is refused: :class:`UnsupportedOpError` names each op type, how many layers, the first layer
  name, and pnnx's own reason when it gave one. The zoo's lowerings avoid them for ``target="ncnn"`` (EMO's 4-D
  window attention, EdgeViT's pooled delegate sampling). MobileViT's attention is lowered to ``nn.MultiheadAttention``,
  which pnnx maps onto ncnn's native ``MultiHeadAttention`` layer (``benchmarks/results/lowering_forms_ncnn.md``).

Input blob ``in0``: ``(1, C, H, W)`` float32 NCHW (ncnn drops the batch axis: ``Mat(w=W, h=H, c=C)``); output
blobs ``out0``, ``out1``, … in the model's output order (the zoo's: ``out0``, the logits). Precisions: ``fp32``
(pnnx ``fp16=0``: fp32 weights; the runtime turns every reduced-precision option off) and ``fp16`` (pnnx
``fp16=1``: fp16 weights; ncnn's fp16 storage and arithmetic on where the CPU has them). ncnn's int8 needs its
``ncnn2table`` / ``ncnn2int8`` tools, which the wheels lack.

All 19 zoo models convert with the default lowering, parity within 1.4e-6 relative error (pnnx 20261020, ncnn
1.0.20261020). The pnnx step took 1.2–5 s for the smallest variants and up to 53 s for the larger ones on a shared
2-vCPU host under load average 12–25 (so: load, not model size, dominated the spread).
"""

from __future__ import annotations

import copy
import os
import re
import shutil
import subprocess
import tempfile
import warnings
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from edgedeploy._util import sha256_file
from edgedeploy.errors import ExportError, MissingExtraError, UnsupportedOpError
from edgedeploy.export.base import ExportedFile, Exporter, ExportSettings, register_exporter
from edgedeploy.runtimes.ncnn_rt import bin_path, ncnn_op_census, precision_flags, read_param

#: an ncnn layer type (``Convolution``, ``BinaryOp``, ``Gemm``…); pnnx writes unconverted ops with their PyTorch
#: names (``Tensor.reshape``, ``torch.unbind``, ``F.grid_sample``, ``aten::…``), which never match
_NCNN_LAYER = re.compile(r"[A-Z][A-Za-z0-9]*")
#: pnnx's own one-line reasons for leaving an op unconverted ("unbind along batch axis 0 is not supported")
_PNNX_REASON = re.compile(r"^(.*\bnot supported\b.*)$", re.MULTILINE)
PNNX_TIMEOUT_S = 900
PNNX_OPTLEVEL = 2


def pnnx_executable() -> Path:
    """The pnnx executable of the installed ``pnnx`` package; :class:`MissingExtraError` naming ``[ncnn]``."""
    try:
        import pnnx
    except ImportError as e:
        raise MissingExtraError("pnnx", "ncnn", "ncnn export") from e
    exe = Path(getattr(pnnx, "EXEC_PATH", ""))
    if not exe.is_file() or not os.access(exe, os.X_OK):
        raise MissingExtraError("pnnx", "ncnn", f"ncnn export (the pnnx executable {exe} is missing)")
    return exe


def unconverted_layers(param: Path) -> dict[str, list[str]]:
    """Op type -> layer names of the layers pnnx left unconverted in ``param`` (types that are no ncnn layer)."""
    out: dict[str, list[str]] = defaultdict(list)
    for layer in read_param(param).layers:
        if not _NCNN_LAYER.fullmatch(layer.type):
            out[layer.type].append(layer.name)
    return dict(out)


def _refuse(left: dict[str, list[str]], log: str) -> UnsupportedOpError:
    parts = [f"{op} x{len(names)} (first {names[0]})" for op, names in left.items()]
    reasons = list(dict.fromkeys(m.strip() for m in _PNNX_REASON.findall(log)))
    said = f"; pnnx: {'; '.join(reasons[:3])}" if reasons else ""
    return UnsupportedOpError(
        f"pnnx left operators ncnn cannot run: {', '.join(parts)}{said}",
        op=", ".join(left),
        node=", ".join(names[0] for names in left.values()),
    )


def _last_line(text: str) -> str:
    lines = [ln.strip() for ln in text.splitlines() if ln.strip() and not ln.startswith(("inline module", "####"))]
    return lines[-1][:300] if lines else "no output"


def _run_pnnx(tmp: Path, source: str, shape: Sequence[int], out_path: Path, precision: str) -> float:
    """Run pnnx on ``tmp/source`` (TorchScript ``.pt`` or ``.onnx``), check the ncnn pair it writes and move it to
    ``out_path`` (``.bin`` first, then ``.param``, each atomically); returns pnnx's wall time (s)."""
    import time

    exe = pnnx_executable()
    dims = ",".join(str(int(d)) for d in shape)
    cmd = [
        str(exe), source, f"inputshape=[{dims}]f32", "device=cpu", f"optlevel={PNNX_OPTLEVEL}",
        f"fp16={1 if precision == 'fp16' else 0}",
        "pnnxparam=model.pnnx.param", "pnnxbin=model.pnnx.bin", "pnnxpy=model_pnnx.py",
        "pnnxonnx=model.pnnx.onnx", "ncnnparam=model.ncnn.param", "ncnnbin=model.ncnn.bin",
        "ncnnpy=model_ncnn.py",
    ]  # fmt: skip
    t0 = time.perf_counter()
    try:
        proc = subprocess.run(
            cmd, cwd=tmp, capture_output=True, text=True, errors="replace", timeout=PNNX_TIMEOUT_S, check=False
        )
    except subprocess.TimeoutExpired as e:
        raise ExportError(f"pnnx did not finish within {PNNX_TIMEOUT_S} s") from e
    pnnx_s = time.perf_counter() - t0
    log = proc.stdout + proc.stderr
    param, weights = tmp / "model.ncnn.param", tmp / "model.ncnn.bin"
    if proc.returncode != 0 or not param.is_file() or not weights.is_file():
        raise ExportError(f"pnnx failed (exit {proc.returncode}): {_last_line(log)}")
    left = unconverted_layers(param)
    if left:
        raise _refuse(left, log)
    check_ncnn(param, precision)
    os.replace(weights, bin_path(out_path))
    os.replace(param, out_path)
    return pnnx_s


def _pnnx_notes(precision: str) -> list[str]:
    return [f"pnnx optlevel={PNNX_OPTLEVEL}, weights stored {'fp16' if precision == 'fp16' else 'fp32'}"]


def torch_to_ncnn(
    module: nn.Module, example: torch.Tensor, out_path: Path, precision: str = "fp32"
) -> tuple[list[str], float]:
    """Convert ``module`` (NCHW ``example``) to ``out_path`` (``.param``) and the ``.bin`` beside it.

    Returns ``(notes, pnnx_seconds)``. Raises :class:`UnsupportedOpError` (pnnx left an operator unconverted),
    :class:`ExportError` (tracing or pnnx failed, or ncnn cannot load the pair), :class:`MissingExtraError`.
    """
    pnnx_executable()  # the missing extra before any tracing work
    module, circular = explicit_circular_padding(module.eval())
    module = _TupleOutputs(module).eval()
    out_path = Path(out_path)
    with tempfile.TemporaryDirectory(prefix=".edgedeploy-ncnn-", dir=out_path.parent) as tmp_dir:
        tmp = Path(tmp_dir)
        try:
            with warnings.catch_warnings(), torch.no_grad():
                warnings.simplefilter("ignore")
                traced = torch.jit.trace(module, (example,), check_trace=False)
            traced.save(str(tmp / "model.pt"))
        except Exception as e:
            raise ExportError(f"TorchScript tracing for pnnx failed: {_last_line(str(e)) or type(e).__name__}") from e
        pnnx_s = _run_pnnx(tmp, "model.pt", example.shape, out_path, precision)
    notes = _pnnx_notes(precision)
    if circular:
        notes.append(f"{len(circular)} circular-padded conv(s) exported as explicit wrap-around + unpadded conv")
    return notes, pnnx_s


def onnx_to_ncnn(onnx_path: Path, shape: Sequence[int], out_path: Path, precision: str = "fp32") -> float:
    """Convert a static-shape ONNX file (NCHW input ``shape``) to ``out_path`` (``.param``) + ``.bin`` with pnnx's
    ONNX front end; returns pnnx's wall time (s). Raises as :func:`torch_to_ncnn`."""
    out_path = Path(out_path)
    with tempfile.TemporaryDirectory(prefix=".edgedeploy-ncnn-", dir=out_path.parent) as tmp_dir:
        tmp = Path(tmp_dir)
        shutil.copyfile(onnx_path, tmp / "model.onnx")
        return _run_pnnx(tmp, "model.onnx", shape, out_path, precision)


class _CircularPadConv(nn.Module):
    """A ``padding_mode="circular"`` :class:`nn.Conv2d` as an explicit wrap-around (slices + concat) and an unpadded
    conv sharing the original's weight and bias: the same numbers, bitwise. pnnx (20261020) folds a circular conv's
    padding into the ncnn ``Convolution`` as zero padding — a silently wrong model (max abs error 1.1 on a random
    3×3 depth-wise conv) — while slices and concat convert exactly (``Crop`` + ``Concat``)."""

    def __init__(self, conv: nn.Conv2d) -> None:
        super().__init__()
        self.conv = conv
        self.left, self.right, self.top, self.bottom = (int(p) for p in conv._reversed_padding_repeated_twice)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.left or self.right:
            parts = [x[:, :, :, -self.left :]] if self.left else []
            x = torch.cat([*parts, x, *([x[:, :, :, : self.right]] if self.right else [])], dim=3)
        if self.top or self.bottom:
            parts = [x[:, :, -self.top :, :]] if self.top else []
            x = torch.cat([*parts, x, *([x[:, :, : self.bottom, :]] if self.bottom else [])], dim=2)
        c = self.conv
        return F.conv2d(x, c.weight, c.bias, c.stride, 0, c.dilation, c.groups)


def explicit_circular_padding(module: nn.Module) -> tuple[nn.Module, list[str]]:
    """``(module or a copy, names)``: every circular-padded ``nn.Conv2d`` replaced by :class:`_CircularPadConv`.

    ``module`` itself is never modified (a deep copy is made when there is something to replace).
    """
    names = [n for n, m in module.named_modules() if isinstance(m, nn.Conv2d) and m.padding_mode == "circular"]
    if not names:
        return module, []
    module = copy.deepcopy(module)
    if names == [""]:  # the module is the conv itself
        return _CircularPadConv(module), names  # type: ignore[arg-type]
    for name in names:
        parent_name, _, child = name.rpartition(".")
        parent = module.get_submodule(parent_name) if parent_name else module
        conv = getattr(parent, child)
        setattr(parent, child, _CircularPadConv(conv))
    return module, names


class _TupleOutputs(nn.Module):
    """``module`` with a dict / nested output flattened into a tuple (TorchScript tracing and pnnx want tensors);
    a single tensor stays a tensor. The order is that of :func:`edgedeploy.export.parity.flatten_outputs`."""

    def __init__(self, module: nn.Module) -> None:
        super().__init__()
        self.inner = module

    def forward(self, x: torch.Tensor) -> torch.Tensor | tuple[torch.Tensor, ...]:
        from edgedeploy.export.parity import flatten_outputs

        out = self.inner(x)
        if isinstance(out, torch.Tensor):
            return out
        return tuple(flatten_outputs(out))


def check_ncnn(param: Path, precision: str = "fp32") -> None:
    """Prove the pair is runnable: the ``ncnn`` wheel loads ``param`` and its ``.bin``.

    Without the wheel the check is skipped (export needs only pnnx; parity then says ``not run``). Raises
    :class:`ExportError` naming ncnn's complaint.
    """
    from edgedeploy.errors import ArtifactError, MissingExtraError
    from edgedeploy.runtimes.ncnn_rt import NcnnRuntime

    try:
        NcnnRuntime().load(param, threads=1, precision=precision)
    except MissingExtraError:
        return
    except ArtifactError as e:
        raise ExportError(f"pnnx wrote an ncnn model ncnn cannot load: {e}") from e


@register_exporter
class NcnnExporter(Exporter):
    """ncnn via pnnx (see the module docstring)."""

    format = "ncnn"

    def export(self, module: nn.Module, example: Tensor, out_path: Path, settings: ExportSettings) -> ExportedFile:
        notes, pnnx_s = torch_to_ncnn(module, example, out_path, settings.precision)
        return _exported(out_path, "torch.jit.trace + pnnx", example.shape, settings.precision, notes, pnnx_s)

    def export_onnx(self, onnx_path: Path, out_path: Path, settings: ExportSettings) -> ExportedFile:
        """An ONNX file a user brings (static shape, prepared by :mod:`edgedeploy.export.onnx_source`) through
        pnnx's ONNX front end; the ncnn pair's blobs are ``in0`` / ``out0``… as for a PyTorch module."""
        from edgedeploy.spec import graph_inputs, import_onnx

        model = import_onnx().load(str(onnx_path), load_external_data=False)
        dims = graph_inputs(model)[0].type.tensor_type.shape.dim
        shape = [int(d.dim_value) for d in dims]
        pnnx_s = onnx_to_ncnn(onnx_path, shape, out_path, settings.precision)
        return _exported(out_path, "pnnx (ONNX front end)", shape, settings.precision, _pnnx_notes(settings.precision),
                         pnnx_s)  # fmt: skip

    def op_census(self, path: Path) -> dict[str, int]:
        return ncnn_op_census(path)

    @classmethod
    def tool_versions(cls) -> dict[str, str]:
        from importlib.metadata import PackageNotFoundError, version

        versions = {"torch": torch.__version__}
        for pkg in ("pnnx", "ncnn"):
            try:
                versions[pkg] = version(pkg)
            except PackageNotFoundError:
                pass
        return versions


def _exported(
    out_path: Path, tool: str, shape: Sequence[int], precision: str, notes: list[str], pnnx_s: float
) -> ExportedFile:
    """The :class:`ExportedFile` of an ncnn pair pnnx wrote to ``out_path``."""
    graph = read_param(out_path)
    weights = bin_path(out_path)
    return ExportedFile(
        path=out_path,
        exporter=tool,
        opset=None,
        input_name=graph.inputs[0],
        input_layout="NCHW",
        input_shape=[int(d) for d in shape],
        output_names=graph.outputs,
        notes=notes,
        extra={
            "side_files": {weights.name: sha256_file(weights)},
            "ncnn": {
                "options": precision_flags(precision),
                "pnnx_s": round(pnnx_s, 3),
                "layers": len(graph.layers),
            },
            "load_kw": {"precision": precision},
        },
    )
