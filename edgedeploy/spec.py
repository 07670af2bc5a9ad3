"""What a user means by "a model": one resolver for every form ``export`` / ``bench`` accept.

:func:`resolve_model` turns any of these into a :class:`ModelSource`:

* an ``nn.Module`` (``input_shape`` or ``example`` required);
* a zoo name (``edgeformer_s``: a card under ``models/``) or a path to a zoo card (YAML with ``family:``);
* a user model card: YAML with ``entry:`` (a callable spec, relative paths resolved against the card's folder),
  ``input_shape`` ``[1, 3, H, W]``, optional ``mean`` / ``std`` (per-channel, on the [0, 1] pixel scale;
  ImageNet's by default), ``output`` (``classifier`` — class scores, top-1 gated in parity — or ``dense`` /
  ``features`` / ``detection`` / ``other``), ``name``, ``description``, ``kwargs`` (passed to the callable).
  A user card under ``models/`` is found by name like a zoo card (one model registry);
* ``path/to/file.py:callable`` or ``package.module:callable`` — the callable (no arguments, or the card's
  ``kwargs``) returns an ``nn.Module``;
* an ``.onnx`` file (input shape from the file, or ``input_shape`` when its dims are dynamic).

Input shapes are NCHW ``(1, C, H, W)``; H and W may differ. Errors are one line: :class:`ArtifactError` (file not
found), :class:`ConfigError` (bad spec, missing / bad input shape, callable raised or returned no module,
dynamic ONNX dims), :class:`UnknownModelError` (a name that is neither a zoo model nor a spec).
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import re
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from edgedeploy.compat import ensure_torchvision
from edgedeploy.errors import ArtifactError, ConfigError, UserCodeError
from edgedeploy.usercode import check_name, user_code

if TYPE_CHECKING:
    import torch
    from torch import nn

    from edgedeploy.cards import ModelCard

Kind = Literal["zoo", "card", "callable", "module", "onnx"]
OUTPUT_KINDS = ("classifier", "dense", "features", "detection", "other", "auto")
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
#: the mean / std of a non-RGB input (1 or C > 3 channels) when none is given: one value for every channel, the
#: grey photo's convention of :func:`edgedeploy.data.model_input`
GREY_MEAN, GREY_STD = (0.5,), (0.25,)
_CALLABLE = re.compile(r"^(?P<target>[^:]+):(?P<attr>[A-Za-z_][\w.]*)$")
_DOTTED = re.compile(r"^[A-Za-z_][\w]*(\.[A-Za-z_][\w]*)*$")


def default_normalisation(channels: int) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """``(mean, std)`` when none is given: ImageNet's for RGB (3 channels), one grey value otherwise (3 values
    cannot broadcast over a 1-channel input: they made the photo 3-channel and the export traced the wrong shape)."""
    return (IMAGENET_MEAN, IMAGENET_STD) if channels == 3 else (GREY_MEAN, GREY_STD)


class UserModelCard(BaseModel):
    """A user's model card (see the module docstring): a callable spec plus what export needs to know."""

    model_config = ConfigDict(extra="forbid")
    entry: str = Field(..., description="file.py:callable or package.module:callable returning an nn.Module")
    name: str | None = None
    description: str = ""
    input_shape: list[int] = Field(..., description="NCHW, batch 1: [1, C, H, W]")
    mean: list[float] | None = Field(None, description="per-channel mean on the [0, 1] pixel scale")
    std: list[float] | None = Field(None, description="per-channel std on the [0, 1] pixel scale")
    output: str = Field("auto", description="classifier | dense | features | detection | other | auto")
    kwargs: dict[str, Any] = Field(default_factory=dict, description="keyword arguments for the callable")
    path: Path | None = Field(None, exclude=True)

    @field_validator("input_shape")
    @classmethod
    def _shape(cls, v: list[int]) -> list[int]:
        try:
            return list(check_input_shape(v))
        except ConfigError as e:
            raise ValueError(str(e).removeprefix("--input-shape ")) from None

    @field_validator("name")
    @classmethod
    def _name(cls, v: str | None) -> str | None:
        if v is not None:
            try:
                check_name(v, "the name")
            except ConfigError as e:
                raise ValueError(str(e)) from None
        return v

    @field_validator("output")
    @classmethod
    def _output(cls, v: str) -> str:
        if v not in OUTPUT_KINDS:
            raise ValueError(f"must be one of {', '.join(OUTPUT_KINDS)} (got {v!r})")
        return v


@dataclass
class ModelSource:
    """A resolved model: where it comes from, how to build it, and what its input looks like.

    ``input_shape`` is NCHW ``(1, C, H, W)``. ``output`` is the output kind (``auto``: class scores when the
    single output is 2-D ``(1, N)``). ``mean`` / ``std`` preprocess the real photo used for parity and timing
    (default: ImageNet's for C == 3, 0.5 / 0.25 for every channel otherwise).
    ``card`` is the zoo card (``kind == "zoo"``); ``onnx_path`` the source file (``kind == "onnx"``).
    """

    name: str
    kind: Kind
    spec: str
    input_shape: tuple[int, ...]
    mean: tuple[float, ...] = ()
    std: tuple[float, ...] = ()
    output: str = "auto"
    family: str | None = None
    card: ModelCard | None = None
    onnx_path: Path | None = None
    factory: Callable[[], nn.Module] | None = field(default=None, repr=False)
    module: nn.Module | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        mean, std = default_normalisation(int(self.input_shape[1]))
        self.mean, self.std = self.mean or mean, self.std or std

    @property
    def input_size(self) -> int:
        """The square side (zoo models), or the height for non-square inputs."""
        return int(self.input_shape[2])

    @property
    def is_zoo(self) -> bool:
        return self.kind == "zoo"

    def build(self, weights: str | Path | None = None) -> nn.Module:
        """The ``nn.Module`` in eval mode (zoo: seeded build at the input size; else the user's, built once).

        ``weights`` loads a local state_dict strictly (:func:`edgedeploy.zoo.load_weights`). Raises
        :class:`ConfigError` for an ONNX source (there is no module).
        """
        from edgedeploy.zoo import build_model, load_weights

        if self.kind == "onnx":
            raise ConfigError(f"{self.spec} is an ONNX file: there is no PyTorch module to build")
        if self.kind == "zoo":
            assert self.card is not None
            return build_model(self.card, self.input_size, weights=weights)
        if self.module is None:
            assert self.factory is not None
            self.module = _check_module(self.factory(), self.spec)
        module = self.module.eval()
        if weights is not None:
            load_weights(module, weights)
        return module

    def example(self) -> torch.Tensor:
        """The real photo at the input shape, with this model's mean / std: ``(1, C, H, W)`` float32."""
        import torch

        from edgedeploy.data import model_input

        return torch.from_numpy(model_input(self.input_shape, self.mean, self.std))

    def describe(self) -> dict[str, Any]:
        """What the manifest records under ``source``."""
        out: dict[str, Any] = {"kind": self.kind, "spec": self.spec, "input_shape": list(self.input_shape)}
        if self.kind != "zoo":
            out.update(mean=list(self.mean), std=list(self.std), output=self.output)
        if self.onnx_path is not None:
            out["sha256"] = _sha256(self.onnx_path)
        return out


def parse_input_shape(text: str | Sequence[int] | None) -> tuple[int, ...] | None:
    """``"1,3,96,160"`` (or ``1x3x96x160``, or a sequence) → ``(1, 3, 96, 160)``; :class:`ConfigError` otherwise."""
    if text is None:
        return None
    if isinstance(text, str):
        parts = [p for p in re.split(r"[,x×\s]+", text.strip().strip("()[]")) if p]
        try:
            dims = [int(p) for p in parts]
        except ValueError:
            raise ConfigError(f"--input-shape must be 4 integers N,C,H,W such as 1,3,224,224 (got {text!r})") from None
        return check_input_shape(dims)
    return check_input_shape(list(text))


def check_input_shape(dims: Sequence[int]) -> tuple[int, ...]:
    """An NCHW batch-1 shape ``(1, C, H, W)`` with positive dims, or :class:`ConfigError` saying what is wrong."""
    dims = [int(d) for d in dims]
    shown = ",".join(str(d) for d in dims)
    if len(dims) != 4:
        raise ConfigError(f"--input-shape must have 4 dims N,C,H,W (got {len(dims)}: {shown})")
    if any(d <= 0 for d in dims):
        raise ConfigError(f"--input-shape dims must be positive (got {shown})")
    if dims[0] != 1:
        raise ConfigError(f"--input-shape must have batch 1 (got {shown}); edgedeploy exports batch-1 models")
    from edgedeploy.limits import check_input_shape_bounds

    check_input_shape_bounds(dims)
    return tuple(dims)


def is_spec(text: str) -> bool:
    """Whether ``text`` names something other than a zoo model (a file, or a ``module:callable``)."""
    return text.endswith((".onnx", ".yaml", ".yml", ".py")) or bool(_CALLABLE.match(text)) or Path(text).exists()


def resolve_model(
    model: Any,
    *,
    input_shape: str | Sequence[int] | None = None,
    example: torch.Tensor | None = None,
    name: str | None = None,
    input_size: int | None = None,
) -> ModelSource:
    """The :class:`ModelSource` for any accepted ``model`` (see the module docstring).

    ``input_shape`` overrides a card's; ``example`` (a ``(1, C, H, W)`` tensor) gives the shape of a bare module;
    ``input_size`` is the zoo's square side. Raises the errors listed in the module docstring.
    """
    if name is not None:
        check_name(name)  # one path component: the artifact's file name (never outside --out)
    shape = parse_input_shape(input_shape)
    if example is not None:
        ex_shape = check_input_shape(tuple(example.shape))
        if shape is not None and shape != ex_shape:
            raise ConfigError(f"input_shape {shape} differs from the example's shape {ex_shape}")
        shape = ex_shape
    if isinstance(model, ModelSource):
        return model
    from torch import nn

    if isinstance(model, nn.Module):
        if shape is None:
            raise ConfigError("a bare nn.Module needs input_shape=(1, C, H, W) or example=<tensor>")
        label = name or _snake(type(model).__name__)
        return ModelSource(label, "module", f"<{type(model).__module__}.{type(model).__qualname__}>", shape,
                           module=model.eval())  # fmt: skip
    if isinstance(model, Path):
        model = str(model)
    if not isinstance(model, str):
        raise ConfigError(f"cannot export a {type(model).__name__}: give an nn.Module, a zoo name, a spec or a file")
    if model.endswith(".onnx"):
        return _onnx_source(model, shape, name)
    if model.endswith((".yaml", ".yml")):
        return _card_source(model, shape, name, input_size)
    m = _CALLABLE.match(model)
    if m and (m.group("target").endswith(".py") or _DOTTED.match(m.group("target"))):
        if m.group("target").endswith(".py") and not Path(m.group("target")).is_file():  # before "needs a shape"
            raise ArtifactError(f"{model}: model file not found: {m.group('target')}")
        if shape is None:
            raise ConfigError(f"{model}: --input-shape 1,C,H,W is required for a callable without a model card")
        factory = callable_factory(model)
        return ModelSource(name or callable_name(m.group("target"), m.group("attr")), "callable", model, shape,
                           factory=factory)  # fmt: skip
    if model.endswith(".py") or ":" in model:
        raise ConfigError(f"model spec {model!r} must be path/to/file.py:callable or package.module:callable")
    return _registry_source(model, shape, name, input_size)


def _registry_source(model: str, shape: tuple[int, ...] | None, name: str | None, size: int | None) -> ModelSource:
    """A name in the one model registry: zoo cards and user cards under ``models/``."""
    from edgedeploy.cards import model_registry
    from edgedeploy.errors import UnknownModelError

    entries = model_registry()
    if model not in entries:
        if Path(model).exists():
            raise ConfigError(f"{model}: not a model spec (expected .onnx, .yaml, or file.py:callable)")
        raise UnknownModelError(model, entries)
    return _card_source(str(entries[model][1]), shape, name, size, spec=model)


def _card_source(
    path: str, shape: tuple[int, ...] | None, name: str | None, size: int | None, spec: str | None = None
) -> ModelSource:
    from edgedeploy._paths import load_yaml_config, read_yaml
    from edgedeploy.cards import load_card

    p = Path(path)
    if not p.is_file():
        raise ArtifactError(f"model card not found: {p}")
    data = read_yaml(p, "model card")
    if isinstance(data, dict) and "entry" in data:
        card: UserModelCard = load_yaml_config(p, UserModelCard, "model card")
        entry = card.entry
        m = _CALLABLE.match(entry)
        if m and m.group("target").endswith(".py") and not Path(m.group("target")).is_absolute():
            entry = f"{(p.parent / m.group('target')).resolve()}:{m.group('attr')}"
        factory = callable_factory(entry, card.kwargs, where=f"model card {p}: field 'entry'")
        ch = check_input_shape(card.input_shape)
        final = shape or ch
        nch = final[1]
        mean, std = default_normalisation(nch)
        mean = tuple(card.mean) if card.mean is not None else mean
        std = tuple(card.std) if card.std is not None else std
        for label, v in (("mean", mean), ("std", std)):
            if len(v) not in (1, nch):
                raise ConfigError(f"model card {p}: field '{label}': {len(v)} values for {nch} input channels")
        if any(s <= 0 for s in std):
            raise ConfigError(f"model card {p}: field 'std': values must be positive")
        return ModelSource(name or card.name or p.stem, "card", spec or str(p), final, mean, std, card.output,
                           factory=factory)  # fmt: skip
    zoo = load_card(p)
    return _zoo_source(zoo, shape, name, size, spec or str(p))


def _zoo_source(card: ModelCard, shape: tuple[int, ...] | None, name: str | None, size: int | None,
                spec: str) -> ModelSource:  # fmt: skip
    if shape is not None:
        if shape[1] != 3 or shape[2] != shape[3]:
            raise ConfigError(f"{card.name} takes square RGB input (1,3,S,S); got --input-shape "
                              f"{','.join(map(str, shape))}")  # fmt: skip
        if size is not None and size != shape[2]:
            raise ConfigError(f"--input-size {size} and --input-shape {','.join(map(str, shape))} disagree")
        size = shape[2]
    side = card.input_size if size is None else size  # 0 is an error, not the default
    from edgedeploy.zoo import check_input_size

    check_input_size(card, side)
    return ModelSource(name or card.name, "zoo", spec, (1, 3, side, side), output="classifier", family=card.family,
                       card=card)  # fmt: skip


def zoo_source(card: ModelCard | str, input_size: int | None = None) -> ModelSource:
    """The :class:`ModelSource` of a zoo card (or name) at ``input_size`` (default: the card's)."""
    from edgedeploy.cards import get_card

    c = get_card(card) if isinstance(card, str) else card
    return _zoo_source(c, None, None, input_size, c.name)


def _onnx_source(path: str, shape: tuple[int, ...] | None, name: str | None) -> ModelSource:

    p = Path(path)
    if not p.is_file():
        raise ArtifactError(f"ONNX file not found: {p}")
    final = onnx_input_shape(p, shape)
    return ModelSource(name or p.stem, "onnx", str(p), final, onnx_path=p.resolve())


def spec_relative_to(spec: str, base: Path) -> str:
    """``spec`` with a relative path (``net.onnx``, ``card.yaml``, ``./net.py:build``) made relative to the folder
    ``base`` (a suite file's); zoo names, module specs (``pkg.mod:fn``) and absolute paths are returned as they are."""
    m = _CALLABLE.match(spec)
    if m and m.group("target").endswith(".py"):
        target, attr = m.group("target"), m.group("attr")
        return spec if Path(target).is_absolute() else f"{base / target}:{attr}"
    if spec.endswith((".onnx", ".yaml", ".yml")) and not Path(spec).is_absolute():
        return str(base / spec)
    return spec


def callable_factory(spec: str, kwargs: dict[str, Any] | None = None, where: str | None = None) -> Callable[[], Any]:
    """A zero-argument function calling ``file.py:callable`` / ``package.module:callable`` (imported now).

    Raises :class:`ArtifactError` when the file is missing, :class:`ConfigError` when the module cannot be
    imported or has no such attribute, or the attribute is not callable.
    """
    what = where or spec
    m = _CALLABLE.match(spec)
    if not m:
        raise ConfigError(f"{what}: {spec!r} is not file.py:callable or package.module:callable")
    target, attr = m.group("target"), m.group("attr")
    ensure_torchvision()  # a user's `import timm` / `import torchvision` works beside the pinned CPU torch
    if target.endswith(".py"):
        path = Path(target)
        if not path.is_file():
            raise ArtifactError(f"{what}: model file not found: {path}")
        mod_name = "edgedeploy_user_" + hashlib.sha256(str(path.resolve()).encode()).hexdigest()[:12]
        module = sys.modules.get(mod_name)
        if module is None:
            loader_spec = importlib.util.spec_from_file_location(mod_name, path)
            if loader_spec is None or loader_spec.loader is None:
                raise ConfigError(f"{what}: cannot import {path}")
            module = importlib.util.module_from_spec(loader_spec)
            sys.modules[mod_name] = module
            try:
                with user_code(what, f" while importing {path}"):
                    loader_spec.loader.exec_module(module)
            except BaseException:
                sys.modules.pop(mod_name, None)
                raise
    else:
        try:
            module = importlib.import_module(target)
        except ModuleNotFoundError as e:
            raise ConfigError(f"{what}: module {target!r} not found ({e.name} is not importable)") from e
        except Exception as e:
            raise UserCodeError(
                f"{what}: your module raised {type(e).__name__}: {_first_line(e)} while importing {target}"
            ) from e
        except (SystemExit, KeyboardInterrupt) as e:
            with user_code(what, f" while importing {target}"):
                raise e
    obj: Any = module
    for part in attr.split("."):
        if not hasattr(obj, part):
            raise ConfigError(f"{what}: {target} has no attribute {attr!r}")
        obj = getattr(obj, part)
    if not callable(obj):
        raise ConfigError(f"{what}: {attr} in {target} is not callable")
    fn, kw = obj, dict(kwargs or {})

    def factory() -> Any:
        with user_code(spec, f" (calling {attr}())"):
            return fn(**kw)

    return factory


def _check_module(obj: Any, spec: str) -> nn.Module:
    from torch import nn

    if not isinstance(obj, nn.Module):
        raise ConfigError(f"{spec}: the callable returned {type(obj).__name__}, not a torch.nn.Module")
    return obj


def _first_line(e: BaseException) -> str:
    text = str(e).strip()
    return text.splitlines()[0] if text else "(no message)"


#: callables with these generic names give the artifact their file's / module's name instead
GENERIC_CALLABLES = ("build", "main", "model", "create", "create_model", "get_model", "make", "make_model")


def callable_name(target: str, attr: str) -> str:
    """The artifact name of a ``target:attr`` spec: the callable's name in snake case (``MyNet`` → ``my_net``),
    or the file's / module's last component when the callable is generic (``user_net.py:build`` → ``user_net``)."""
    last = attr.split(".")[-1]
    if last in GENERIC_CALLABLES:
        return _snake(Path(target).stem if target.endswith(".py") else target.split(".")[-1])
    return _snake(last)


def _snake(name: str) -> str:
    return re.sub(r"(?<!^)(?=[A-Z])", "_", name).lower().strip("_") or "model"


def _sha256(path: Path) -> str:
    from edgedeploy._util import sha256_file

    return sha256_file(path)


def import_onnx() -> Any:
    """The ``onnx`` package; :class:`~edgedeploy.errors.MissingExtraError` naming the ONNX format's extra."""
    try:
        import onnx
    except ImportError as e:
        from edgedeploy.errors import MissingExtraError
        from edgedeploy.registry import format_spec

        raise MissingExtraError("onnx", format_spec("onnx").extra, "reading ONNX files") from e
    return onnx


def graph_inputs(model: Any) -> list[Any]:
    """The graph's real inputs (initializers listed as inputs by old exporters excluded)."""
    inits = {i.name for i in model.graph.initializer}
    return [i for i in model.graph.input if i.name not in inits]


def onnx_input_shape(path: Path, shape: tuple[int, ...] | None) -> tuple[int, ...]:
    """The concrete NCHW input shape of ``path``: its static dims, or ``shape`` (must agree with static dims).

    Raises :class:`ConfigError` for several inputs, a non-float input (named with its dtype), a non-4-D input,
    dynamic dims without ``shape`` or a ``shape`` that contradicts the file.
    """
    onnx = import_onnx()
    try:
        model = onnx.load(str(path), load_external_data=False)
    except Exception as e:
        raise ArtifactError(f"{path} is not a readable ONNX model: {str(e).strip().splitlines()[0]}") from e
    inputs = graph_inputs(model)
    if len(inputs) != 1:
        raise ConfigError(f"{path}: {len(inputs)} graph inputs ({', '.join(i.name for i in inputs)}); "
                          "edgedeploy exports single-input models")  # fmt: skip
    inp = inputs[0]
    elem = inp.type.tensor_type.elem_type
    floats = (onnx.TensorProto.FLOAT, onnx.TensorProto.FLOAT16, onnx.TensorProto.DOUBLE)
    if elem not in floats:
        kind = onnx.TensorProto.DataType.Name(elem).lower()
        raise ConfigError(f"{path}: input '{inp.name}' is {kind}: edgedeploy feeds images as float tensors (NCHW), "
                          "so it exports and checks models with a float32 / float16 / float64 input only")  # fmt: skip
    dims = [(d.dim_value if d.HasField("dim_value") and d.dim_value > 0 else (d.dim_param or "?"))
            for d in inp.type.tensor_type.shape.dim]  # fmt: skip
    shown = ",".join(str(d) for d in dims)
    if shape is not None:
        if len(dims) != len(shape):
            raise ConfigError(f"{path}: input '{inp.name}' has {len(dims)} dims ({shown}); "
                              f"--input-shape has {len(shape)}")  # fmt: skip
        for i, (d, s) in enumerate(zip(dims, shape, strict=True)):
            if isinstance(d, int) and d != s:
                raise ConfigError(f"{path}: input '{inp.name}' is {shown}; --input-shape "
                                  f"{','.join(map(str, shape))} differs at dim {i}")  # fmt: skip
        return tuple(shape)
    if len(dims) != 4:
        raise ConfigError(f"{path}: input '{inp.name}' has {len(dims)} dims ({shown}); expected NCHW (4 dims)")
    if not all(isinstance(d, int) for d in dims):
        raise ConfigError(f"{path}: input '{inp.name}' has dynamic dims ({shown}); give --input-shape 1,C,H,W")
    if dims[0] != 1:
        raise ConfigError(f"{path}: input '{inp.name}' has batch {dims[0]}; edgedeploy exports batch-1 models")
    return tuple(int(d) for d in dims)
