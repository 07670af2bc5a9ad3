"""Model cards: one YAML file per variant under ``models/``.

A card names the family (which builder in :mod:`edgedeploy.nn` makes the module), the family's
hyper-parameters, the default input size (square, NCHW, RGB), and the paper's reported figures with their
source, beside the official implementation the code follows.

Example (``models/edgeformer_s.yaml``)::

    name: edgeformer_s
    family: edgeformer
    input_size: 256
    num_classes: 1000
    hyper: {...}            # passed to the family builder
    paper: {params: 5.0e6, macs: 1.7e9, source: "EdgeFormer paper, Table 2", note: ...}
    official: {repo: hkzhang91/EdgeFormer, config: config/classification/edgeformer/edgeformer_s.yaml,
               params: 5037088}

Raises :class:`~edgedeploy.errors.ConfigError` naming the file and the field for a malformed card.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from edgedeploy._paths import find_yaml_files, load_yaml_config
from edgedeploy.errors import ConfigError, UnknownModelError


class PaperFigures(BaseModel):
    """Figures as a paper reports them (rounded): counts, not millions."""

    model_config = ConfigDict(extra="forbid")
    params: float | None = Field(None, description="parameters (count)")
    macs: float | None = Field(None, description="multiply-accumulates at input_size (count)")
    top1: float | None = Field(None, description="ImageNet-1k top-1 accuracy (%)")
    latency_ms: dict[str, float] = Field(default_factory=dict, description="device -> ms, as reported")
    source: str = Field(..., description="paper and table / section the figures come from")
    note: str | None = None


class OfficialImpl(BaseModel):
    """The official implementation the code follows and the parameter count it builds."""

    model_config = ConfigDict(extra="forbid")
    repo: str
    config: str | None = None
    params: int | None = Field(None, description="parameter count of the official module (exact integer)")
    note: str | None = None


class ModelCard(BaseModel):
    """A model variant: see the module docstring for the file layout."""

    model_config = ConfigDict(extra="forbid")
    name: str
    family: str
    description: str = ""
    input_size: int = Field(..., gt=0, description="default square input side (pixels)")
    num_classes: int = 1000
    resizable: bool = Field(True, description="whether other input sizes are supported")
    min_input_multiple: int = Field(32, description="input side must be a multiple of this")
    hyper: dict[str, Any] = Field(default_factory=dict)
    paper: PaperFigures | None = None
    official: OfficialImpl | None = None
    path: Path | None = Field(None, exclude=True)

    @field_validator("name")
    @classmethod
    def _name(cls, v: str) -> str:  # the artifact's file name: one path component (never outside --out)
        from edgedeploy.errors import ConfigError
        from edgedeploy.usercode import check_name

        try:
            return check_name(v, "the name")
        except ConfigError as e:
            raise ValueError(str(e)) from None


def load_card(path: str | Path) -> ModelCard:
    """Read and validate one card; :class:`ConfigError` names the file and field on failure."""
    return load_yaml_config(path, ModelCard, "model card")


def is_user_card(path: str | Path) -> bool:
    """Whether the YAML file at ``path`` is a user model card (it has ``entry:``; :mod:`edgedeploy.spec`)."""
    import yaml

    try:
        data = yaml.safe_load(Path(path).read_text())
    except (OSError, yaml.YAMLError):
        return False
    return isinstance(data, dict) and "entry" in data


def model_registry() -> dict[str, tuple[str, Path]]:
    """The one model registry: every card under ``models/`` (zoo and user), ``name -> ("zoo" | "user", path)``.

    :func:`edgedeploy.spec.resolve_model` looks names up here; zoo cards build through their family's builder,
    user cards through their ``entry:`` callable.
    """
    return {stem: ("user" if is_user_card(p) else "zoo", p) for stem, p in find_yaml_files("models").items()}


def all_cards() -> dict[str, ModelCard]:
    """Every zoo card found (see :mod:`edgedeploy._paths` for the search order), keyed by name.

    User model cards (with ``entry:``) in the same folders are entries of :func:`model_registry`, not zoo cards.
    """
    return {stem: load_card(p) for stem, (kind, p) in model_registry().items() if kind == "zoo"}


def get_card(name: str) -> ModelCard:
    """The card called ``name``, or a path to a card file.

    Raises :class:`UnknownModelError` (with close-name suggestions) when there is none.
    """
    if name.endswith((".yaml", ".yml")) and Path(name).is_file():
        return load_card(name)
    files = find_yaml_files("models")
    if name not in files:
        raise UnknownModelError(name, files)
    return load_card(files[name])


H = TypeVar("H", bound=BaseModel)


def parse_hyper(card: ModelCard, schema: type[H]) -> H:
    """Validate ``card.hyper`` with a family's pydantic ``schema``.

    Raises :class:`ConfigError` naming the card file and the field (``hyper.<field>``).
    """
    try:
        return schema(**card.hyper)
    except ValidationError as e:
        err = e.errors()[0]
        field = ".".join(str(x) for x in err["loc"])
        raise ConfigError(f"model card {card.path or card.name}: field 'hyper.{field}': {err['msg']}") from e
