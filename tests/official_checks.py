"""Checks shared by the families' tests against the official modules (parameter counts, state-dict listings,
logits with the same weights, reported MACs); the references are in tests/fixtures/official_keys/."""

from __future__ import annotations

from collections.abc import Callable, Iterable

import pytest
import torch
from torch import nn

from edgedeploy.cards import ModelCard, get_card
from edgedeploy.zoo import build_model, count_macs, count_params
from tests.weights import fill_state_dict, official_fixture


def zoo_models_fixture(names: Iterable[str]) -> Callable[[], dict[str, nn.Module]]:
    """A module-scoped ``models`` fixture: the zoo models ``names``, each built once per test module
    (``models = zoo_models_fixture(NAMES)``)."""
    names = list(names)

    @pytest.fixture(scope="module")
    def models() -> dict[str, nn.Module]:
        return {name: build_model(name) for name in names}

    return models


def assert_params_official(module: nn.Module, name: str, fixture: str, expected: int) -> ModelCard:
    """``module`` (zoo model ``name``) has the official parameter count ``expected``, as recorded in ``fixture``
    and declared by ``name``'s card (``official.params``); returns the card."""
    assert count_params(module) == expected
    assert official_fixture(fixture)["params"] == expected
    card = get_card(name)
    assert card.official is not None and card.official.params == expected
    return card


def state_dict_listing(module: nn.Module) -> list[tuple[str, list[int]]]:
    """``module``'s state dict as the fixtures list it: (key, shape) in order."""
    return [(k, list(v.shape)) for k, v in module.state_dict().items()]


def assert_listing_matches_official(module: nn.Module, fixture: str) -> None:
    """Same keys, order and shapes as the official module recorded in ``fixture``."""
    assert state_dict_listing(module) == [(k, shape) for k, shape in official_fixture(fixture)["state_dict"]]


def assert_logits_equal_official(name: str, fixture: str, min_ref: float) -> None:
    """Zoo model ``name`` with :func:`fill_state_dict` weights (seed 0) gives the recorded official logits on a
    seeded 1×3×224×224 input (rtol 1e-4); the reference's largest logit exceeds ``min_ref`` (not degenerate)."""
    fx = official_fixture(fixture)
    model = build_model(name)
    model.load_state_dict(fill_state_dict(fx["state_dict"], seed=0), strict=True)
    x = torch.randn(1, 3, 224, 224, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        y = model(x)
    assert y.shape == (1, 1000) and y.dtype == torch.float32
    ref = torch.tensor(fx["reference"]["logits"]).unsqueeze(0)
    assert ref.abs().max() > min_ref
    torch.testing.assert_close(y, ref, rtol=1e-4, atol=1e-4 * float(ref.abs().max()))


def assert_macs_near(module: nn.Module, expected: float, size: int = 224, rel: float = 0.05) -> None:
    """conv + linear + matmul MACs at ``size``×``size`` within ``rel`` of the reported ``expected``."""
    total = count_macs(module, size).total
    assert abs(total - expected) / expected < rel, f"{total:.3g} MACs, reported {expected:.3g}"
