"""The one registry: artifact formats, inference runtimes and model families, and what each can do.

Everything that needs to know "which formats exist", "what suffix is a TFLite file", "which runtime runs an MNN
file by default", "which runtimes the board-side runner can import" or "which precisions ONNX has" reads it from
here: the CLI's choices, :func:`format_of`, :func:`default_runtime`, the exporters' and runtimes' own tables, the
export pipeline, ``export --to all``, the bench resolver and the device runner's checks. This module depends on
nothing but :mod:`edgedeploy.errors`, so every layer may import it.

A format or runtime is described by a frozen spec and implemented by one module (``FormatSpec.module``,
``RuntimeSpec.module``) that is imported on first use. Third-party packages add their own through Python entry
points, loaded once on first look-up:

* ``edgedeploy.formats`` — an entry point resolving to a :class:`FormatSpec` (or a callable returning one);
* ``edgedeploy.runtimes`` — likewise a :class:`RuntimeSpec`;
* ``edgedeploy.models`` — a :class:`FamilySpec`, or a callable registering families itself.

The module a spec names must register its implementation class when imported (``@register_exporter`` in
:mod:`edgedeploy.export.base`, ``@register_runtime`` in :mod:`edgedeploy.runtimes.base`).
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from pathlib import Path

from edgedeploy.errors import ConfigError, UnknownFormatError, UnknownRuntimeError

#: every precision any format may offer (a format lists the ones it has)
PRECISIONS = ("fp32", "fp16", "int8")
#: input layouts an exporter may be asked for (NCHW is what the zoo's modules take)
LAYOUTS = ("NCHW", "NHWC")
#: ONNX opsets the exporters accept: <= 17 the TorchScript exporter, >= 18 the torch.export (dynamo) exporter
OPSET_RANGE = (11, 23)
#: the ONNX opset the ONNX and MNN exporters use when none is asked for (the torch.export-based exporter; measured
#: against the TorchScript exporter's opset-17 graphs in edgedeploy/export/onnx.py and mnn.py)
DEFAULT_OPSET = 20
#: used when the torch.export-based exporter fails on a module at the default opset (the TorchScript exporter)
FALLBACK_OPSET = 17
#: the runtime ``bench MODEL`` (a model, not an artifact) exports for and times when none is given; an artifact's
#: own format picks its runtime with :func:`default_runtime` instead
DEFAULT_BENCH_RUNTIME = "mnn"


@dataclass(frozen=True)
class FormatSpec:
    """An artifact format.

    ``suffixes[0]`` is the suffix edgedeploy writes; the others are recognised on input. ``side_suffixes`` are
    files that belong to the artifact and travel with it (ncnn's ``.bin`` beside ``.param``). ``from_onnx``: the
    exporter can start from an ONNX file instead of an ``nn.Module``. ``onnx_based``: produced from an ONNX
    export, so ``--opset`` applies. ``bisectable``: a failed parity check can be bisected to the first drifting
    module (the format can be re-exported cut at any module output). ``opsets``: the ONNX opsets ``--opset``
    may ask for (``None``: the option does not apply). ``options``: the format options it takes besides
    precision, opset and layout (``int8_mode``, ``calibration``). :func:`check_format_request` enforces all of it.
    """

    name: str
    suffixes: tuple[str, ...]
    module: str
    extra: str
    precisions: tuple[str, ...] = ("fp32",)
    default_runtime: str = ""
    layouts: tuple[str, ...] = ("NCHW",)
    side_suffixes: tuple[str, ...] = ()
    side_required: bool = False
    onnx_based: bool = False
    from_onnx: bool = False
    #: ONNX-level passes run on an ONNX file a user brings before conversion (names in
    #: :data:`edgedeploy.export.onnx_passes.ONNX_FILE_PASSES`)
    onnx_passes: tuple[str, ...] = ()
    bisectable: bool = False
    description: str = ""
    #: an artifact may be a directory (CoreML's ``.mlpackage``); a directory given for any other format is refused
    directory: bool = False
    opsets: tuple[int, int] | None = None
    options: tuple[str, ...] = ()
    #: torch.fx pattern lowerings the converter needs (names in :data:`edgedeploy.export.fx_patterns.PATTERN_PASSES`,
    #: run in this order after the generic passes); a converter that takes the original ops lists none
    graph_passes: tuple[str, ...] = ()

    @property
    def suffix(self) -> str:
        """The suffix of files edgedeploy writes in this format (``.onnx``, ``.mnn`` …)."""
        return self.suffixes[0]


@dataclass(frozen=True)
class RuntimeSpec:
    """An inference engine.

    ``package`` is the Python package it imports (``extra`` installs it). ``device_name`` is the name the
    stdlib-only board runner (:mod:`edgedeploy.devices.runner`) knows it by, or ``None`` when it runs only in
    this process (torch, CoreML). ``aliases`` are other names users type for it (``ort``, ``tflite``).
    ``host_only``: needs the host's Python objects (the torch runtime times the eager module itself).
    ``profiler``: the module of its per-op profiler (:mod:`edgedeploy.opprof`), ``None`` when it has none;
    ``profiler_missing``: why not, when the engine is known to expose no per-op timings (refused with exit 3).
    ``native_tools``: board-side benchmark tools that run this runtime's format (``bench --runtime native:TOOL``).
    """

    name: str
    module: str
    formats: tuple[str, ...]
    extra: str
    package: str
    device_name: str | None = None
    aliases: tuple[str, ...] = ()
    host_only: bool = False
    description: str = ""
    profiler: str | None = None
    profiler_missing: str = ""
    native_tools: tuple[str, ...] = ()


@dataclass(frozen=True)
class FamilySpec:
    """A model family: ``module`` registers its builder (``@register_family``) when imported."""

    name: str
    module: str
    description: str = ""


_FORMATS: dict[str, FormatSpec] = {}
_RUNTIMES: dict[str, RuntimeSpec] = {}
_FAMILIES: dict[str, FamilySpec] = {}
_lock = threading.Lock()
_entry_points_loaded = False
#: entry-point groups read by :func:`load_entry_points`
ENTRY_POINT_GROUPS = ("edgedeploy.formats", "edgedeploy.runtimes", "edgedeploy.models")


def register_format(spec: FormatSpec, *, replace: bool = False) -> FormatSpec:
    """Add ``spec``; :class:`ConfigError` when the name or a suffix is taken (unless ``replace``)."""
    if not replace and spec.name in _FORMATS:
        raise ConfigError(f"format '{spec.name}' is already registered")
    for other in _FORMATS.values():
        if other.name != spec.name and set(other.suffixes) & set(spec.suffixes):
            raise ConfigError(f"format '{spec.name}': suffix {sorted(set(other.suffixes) & set(spec.suffixes))} "
                              f"already belongs to '{other.name}'")  # fmt: skip
    _FORMATS[spec.name] = spec
    return spec


def register_runtime_spec(spec: RuntimeSpec, *, replace: bool = False) -> RuntimeSpec:
    """Add ``spec``; :class:`ConfigError` when the name or an alias is taken (unless ``replace``)."""
    if not replace and spec.name in _RUNTIMES:
        raise ConfigError(f"runtime '{spec.name}' is already registered")
    taken = {a: r.name for r in _RUNTIMES.values() if r.name != spec.name for a in (r.name, *r.aliases)}
    clash = [a for a in (spec.name, *spec.aliases) if a in taken]
    if clash:
        raise ConfigError(f"runtime '{spec.name}': name(s) {clash} already belong to '{taken[clash[0]]}'")
    _RUNTIMES[spec.name] = spec
    return spec


def register_family_spec(spec: FamilySpec, *, replace: bool = False) -> FamilySpec:
    """Add a model family whose module registers its builder on import."""
    if not replace and spec.name in _FAMILIES:
        raise ConfigError(f"model family '{spec.name}' is already registered")
    _FAMILIES[spec.name] = spec
    return spec


def load_entry_points(force: bool = False) -> list[str]:
    """Load third-party formats, runtimes and families from the :data:`ENTRY_POINT_GROUPS` (once).

    Returns ``"group:name"`` of every entry point loaded. A broken entry point raises :class:`ConfigError`
    naming it (a plug-in that cannot load must not be silently ignored).
    """
    global _entry_points_loaded
    with _lock:
        if _entry_points_loaded and not force:
            return []
        _entry_points_loaded = True
    from importlib.metadata import entry_points

    loaded: list[str] = []
    for group in ENTRY_POINT_GROUPS:
        for ep in entry_points(group=group):
            try:
                obj = ep.load()
                if callable(obj) and not isinstance(obj, (FormatSpec, RuntimeSpec, FamilySpec)):
                    obj = obj()
            except Exception as e:
                raise ConfigError(f"entry point {group}:{ep.name} ({ep.value}) failed to load: {e}") from e
            if isinstance(obj, FormatSpec):
                register_format(obj, replace=True)
            elif isinstance(obj, RuntimeSpec):
                register_runtime_spec(obj, replace=True)
            elif isinstance(obj, FamilySpec):
                register_family_spec(obj, replace=True)
            elif obj is not None:
                raise ConfigError(f"entry point {group}:{ep.name} gave {type(obj).__name__}, not a spec")
            loaded.append(f"{group}:{ep.name}")
    return loaded


# ------------------------------------------------------------------------------------------------ look-ups
def formats() -> dict[str, FormatSpec]:
    """Every registered format, in registration order (built-ins first)."""
    load_entry_points()
    return dict(_FORMATS)


def format_names() -> list[str]:
    """The names ``--to`` accepts (without ``all``)."""
    return list(formats())


def format_spec(name: str) -> FormatSpec:
    """The spec of format ``name``; :class:`UnknownFormatError` with suggestions otherwise."""
    known = formats()
    if name not in known:
        raise UnknownFormatError(name, known)
    return known[name]


def check_format_request(fmt: str, precision: str = "fp32", opset: int | None = None, layout: str = "NCHW") -> None:
    """The one capability check: :class:`ConfigError` (exit 2) when format ``fmt`` does not offer ``precision``,
    ``opset`` (``FormatSpec.opsets``) or the input ``layout`` (``FormatSpec.layouts``). Runs before any export."""
    spec = format_spec(fmt)
    if precision not in spec.precisions:
        raise ConfigError(
            f"format {fmt} does not support precision {precision} (supported: {', '.join(spec.precisions)})"
        )
    if opset is not None and spec.opsets is None:
        onnx_based = ", ".join(f.name for f in formats().values() if f.opsets is not None)
        raise ConfigError(f"--opset applies to ONNX-based formats ({onnx_based}), not {fmt}")
    if layout not in spec.layouts:
        raise ConfigError(f"{fmt} takes {' or '.join(spec.layouts)} input only (got --layout {layout})")


def suffix_map() -> dict[str, str]:
    """Artifact suffix (lower case, with the dot) -> format name."""
    return {s: f.name for f in formats().values() for s in f.suffixes}


def format_of(path: str | Path) -> str:
    """An artifact's format from its suffix (raises :class:`UnknownFormatError` listing the known suffixes)."""
    suffix = Path(path).suffix.lower()
    table = suffix_map()
    if suffix not in table:
        raise UnknownFormatError(suffix or str(path), table)
    return table[suffix]


def existing_artifact_format(path: str | Path) -> str:
    """The format of an artifact that must exist: :class:`~edgedeploy.errors.ArtifactError` when ``path`` is
    missing, or is a directory for a format whose artifacts are files (everything but CoreML's ``.mlpackage``)."""
    from edgedeploy.errors import ArtifactError

    path = Path(path)
    if not path.exists():
        raise ArtifactError(f"model file not found: {path}")
    fmt = format_of(path)
    if path.is_dir() and not format_spec(fmt).directory:
        raise ArtifactError(f"{path} is a directory, not a {fmt} file")
    return fmt


def is_artifact_path(path: str | Path) -> bool:
    """Whether ``path`` ends in a registered artifact suffix."""
    return Path(path).suffix.lower() in suffix_map()


def side_files(path: str | Path) -> list[Path]:
    """Files that travel with artifact ``path`` (its format's ``side_suffixes``): required ones always listed (the
    caller checks they exist), optional ones only when present. A path of no registered format has none."""
    path = Path(path)
    fmt = suffix_map().get(path.suffix.lower())
    if fmt is None:
        return []
    spec = _FORMATS[fmt]
    out = [path.with_suffix(s) for s in spec.side_suffixes]
    return out if spec.side_required else [p for p in out if p.is_file()]


def runtimes() -> dict[str, RuntimeSpec]:
    """Every registered runtime, in registration order."""
    load_entry_points()
    return dict(_RUNTIMES)


def runtime_names(*, with_aliases: bool = False) -> list[str]:
    """The names ``--runtime`` accepts."""
    specs = runtimes().values()
    return [n for r in specs for n in ((r.name, *r.aliases) if with_aliases else (r.name,))]


def runtime_spec(name: str) -> RuntimeSpec:
    """The spec of runtime ``name`` or one of its aliases; :class:`UnknownRuntimeError` otherwise."""
    specs = runtimes()
    if name in specs:
        return specs[name]
    for r in specs.values():
        if name in r.aliases:
            return r
    raise UnknownRuntimeError(name, runtime_names(with_aliases=True))


def default_runtime(fmt: str) -> str:
    """The runtime used for parity and benchmarks of format ``fmt`` unless the user picks one."""
    if fmt == "torch":
        return "torch"
    return format_spec(fmt).default_runtime


def runtimes_for(fmt: str) -> list[str]:
    """Runtimes that can run ``fmt`` files, the default first."""
    names = [r.name for r in runtimes().values() if fmt in r.formats]
    default = default_runtime(fmt)
    return sorted(names, key=lambda n: n != default)


def check_runtime_runs(runtime: str, fmt: str) -> RuntimeSpec:
    """The runtime's spec, or :class:`ConfigError` when it cannot run ``fmt`` files."""
    spec = runtime_spec(runtime)
    if fmt not in spec.formats:
        raise ConfigError(f"runtime {spec.name} cannot run {fmt} files (it runs: {', '.join(spec.formats)})")
    return spec


def device_runtime_names() -> list[str]:
    """Runtime names the board-side runner can import (``RuntimeSpec.device_name``), without duplicates."""
    out: list[str] = []
    for r in runtimes().values():
        if r.device_name and r.device_name not in out:
            out.append(r.device_name)
    return out


def device_runtime(name: str) -> str:
    """The board runner's name for runtime ``name`` (or an alias); :class:`UnknownRuntimeError` otherwise."""
    for r in runtimes().values():
        if r.device_name and name in (r.name, r.device_name, *r.aliases):
            return r.device_name
    raise UnknownRuntimeError(name, device_runtime_names())


def native_tools() -> dict[str, str]:
    """Board-side native benchmark tool -> the runtime whose artifact format it runs (``RuntimeSpec.native_tools``)."""
    return {t: r.name for r in runtimes().values() for t in r.native_tools}


def profiler_runtimes() -> list[str]:
    """Runtimes with a per-op profiler (``RuntimeSpec.profiler``)."""
    return [r.name for r in runtimes().values() if r.profiler]


def families() -> dict[str, FamilySpec]:
    """Every registered model family."""
    load_entry_points()
    return dict(_FAMILIES)


def precision_choices() -> tuple[str, ...]:
    """Precisions offered by at least one format (for ``--precision`` choices)."""
    have = {p for f in formats().values() for p in f.precisions}
    return tuple(p for p in PRECISIONS if p in have) + tuple(sorted(have - set(PRECISIONS)))


def import_implementation(module: str, what: str) -> None:
    """Import the module a spec names (it registers the implementation); a missing one is a ConfigError."""
    import importlib

    try:
        importlib.import_module(module)
    except ModuleNotFoundError as e:
        if e.name and module.startswith(e.name):
            raise ConfigError(f"{what}: its module {module} is not installed") from e
        raise


# ------------------------------------------------------------------------------------------------ built-ins
LITERT_NO_PROFILER = (
    "per-operator profiling is not available for litert: ai_edge_litert's Python Interpreter exposes no op "
    "profiler (TFLite's op profiling lives in the C++ benchmark_model tool)"
)

for _spec in (
    FormatSpec("onnx", (".onnx",), "edgedeploy.export.onnx", "onnx", PRECISIONS, "onnxruntime",
               side_suffixes=(".onnx.data", ".data"), onnx_based=True, from_onnx=True, bisectable=True,
               description="ONNX via torch.onnx.export + onnxsim", opsets=OPSET_RANGE,
               options=("int8_mode", "calibration")),
    FormatSpec("mnn", (".mnn",), "edgedeploy.export.mnn", "mnn", PRECISIONS, "mnn",
               onnx_based=True, from_onnx=True, bisectable=True,
               description="MNN from ONNX with MNN's compiled converter (in-process)", opsets=OPSET_RANGE,
               options=("int8_mode", "calibration"),
               onnx_passes=("wrap_pad",)),  # MNN: "MNN only support ['constant', 'reflect'] Pad mode"
    FormatSpec("tflite", (".tflite",), "edgedeploy.export.tflite", "tflite", PRECISIONS, "litert",
               layouts=LAYOUTS, description="TFLite with litert-torch", options=("int8_mode", "calibration"),
               # litert-torch: "'tfl.mul' op operands don't have broadcast-compatible shapes" after an expand_as
               graph_passes=("broadcast_expand",)),
    FormatSpec("coreml", (".mlpackage", ".mlmodel"), "edgedeploy.export.coreml", "coreml", PRECISIONS, "coreml",
               description="CoreML ML program with coremltools via torch.export (iOS 16+)", directory=True),
    FormatSpec("ncnn", (".param",), "edgedeploy.export.ncnn", "ncnn", ("fp32", "fp16"), "ncnn",
               side_suffixes=(".bin",), side_required=True, from_onnx=True,
               description="ncnn .param + .bin pair with pnnx from TorchScript (or an ONNX file)",
               # an ONNX file's 5-D qkv split (PaddleOCR SVTR): "permute 5-rank tensor is not supported yet!"
               onnx_passes=("qkv_5d",),
               # pnnx: "permute 5-rank tensor is not supported yet", torch.unbind of a 5-D tensor, "slice with step 2",
               # "chunk with non-perfect divided size"; a BatchNorm1d over tokens merged into the batch axis (NaN)
               graph_passes=("high_rank_to_4d", "strided_slice", "uneven_split", "batch_flatten_norm")),
):  # fmt: skip
    register_format(_spec)

for _rt in (
    RuntimeSpec("onnxruntime", "edgedeploy.runtimes.onnxruntime_rt", ("onnx",), "onnx", "onnxruntime",
                device_name="onnxruntime", aliases=("ort",), profiler="edgedeploy.opprof.ort",
                native_tools=("onnxruntime_perf_test",)),
    RuntimeSpec("mnn", "edgedeploy.runtimes.mnn_rt", ("mnn",), "mnn", "MNN", device_name="mnn",
                profiler="edgedeploy.opprof.mnn", native_tools=("mnn-benchmark", "mnn-runner")),
    RuntimeSpec("litert", "edgedeploy.runtimes.litert_rt", ("tflite",), "tflite", "ai_edge_litert",
                device_name="tflite", aliases=("tflite", "ai-edge-litert", "tflite_runtime"),
                profiler_missing=LITERT_NO_PROFILER, native_tools=("tflite-benchmark_model",)),
    RuntimeSpec("ncnn", "edgedeploy.runtimes.ncnn_rt", ("ncnn",), "ncnn", "ncnn", device_name="ncnn",
                native_tools=("benchncnn",)),
    RuntimeSpec("coreml", "edgedeploy.runtimes.coreml_rt", ("coreml",), "coreml", "coremltools"),
    RuntimeSpec("torch", "edgedeploy.runtimes.torch_rt", ("torch",), "", "torch", host_only=True,
                profiler="edgedeploy.opprof.torch_prof"),
):  # fmt: skip
    register_runtime_spec(_rt)

for _fam in ("edgeformer", "mobilevit", "edgevit", "emo", "parc", "baselines"):
    register_family_spec(FamilySpec(_fam, f"edgedeploy.nn.{_fam}"))
