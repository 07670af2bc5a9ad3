"""Benchmark suites: one YAML file declaring the matrix ``edgedeploy bench --suite FILE`` runs.

A suite is models × formats × precisions × runtimes × devices, each case run ``runs`` times, minus ``exclude``
entries that show in the report as ``excluded: <reason>``. Example (``edgedeploy.yaml``)::

    name: latency
    models: [edgeformer_s, mobilevit_s, ./my_net.py:build, my_card.yaml, exported/net.onnx]
    formats: [onnx, mnn]            # default: the formats the chosen runtimes run
    precisions: [fp32]              # default: [fp32]
    runtimes: [onnxruntime, mnn]    # default: every runtime the device has
    devices: [rk3288]               # default: [local]; `--device` on the command line replaces this list
    iterations: 100                 # timed batch-1 runs per case
    warmup: 10
    threads: 4                      # default: one per pinned core on a board, all cores here
    runs: 3                         # each case is benchmarked this many times (compare keeps the fastest)
    case_timeout: 600               # s; an export or a timed run past it becomes a `timed out` case (default: none)
    exclude:
      - {model: mobilevit_s, runtime: mnn, precision: int8, reason: "MNN int8 LayerNorm drifts (issue 7)"}
      - {device: rk3288, format: onnx, reason: "no onnxruntime wheel for armv7l"}

A case exists for each (model, format, precision, runtime, device) where the runtime runs the format and the format
has the precision (both read from :mod:`edgedeploy.registry`, the one table of formats and runtimes). An ``exclude``
entry names any subset of ``model``, ``format``, ``precision``, ``runtime``, ``device`` and must give a ``reason``;
a case matching every key it names is excluded.

With no model and no ``--suite``, ``edgedeploy bench`` runs ``./edgedeploy.yaml`` if present, else
:func:`default_suite`: the seeds' comparison, EdgeFormer-S against MobileViT-S on every runtime the device has.

Errors: :func:`load_suite` raises :class:`~edgedeploy.errors.ConfigError` naming the file and the field
(``suite edgedeploy.yaml: field 'exclude.0.reason': Field required``).
"""

from __future__ import annotations

import importlib.util
import itertools
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from edgedeploy import limits, registry
from edgedeploy._paths import load_yaml_config
from edgedeploy.errors import ConfigError, EdgeDeployError

if TYPE_CHECKING:
    from edgedeploy.devices.profile import DeviceProfile

#: the file ``edgedeploy bench`` (no model, no ``--suite``) runs when it exists in the working directory
SUITE_FILE = "edgedeploy.yaml"
#: the seeds' comparison (README: EdgeFormer-S 353 ms vs MobileViT-S 457 ms on an RK3288)
DEFAULT_MODELS = ("edgeformer_s", "mobilevit_s")
#: the keys of a case, in report order
CASE_KEYS = ("model", "format", "precision", "runtime", "device")


def _check_format(name: str) -> str:
    registry.format_spec(name)  # UnknownFormatError (with suggestions) -> a ConfigError naming the field
    return name


def _check_runtime(name: str) -> str:
    return registry.runtime_spec(name).name  # aliases (ort, tflite) become the registry name


def _check_precision(name: str) -> str:
    if name not in registry.precision_choices():
        raise ValueError(f"unknown precision '{name}' (known: {', '.join(registry.precision_choices())})")
    return name


def _check_model(spec: str) -> str:
    """Zoo names are checked against the cards here; paths, ``file.py:callable`` specs and artifacts when exported."""
    looks_like_path = any(c in spec for c in "/:\\") or "." in Path(spec).name
    if not looks_like_path:
        from edgedeploy.cards import get_card

        get_card(spec)
    return spec


def _wrap(check, values: list[str]) -> list[str]:  # type: ignore[no-untyped-def]
    out = []
    for v in values:
        try:
            out.append(check(v))
        except EdgeDeployError as e:
            raise ValueError(str(e)) from None
    return out


class Exclude(BaseModel):
    """Cases to leave out: every key given must match; ``reason`` is shown in the report."""

    model_config = ConfigDict(extra="forbid")
    model: str | None = None
    format: str | None = None
    precision: str | None = None
    runtime: str | None = None
    device: str | None = None
    reason: str = Field(..., min_length=1, description="why these cases are left out (shown in the report)")

    @field_validator("format")
    @classmethod
    def _fmt(cls, v: str | None) -> str | None:
        return None if v is None else _wrap(_check_format, [v])[0]

    @field_validator("runtime")
    @classmethod
    def _rt(cls, v: str | None) -> str | None:
        return None if v is None else _wrap(_check_runtime, [v])[0]

    @field_validator("precision")
    @classmethod
    def _prec(cls, v: str | None) -> str | None:
        return None if v is None else _wrap(_check_precision, [v])[0]

    @model_validator(mode="after")
    def _some_key(self) -> Exclude:
        if all(getattr(self, k) is None for k in CASE_KEYS):
            raise ValueError(f"an exclude entry needs at least one of {', '.join(CASE_KEYS)} besides 'reason'")
        return self

    def matches(self, case: Case) -> bool:
        return all(getattr(self, k) in (None, getattr(case, k)) for k in CASE_KEYS)


class Suite(BaseModel):
    """A benchmark suite (see the module docstring for the file layout)."""

    model_config = ConfigDict(extra="forbid")

    name: str = "suite"
    models: list[str] = Field(..., min_length=1, description="anything export takes: zoo names, cards, files")
    formats: list[str] = Field(default_factory=list, description="default: the formats the runtimes run")
    precisions: list[str] = Field(default_factory=lambda: ["fp32"])
    runtimes: list[str] = Field(default_factory=list, description="default: every runtime the device has")
    devices: list[str] = Field(default_factory=lambda: ["local"], min_length=1)
    # the bounds of edgedeploy.limits (what `bench` accepts), so a suite is refused when loaded, not case by case
    iterations: int = Field(100, ge=limits.ITERATIONS[0], le=limits.ITERATIONS[1])
    warmup: int = Field(10, ge=limits.WARMUP[0], le=limits.WARMUP[1])
    threads: int | None = Field(None, ge=1, le=limits.MAX_THREADS)
    runs: int = Field(1, ge=1, le=100, description="benchmark each case this many times")
    input_size: int | None = Field(
        None, ge=limits.INPUT_SIZE[0], le=limits.INPUT_SIZE[1], description="square input side (default: each card's)"
    )
    case_timeout: float | None = Field(
        None, gt=0, le=86_400, description="s: an export or a timed run taking longer becomes a 'timed out' case"
    )
    exclude: list[Exclude] = Field(default_factory=list)
    path: Path | None = Field(None, exclude=True)

    @field_validator("models")
    @classmethod
    def _models(cls, v: list[str]) -> list[str]:
        return _wrap(_check_model, v)

    @field_validator("formats")
    @classmethod
    def _formats(cls, v: list[str]) -> list[str]:
        return _wrap(_check_format, v)

    @field_validator("runtimes")
    @classmethod
    def _runtimes(cls, v: list[str]) -> list[str]:
        return list(dict.fromkeys(_wrap(_check_runtime, v)))

    @field_validator("precisions")
    @classmethod
    def _precisions(cls, v: list[str]) -> list[str]:
        return _wrap(_check_precision, v)

    @model_validator(mode="after")
    def _formats_have_runtimes(self) -> Suite:
        if self.formats and self.runtimes:
            for f in self.formats:
                if not set(registry.runtimes_for(f)) & set(self.runtimes):
                    raise ValueError(
                        f"format '{f}' is run by none of the runtimes {self.runtimes} "
                        f"(it runs on: {', '.join(registry.runtimes_for(f))})"
                    )
        return self


@dataclass
class Case:
    """One cell of the matrix; ``excluded`` is the exclude entry's reason, or ``None``."""

    model: str
    format: str
    precision: str
    runtime: str
    device: str
    excluded: str | None = None

    @property
    def key(self) -> tuple[str, str, str, str, str]:
        return (self.model, self.format, self.precision, self.runtime, self.device)


def load_suite(path: str | Path) -> Suite:
    """Read and validate a suite file. Raises :class:`ConfigError` naming the file and the field."""
    p = Path(path)
    if p.is_dir():
        raise ConfigError(f"suite {p}: is a directory, not a suite file")
    if not p.is_file():
        raise ConfigError(f"suite {p}: no such file")
    return load_yaml_config(p, Suite, "suite")


def default_suite() -> Suite:
    """EdgeFormer-S against MobileViT-S, every runtime the device has, fp32, 100 iterations after 10 warm-up runs."""
    return Suite(name="edgeformer-vs-mobilevit", models=list(DEFAULT_MODELS))


def find_suite(cwd: Path | None = None) -> Suite:
    """``./edgedeploy.yaml`` when it exists (validated), else :func:`default_suite`. Raises :class:`ConfigError`
    when ``./edgedeploy.yaml`` exists but is not a file (a folder, a broken link): never silently the default."""
    f = (cwd or Path.cwd()) / SUITE_FILE
    if f.is_file():
        return load_suite(f)
    if f.exists() or f.is_symlink():
        raise ConfigError(f"suite {f}: is a directory, not a suite file" if f.is_dir() else
                          f"suite {f}: not a regular file")  # fmt: skip
    return default_suite()


def local_runtimes() -> list[str]:
    """Runtimes that can time a model in this process: package importable, not the eager torch reference, able to
    run here (CoreML needs macOS), and running a registered format."""
    known = set(registry.format_names())
    out = []
    for spec in registry.runtimes().values():
        if spec.host_only or not set(spec.formats) & known:
            continue
        if importlib.util.find_spec(spec.package) is None:
            continue
        from edgedeploy.runtimes.base import get_runtime

        try:
            rt = get_runtime(spec.name)
        except EdgeDeployError:
            continue
        if getattr(rt, "runs_here", lambda: True)():
            out.append(spec.name)
    return out


def device_runtimes(profile: DeviceProfile, probed: list[str] | None = None) -> list[str]:
    """Registry names of the runtimes ``profile``'s device has: this process's for ``local``; else the profile's
    ``runtimes`` list, or ``probed`` (the board runner's ``--probe`` answer), mapped from the runner's names."""
    if profile.transport == "local":
        return local_runtimes()
    names = profile.runtimes or probed or []
    known = set(registry.format_names())
    out = []
    for spec in registry.runtimes().values():
        if spec.device_name and spec.device_name in names and set(spec.formats) & known:
            out.append(spec.name)
    return out


def expand(suite: Suite, device: str, runtimes_here: list[str]) -> list[Case]:
    """The cases of ``suite`` on ``device`` (a profile name): runtimes from the suite, else ``runtimes_here``;
    formats from the suite, else those the runtimes run. Excluded cases are kept, marked with their reason."""
    runtimes = suite.runtimes or runtimes_here
    formats = suite.formats or list(
        dict.fromkeys(f for r in runtimes for f in registry.runtime_spec(r).formats if f in registry.format_names())
    )
    cases: list[Case] = []
    for model, fmt, prec in itertools.product(suite.models, formats, suite.precisions):
        if prec not in registry.format_spec(fmt).precisions:
            continue
        for rt in registry.runtimes_for(fmt):
            if rt not in runtimes:
                continue
            case = Case(model, fmt, prec, rt, device)
            hit = next((e for e in suite.exclude if e.matches(case)), None)
            case.excluded = hit.reason if hit else None
            cases.append(case)
    return cases
