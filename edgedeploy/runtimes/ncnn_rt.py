"""ncnn (Tencent's CPU inference engine, the ``ncnn`` PyPI wheel) behind the :class:`~edgedeploy.runtimes.base.Runtime`
protocol.

An ncnn artifact is a pair: ``x.param`` (text: the layers and blobs) and ``x.bin`` (the weights) beside it; the
``.param`` path is the artifact, the ``.bin`` its side file (``FormatSpec.side_suffixes``). The input blob is the
output of the ``Input`` layer (``in0`` in pnnx's files), the output blobs those no layer consumes (``out0``,
``out1``, … in the model's output order); both are read from the ``.param``.

Input: batch-1 NCHW float32 ``(1, C, H, W)``. ncnn has no batch axis: the input is copied into an ncnn-owned
``Mat(w=W, h=H, c=C)`` (wrapping numpy memory is unsafe on armv7l, TOOLCHAIN_NOTES.md), and the output ``Mat``
gets the batch axis back: classifier logits come out as ``(1, num_classes)`` float32.

Precision (``load(..., precision=)``, by default the ``precision`` of the manifest beside the file, else fp32):

* ``fp32``: every reduced-precision option off (``use_fp16_packed / _storage / _arithmetic``, ``use_bf16_storage``
  / ``_packed``) — ncnn turns fp16 storage and arithmetic on by default where the CPU has it, which changes the
  numbers; parity and fp32 benchmarks need them off;
* ``fp16``: ncnn's defaults (fp16 packed + storage + arithmetic where the CPU supports them; bf16 off), with the
  fp16 weights pnnx wrote (``fp16=1``).

Vulkan is never used (``use_vulkan_compute = False``): CPU only. ``import ncnn`` loads the compiled module alone
(its ``model_zoo`` / ``utils.download``, which use ``requests``, are never imported).
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from edgedeploy._util import captured_fd_output
from edgedeploy.errors import ArtifactError, ConfigError
from edgedeploy.runtimes.base import Runtime, Session, register_runtime

#: the first line of every ncnn text ``.param`` file
PARAM_MAGIC = "7767517"
NCNN_PRECISIONS = ("fp32", "fp16")
_OUT_BLOB = re.compile(r"out\d+")


@dataclass
class NcnnLayer:
    """One layer line of a ``.param`` file: ``type name n_in n_out in_blobs… out_blobs… k=v…``."""

    type: str
    name: str
    inputs: list[str] = field(default_factory=list)
    outputs: list[str] = field(default_factory=list)


@dataclass
class NcnnGraph:
    """The layers of a ``.param`` file, its input blobs (outputs of ``Input`` layers) and output blobs (unconsumed)."""

    layers: list[NcnnLayer]
    inputs: list[str]
    outputs: list[str]


def read_param(path: str | Path) -> NcnnGraph:
    """Parse an ncnn text ``.param`` file (magic ``7767517``).

    Raises :class:`ArtifactError` when the file is missing, not a text ``.param`` file, or its layer lines do not
    match the layer count in its header.
    """
    path = Path(path)
    try:
        lines = [ln for ln in path.read_text(encoding="utf-8", errors="replace").splitlines() if ln.strip()]
    except OSError as e:
        raise ArtifactError(f"cannot read ncnn param file {path}: {e.strerror}") from e
    if not lines or lines[0].strip() != PARAM_MAGIC or len(lines) < 2:
        raise ArtifactError(f"{path} is not an ncnn text .param file (first line is not {PARAM_MAGIC})")
    try:
        n_layers = int(lines[1].split()[0])
    except (ValueError, IndexError) as e:
        raise ArtifactError(f"{path}: bad ncnn .param header {lines[1]!r}") from e
    layers: list[NcnnLayer] = []
    for ln in lines[2:]:
        tok = ln.split()
        try:
            n_in, n_out = int(tok[2]), int(tok[3])
        except (ValueError, IndexError) as e:
            raise ArtifactError(f"{path}: bad ncnn layer line {ln[:80]!r}") from e
        layers.append(NcnnLayer(tok[0], tok[1], tok[4 : 4 + n_in], tok[4 + n_in : 4 + n_in + n_out]))
    if len(layers) != n_layers:
        raise ArtifactError(f"{path}: header says {n_layers} layers, the file has {len(layers)}")
    consumed = {b for layer in layers for b in layer.inputs}
    inputs = [b for layer in layers if layer.type == "Input" for b in layer.outputs]
    outputs = [b for layer in layers for b in layer.outputs if b not in consumed]
    if all(_OUT_BLOB.fullmatch(b) for b in outputs):  # pnnx's out0, out1, … follow the model's output order
        outputs.sort(key=lambda b: int(b[3:]))
    return NcnnGraph(layers, inputs, outputs)


def ncnn_op_census(path: str | Path) -> dict[str, int]:
    """ncnn layer type -> count in a ``.param`` file (``Input`` and ncnn's blob-fan-out ``Split`` included)."""
    return dict(sorted(Counter(layer.type for layer in read_param(path).layers).items()))


def bin_path(param: str | Path) -> Path:
    """The weights file of an ncnn artifact: ``x.param`` → ``x.bin`` (``x.fp16.param`` → ``x.fp16.bin``)."""
    return Path(param).with_suffix(".bin")


def precision_flags(precision: str) -> dict[str, bool]:
    """The ``ncnn.Option`` flags for ``precision`` (see the module docstring); :class:`ConfigError` otherwise."""
    if precision not in NCNN_PRECISIONS:
        raise ConfigError(f"ncnn runs fp32 or fp16 (got {precision!r})")
    fp16 = precision == "fp16"
    return {
        "use_vulkan_compute": False,
        "use_fp16_packed": fp16,
        "use_fp16_storage": fp16,
        "use_fp16_arithmetic": fp16,
        "use_bf16_storage": False,
        "use_bf16_packed": False,
    }


def set_precision(opt: Any, precision: str) -> dict[str, bool]:
    """Set an ``ncnn.Option`` for ``precision``; returns the flags set (those this ncnn build has)."""
    flags = {k: v for k, v in precision_flags(precision).items() if hasattr(opt, k)}
    for k, v in flags.items():
        setattr(opt, k, v)
    return flags


class NcnnSession(Session):
    """A loaded ``ncnn.Net``; every run uses a fresh extractor (ncnn's own benchmark does the same).

    ``output_names``: the output blobs, the model's output order (pnnx's ``out0``, ``out1``, …); :meth:`run`
    returns the first, :meth:`run_all` every one. Each output gets the batch axis back: ``(1, *mat_shape)``.
    """

    def __init__(
        self, ncnn: Any, net: Any, input_name: str, output_names: list[str], input_shape: tuple[int, ...]
    ) -> None:
        self.ncnn = ncnn
        self.net = net
        self.input_name = input_name
        self.output_names = output_names
        self.output_name = output_names[0]
        self.input_shape = input_shape

    def _mat(self, x: np.ndarray) -> Any:
        x = np.asarray(x, dtype=np.float32)
        if x.ndim != 4 or x.shape[0] != 1:
            raise ValueError(f"ncnn takes one (1, C, H, W) input, got shape {tuple(x.shape)}")
        if self.input_shape and tuple(x.shape) != self.input_shape:
            raise ValueError(f"input shape {tuple(x.shape)} does not match the artifact's {self.input_shape}")
        _, c, h, w = x.shape
        mat = self.ncnn.Mat(w, h, c)  # ncnn-owned memory (its channel stride is padded; the buffer view knows it)
        np.array(mat, copy=False)[...] = x[0]
        return mat

    def _extract(self, mat: Any, names: list[str]) -> list[Any]:
        ex = self.net.create_extractor()
        ex.input(self.input_name, mat)
        outs = []
        for name in names:
            ret, out = ex.extract(name)
            if ret != 0:
                raise RuntimeError(f"ncnn extract({name!r}) failed with code {ret}")
            outs.append(out)
        return outs

    def run(self, x: np.ndarray) -> np.ndarray:
        (out,) = self._extract(self._mat(x), [self.output_name])
        return np.array(out, dtype=np.float32)[None, ...]

    def run_all(self, x: np.ndarray) -> dict[str, np.ndarray]:
        outs = self._extract(self._mat(x), self.output_names)
        return {n: np.array(o, dtype=np.float32)[None, ...] for n, o in zip(self.output_names, outs, strict=True)}

    def prepare(self, x: np.ndarray) -> Callable[[], Any]:
        mat = self._mat(x)
        extract, names = self._extract, [self.output_name]
        # extract() returns when the output blob is computed (ncnn runs synchronously on the calling thread pool)
        return lambda: extract(mat, names)[0]


def _manifest(path: Path) -> dict[str, Any]:
    """The manifest beside ``path`` as a dict, ``{}`` without a readable one (sha256 checks are bench's job)."""
    import json

    try:
        data = json.loads(path.with_name(path.name + ".json").read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def manifest_precision(path: Path) -> str:
    """The ``precision`` of the manifest beside ``path``, or fp32 without one."""
    return str(_manifest(path).get("precision") or "fp32")


def manifest_input_shape(path: Path) -> tuple[int, ...]:
    """``input.shape`` of the manifest beside ``path`` (pnnx's ``Input`` layer records no shape), or ``()``."""
    try:
        return tuple(int(d) for d in _manifest(path)["input"]["shape"])
    except (KeyError, TypeError, ValueError):
        return ()


@register_runtime
class NcnnRuntime(Runtime):
    """ncnn CPU with ``opt.num_threads = threads``; fp32 (reduced precision off) unless asked for fp16."""

    name = "ncnn"

    @classmethod
    def version(cls) -> str:
        return str(getattr(cls.import_engine(), "__version__", "?"))

    def load(
        self,
        path: Path,
        threads: int,
        precision: str | None = None,
        input_name: str | None = None,
        output_name: str | None = None,
    ) -> Session:
        """Load ``path`` (``.param``) and the ``.bin`` beside it.

        ``precision``: ``fp32`` / ``fp16`` (default: the manifest's, else fp32). ``input_name`` / ``output_name``:
        blob names (default: the ``Input`` layer's blob and every unconsumed blob, read from the ``.param``).
        Raises :class:`ArtifactError` for a missing ``.bin``, a file ncnn rejects (e.g. a layer type it does not
        have) or an unknown blob name.
        """
        ncnn = self.import_engine()
        path = Path(path)
        graph = read_param(path)
        weights = bin_path(path)
        if not weights.is_file():
            raise ArtifactError(f"ncnn weights {weights.name} not found beside {path}")
        precision = precision or manifest_precision(path)
        input_name = input_name or (graph.inputs[0] if graph.inputs else None)
        outputs = [output_name] if output_name else graph.outputs
        if not input_name or not outputs:
            raise ArtifactError(f"{path}: no input layer or no output blob")
        net = ncnn.Net()
        set_precision(net.opt, precision)
        net.opt.num_threads = int(threads)
        log: list[str] = []
        with captured_fd_output(log):
            rc_param = net.load_param(str(path))
            rc_model = net.load_model(str(weights)) if rc_param == 0 else -1
        if rc_param != 0 or rc_model != 0:
            said = " ".join(log[0].split())[:200] if log and log[0].strip() else "no detail"
            what = path.name if rc_param != 0 else weights.name
            raise ArtifactError(f"ncnn cannot load {what}: {said}")
        blobs = {b for layer in graph.layers for b in layer.outputs}
        for name in (input_name, *outputs):
            if name not in blobs:
                raise ArtifactError(f"{path}: no blob named {name!r}")
        return NcnnSession(ncnn, net, input_name, outputs, manifest_input_shape(path))
