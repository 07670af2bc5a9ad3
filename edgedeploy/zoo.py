"""The model zoo: model cards → ``nn.Module``; parameter and MAC counting.

Each family module in :mod:`edgedeploy.nn` registers a builder with :func:`register_family`; a builder takes the
card and the input side and returns an ``nn.Module`` mapping a float32 NCHW batch ``(N, 3, H, W)`` to logits
``(N, num_classes)``.

MACs are counted from the built module with torch's own ``FlopCounterMode`` (FLOPs = 2 × MACs): the
``conv + linear + matmul`` total is the convention of the EdgeFormer / MobileViT papers.
"""

from __future__ import annotations

import hashlib
import importlib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn

from edgedeploy.cards import ModelCard, all_cards, get_card
from edgedeploy.errors import ArtifactError, ConfigError, WeightsError

Builder = Callable[[ModelCard, int], nn.Module]
FAMILIES: dict[str, Builder] = {}

CheckpointAdapter = Callable[[dict[str, torch.Tensor], nn.Module], dict[str, torch.Tensor]]
CHECKPOINT_ADAPTERS: dict[str, CheckpointAdapter] = {}


def register_checkpoint_adapter(family: str) -> Callable[[CheckpointAdapter], CheckpointAdapter]:
    """Decorator: ``adapter(state_dict, module) -> state_dict`` renaming an official checkpoint's keys to ours.

    An adapter returns the state_dict unchanged when it does not recognise the layout.
    """

    def deco(fn: CheckpointAdapter) -> CheckpointAdapter:
        CHECKPOINT_ADAPTERS[family] = fn
        return fn

    return deco


def register_family(name: str) -> Callable[[Builder], Builder]:
    """Decorator: register ``builder(card, input_size) -> nn.Module`` for cards with ``family: name``."""

    def deco(fn: Builder) -> Builder:
        FAMILIES[name] = fn
        return fn

    return deco


def _load_families() -> None:
    """Import every family module of :func:`edgedeploy.registry.families` (built-in and plug-in; each registers
    its builder)."""
    from edgedeploy.registry import families

    for spec in families().values():
        try:
            importlib.import_module(spec.module)
        except ModuleNotFoundError as e:
            if e.name != spec.module:
                raise


def list_models() -> list[ModelCard]:
    """All model cards, sorted by family then name."""
    return sorted(all_cards().values(), key=lambda c: (c.family, c.name))


def check_input_size(card: ModelCard, input_size: int) -> None:
    """Raise :class:`ConfigError` when ``input_size`` is not one the architecture supports (or is outside
    :data:`edgedeploy.limits.INPUT_SIZE`)."""
    from edgedeploy.limits import check_input_size as check_range

    check_range(input_size)
    if input_size == card.input_size:
        return
    if not card.resizable:
        raise ConfigError(
            f"{card.name} supports only {card.input_size}x{card.input_size} input "
            f"(its kernels are fixed to the training resolution); got {input_size}"
        )
    if input_size % card.min_input_multiple:
        raise ConfigError(
            f"{card.name} needs an input side that is a multiple of {card.min_input_multiple}; got {input_size}"
        )


def build_model(
    model: str | ModelCard,
    input_size: int | None = None,
    weights: str | Path | None = None,
    seed: int = 0,
) -> nn.Module:
    """Build a model in eval mode from its card name (or card).

    Random initialisation is seeded (``seed``) so that two builds are identical; ``weights`` loads a local
    checkpoint with strict key and shape checks (:func:`load_weights`). Nothing is downloaded.

    Raises :class:`UnknownModelError`, :class:`ConfigError` (bad input size or family), :class:`WeightsError`.
    """
    card = get_card(model) if isinstance(model, str) else model
    size = card.input_size if input_size is None else input_size  # 0 is an error, not "the default"
    check_input_size(card, size)
    _load_families()
    if card.family not in FAMILIES:
        raise ConfigError(f"model card {card.path}: field 'family': no builder for family '{card.family}'")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        module = FAMILIES[card.family](card, size)
    module.eval()
    if weights is not None:
        load_weights(module, weights, card=card)
    return module


def _torch_load_reason(e: Exception) -> str:
    """One line for a ``torch.load`` failure (torch's weights-only refusal spans six lines of advice)."""
    lines = [ln.strip() for ln in str(e).splitlines() if ln.strip()]
    for ln in lines:
        if ln.startswith("WeightsUnpickler error:"):
            detail = ln.removeprefix("WeightsUnpickler error:").strip().split(". ")[0]
            return (
                f"it holds Python objects, not only tensors ({detail}); edgedeploy loads weights with "
                "torch.load(weights_only=True): save a plain state_dict"
            )
    return f"{type(e).__name__}: {lines[0] if lines else 'unreadable'}"


def load_weights(module: nn.Module, path: str | Path, card: ModelCard | None = None) -> None:
    """Load a local state_dict strictly; :class:`WeightsError` lists missing / unexpected / mismatched keys.

    Accepts a bare state_dict or a checkpoint dict holding one under ``state_dict`` / ``model``; key layouts of
    the official repositories are mapped by the family's adapter (:func:`register_checkpoint_adapter`).
    """
    path = Path(path)
    if not path.is_file():
        raise ArtifactError(f"weights file not found: {path}")
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:
        raise ArtifactError(f"cannot read weights file {path}: {_torch_load_reason(e)}") from e
    state = obj
    if isinstance(obj, dict):
        for key in ("state_dict", "model", "model_state_dict", "net"):
            if key in obj and isinstance(obj[key], dict):
                state = obj[key]
                break
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise WeightsError(f"{path} holds no state_dict of tensors")
    if card is not None and card.family in CHECKPOINT_ADAPTERS:
        state = CHECKPOINT_ADAPTERS[card.family](state, module)
    own = module.state_dict()
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    mismatched = sorted(
        f"{k}: checkpoint {tuple(state[k].shape)} vs model {tuple(own[k].shape)}"
        for k in set(own) & set(state)
        if tuple(state[k].shape) != tuple(own[k].shape)
    )
    if missing or unexpected or mismatched:
        parts = []
        for label, keys in (("missing", missing), ("unexpected", unexpected), ("mismatched", mismatched)):
            if keys:
                shown = ", ".join(keys[:5]) + (f", … ({len(keys)} in all)" if len(keys) > 5 else "")
                parts.append(f"{len(keys)} {label} [{shown}]")
        raise WeightsError(f"weights {path} do not match the model: " + "; ".join(parts))
    module.load_state_dict(state, strict=True)


def count_params(module: nn.Module) -> int:
    """Number of parameters (count, trainable or not; buffers excluded)."""
    return sum(p.numel() for p in module.parameters())


_MAC_OPS = {
    "convolution": "conv",
    "_convolution": "conv",
    "conv2d": "conv",
    "mm": "linear",
    "addmm": "linear",
    "bmm": "matmul",
    "baddbmm": "matmul",
    "_scaled_dot_product_efficient_attention": "matmul",
    "_scaled_dot_product_flash_attention": "matmul",
    "_scaled_dot_product_flash_attention_for_cpu": "matmul",
    "_scaled_dot_product_cudnn_attention": "matmul",
}


@dataclass
class MacCount:
    """MACs of one batch-1 forward pass by category (counts, FLOPs = 2 × MACs)."""

    conv: int = 0
    linear: int = 0
    matmul: int = 0
    other: dict[str, int] = field(default_factory=dict)

    @property
    def total(self) -> int:
        """conv + linear + matmul, the EdgeFormer / MobileViT convention."""
        return self.conv + self.linear + self.matmul


def count_macs(module: nn.Module, input_size: int) -> MacCount:
    """MACs of ``module`` on a ``(1, 3, input_size, input_size)`` input, from ``FlopCounterMode``."""
    from torch.utils.flop_counter import FlopCounterMode

    x = torch.zeros(1, 3, input_size, input_size)
    counter = FlopCounterMode(display=False)
    with torch.no_grad(), counter:
        module(x)
    result = MacCount()
    for op, flops in counter.get_flop_counts().get("Global", {}).items():
        name = getattr(op, "__name__", str(op)).split(".")[0]
        cat = _MAC_OPS.get(name)
        macs = int(flops) // 2
        if cat is None:
            result.other[name] = result.other.get(name, 0) + macs
        else:
            setattr(result, cat, getattr(result, cat) + macs)
    return result


def module_fingerprint(module: nn.Module) -> str:
    """sha256 over the state_dict's names, shapes and bytes: a cache key for exported artifacts."""
    h = hashlib.sha256()
    for k, v in module.state_dict().items():
        h.update(k.encode())
        h.update(str(tuple(v.shape)).encode())
        h.update(str(v.dtype).encode())
        h.update(v.detach().contiguous().cpu().numpy().tobytes())
    return h.hexdigest()
