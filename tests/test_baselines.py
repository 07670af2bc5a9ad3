"""Plain baselines (edgedeploy.nn.baselines) against their official definitions.

tests/fixtures/official_keys/baseline_*.json were made by running official modules outside the repository:
ResNet50 and MobileNetV2 as hkzhang91/ParC-Net builds them with no ParC block (the torchvision structure and
keys), ConvNeXt-XT with facebookresearch/ConvNeXt ``models/convnext.py``. Each holds the exact parameter count,
the state_dict key → shape listing, and the official module's logits for :func:`fill_state_dict` weights.
"""

from __future__ import annotations

from typing import Any

import pytest
import torch
from torch import nn

from edgedeploy.cards import get_card
from edgedeploy.errors import ConfigError
from edgedeploy.nn.baselines import LayerNorm, build_baseline, make_divisible
from edgedeploy.zoo import build_model
from tests.official_checks import (
    assert_listing_matches_official,
    assert_logits_equal_official,
    assert_macs_near,
    assert_params_official,
    zoo_models_fixture,
)

torch.set_num_threads(1)


OFFICIAL_PARAMS = {
    "resnet50": 25_557_032,  # torchvision resnet50 (documented 25,557,032)
    "mobilenetv2": 3_504_872,  # torchvision mobilenet_v2 (documented 3,504,872)
    "convnext_xt": 7_438_360,  # facebookresearch/ConvNeXt ConvNeXt(depths=[3, 3, 9, 3], dims=[48, 96, 192, 384])
}
NAMES = sorted(OFFICIAL_PARAMS)


models = zoo_models_fixture(NAMES)


@pytest.mark.parametrize("name", NAMES)
def test_param_count_equals_official(models: dict[str, nn.Module], name: str) -> None:
    card = assert_params_official(models[name], name, f"baseline_{name}", OFFICIAL_PARAMS[name])
    assert card.family == "baseline"


@pytest.mark.parametrize("name", NAMES)
def test_state_dict_matches_official_listing(models: dict[str, nn.Module], name: str) -> None:
    assert_listing_matches_official(models[name], f"baseline_{name}")


@pytest.mark.parametrize("name", NAMES)
def test_logits_equal_official_module_with_same_weights(name: str) -> None:
    assert_logits_equal_official(name, f"baseline_{name}", min_ref=1.0)


@pytest.mark.parametrize(("name", "size"), [("resnet50", 160), ("mobilenetv2", 256), ("convnext_xt", 288)])
def test_resizable_at_multiples_of_32(name: str, size: int) -> None:
    card = get_card(name)
    assert card.resizable and card.min_input_multiple == 32
    model = build_model(name, input_size=size)
    with torch.no_grad():
        y = model(torch.randn(2, 3, size, size))
    assert y.shape == (2, 1000)


@pytest.mark.parametrize("name", NAMES)
def test_rejects_sizes_not_multiple_of_32(name: str) -> None:
    with pytest.raises(ConfigError, match=r"multiple of 32; got 250"):
        build_model(name, input_size=250)
    with pytest.raises(ConfigError, match=r"multiple of 32"):
        build_baseline(get_card(name), 100)


#: torchvision model docs (fvcore counts, where one multiply-add is one "FLOP"): resnet50 4.09 G, mobilenet_v2
#: 0.30 G; ConvNeXt-XT: EdgeFormer paper Table 3 row 9, 1.1G
REPORTED_MACS = {"resnet50": 4.09e9, "mobilenetv2": 0.30e9, "convnext_xt": 1.1e9}


@pytest.mark.parametrize("name", NAMES)
def test_macs_match_reported(models: dict[str, nn.Module], name: str) -> None:
    assert_macs_near(models[name], REPORTED_MACS[name])


@pytest.mark.parametrize(
    ("update", "pattern"),
    [
        ({"arch": "vgg16"}, r"hyper\.arch': unknown baseline 'vgg16'"),
        ({"width": 2}, r"hyper\.width' is not a parameter"),
        ({"layers": [3, 4, 6]}, r"hyper\.layers' must be a list of 4 ints"),
    ],
)
def test_card_errors_name_the_field(update: dict[str, Any], pattern: str) -> None:
    card = get_card("resnet50")
    with pytest.raises(ConfigError, match=pattern):
        build_baseline(card.model_copy(update={"hyper": dict(card.hyper, **update)}), 224)


def test_channels_first_layernorm_equals_torch_layer_norm() -> None:
    torch.manual_seed(0)
    ln = LayerNorm(6, eps=1e-6, data_format="channels_first")
    nn.init.normal_(ln.weight)
    nn.init.normal_(ln.bias)
    x = torch.randn(2, 6, 5, 4)
    ref = nn.functional.layer_norm(x.permute(0, 2, 3, 1), (6,), ln.weight, ln.bias, 1e-6).permute(0, 3, 1, 2)
    with torch.no_grad():
        torch.testing.assert_close(ln(x), ref, rtol=1e-5, atol=1e-5)
    with pytest.raises(ConfigError, match="data_format"):
        LayerNorm(6, data_format="nhwc")


def test_make_divisible() -> None:
    assert [make_divisible(v) for v in (32, 16 * 0.75, 1280, 96 * 1.4)] == [32, 16, 1280, 136]
    assert make_divisible(10, 8) == 16  # never more than 10 % below the request
