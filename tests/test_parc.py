"""ParC plug-in variants (edgedeploy.nn.parc) against the official hkzhang91/ParC-Net ParC_ConvNets code.

The fixtures in tests/fixtures/official_keys/parc_*.json were made by running the official modules (outside the
repository, timm imports stubbed): their exact parameter counts, state_dict key → shape listings, and their
logits for deterministic weights (:func:`fill_state_dict`, seed 0) on a seeded input.
"""

from __future__ import annotations

import io
import warnings
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
import torch
from torch import nn

from edgedeploy.cards import get_card
from edgedeploy.errors import ConfigError, WeightsError
from edgedeploy.export.lowering import LOWERINGS, lower, verify_lowering
from edgedeploy.nn.parc import (
    ExportParCOperator,
    ParCBottleneck,
    ParCConvNeXtBlock,
    ParCInvertedResidual,
    ParCOperator,
    build_parc,
    circular_conv,
    lower_parc_operator,
)
from edgedeploy.zoo import build_model
from tests.official_checks import (
    assert_listing_matches_official,
    assert_logits_equal_official,
    assert_macs_near,
    assert_params_official,
    zoo_models_fixture,
)
from tests.weights import fill_state_dict, official_fixture

torch.set_num_threads(1)


#: exact parameter counts of the official modules (hkzhang91/ParC-Net ParC_ConvNets/*.py), counted by running them
OFFICIAL_PARAMS = {
    "parc_resnet50": 23_737_640,  # ParC_resnet50.py: parc_res50
    "parc_mobilenetv2": 3_532_136,  # ParC_mobilenetv2.py: parc_mv2
    "parc_convnext_xt": 7_412_824,  # ParC_convnext.py: parc_convnext_xt
}
NAMES = sorted(OFFICIAL_PARAMS)


models = zoo_models_fixture(NAMES)


# ------------------------------------------------------------------------------------------ official parity


@pytest.mark.parametrize("name", NAMES)
def test_param_count_equals_official(models: dict[str, nn.Module], name: str) -> None:
    assert_params_official(models[name], name, name, OFFICIAL_PARAMS[name])


@pytest.mark.parametrize("name", NAMES)
def test_state_dict_matches_official_listing(models: dict[str, nn.Module], name: str) -> None:
    assert_listing_matches_official(models[name], name)


@pytest.mark.parametrize("name", NAMES)
def test_logits_equal_official_module_with_same_weights(name: str) -> None:
    assert_logits_equal_official(name, name, min_ref=0.1)


def test_official_checkpoint_loads_through_zoo(tmp_path: Path) -> None:
    fx = official_fixture("parc_mobilenetv2")
    state = fill_state_dict(fx["state_dict"], seed=3)
    path = tmp_path / "parc_mv2.pth"
    torch.save({"state_dict": state}, path)
    card = get_card("parc_mobilenetv2")
    model = build_model(card, weights=path)
    assert torch.equal(model.state_dict()["features.9.gcc_H.pe"], state["features.9.gcc_H.pe"])
    bad = dict(state)
    bad["features.9.gcc_H.gcc_conv.weight"] = torch.zeros(192, 1, 7, 1)
    torch.save(bad, path)
    with pytest.raises(WeightsError, match=r"features\.9\.gcc_H\.gcc_conv\.weight"):
        build_model(card, weights=path)


def test_batch_of_two_equals_two_batches_of_one() -> None:
    model = build_model("parc_mobilenetv2")
    model.load_state_dict(fill_state_dict(official_fixture("parc_mobilenetv2")["state_dict"], seed=4))
    noise = torch.randn(2, 3, 224, 224, generator=torch.Generator().manual_seed(2))
    x = torch.cat([noise[:1], 0.5 * noise[1:] + torch.tensor([1.5, 0.0, -1.0]).view(1, 3, 1, 1)])
    with torch.no_grad():
        y = model(x)
        singles = torch.cat([model(x[:1]), model(x[1:])])
    assert y.shape == (2, 1000) and y.dtype == torch.float32
    assert float((y[0] - y[1]).abs().max()) > 0.1 * float(y.abs().max())
    torch.testing.assert_close(y, singles, rtol=1e-5, atol=1e-5)


# ------------------------------------------------------------------------------------------ placement


def test_parc_resnet50_placement(models: dict[str, nn.Module]) -> None:
    m = models["parc_resnet50"]
    parc = [n for n, mod in m.named_modules() if isinstance(mod, ParCBottleneck)]
    assert parc == ["layer3.3", "layer3.4", "layer3.5", "layer4.2"]
    for name, k in (("layer3.3", 14), ("layer4.2", 7)):
        block = m.get_submodule(name)
        assert block.parc_H.gcc_conv.groups == 1  # dense: the official file passes the ResNet's groups (1)
        assert block.parc_H.gcc_conv.kernel_size == (k, 1) and block.parc_W.gcc_conv.kernel_size == (1, k)
        assert block.parc_H.pe is not None and block.parc_H.gcc_conv.bias is not None


def test_parc_mobilenetv2_placement(models: dict[str, nn.Module]) -> None:
    m = models["parc_mobilenetv2"]
    parc = {n: mod for n, mod in m.named_modules() if isinstance(mod, ParCInvertedResidual)}
    assert list(parc) == ["features.9", "features.10", "features.13", "features.16"]
    with_pe = sorted(n for n, b in parc.items() if b.gcc_H.pe is not None)
    assert with_pe == ["features.13", "features.16", "features.9"]  # the first ParC block of each stage only
    assert parc["features.16"].gcc_W.gcc_conv.kernel_size == (1, 7)
    assert parc["features.16"].gcc_W.gcc_conv.groups == 480  # depthwise over half of 960 channels


def test_parc_convnext_xt_placement(models: dict[str, nn.Module]) -> None:
    m = models["parc_convnext_xt"]
    parc = [n for n, mod in m.named_modules() if isinstance(mod, ParCConvNeXtBlock)]
    assert parc == ["stages.2.6", "stages.2.7", "stages.2.8", "stages.3.2"]
    block = m.get_submodule("stages.3.2")
    assert block.gcc_H.gcc_conv.groups == 192 and block.gcc_H.pe is not None


# ------------------------------------------------------------------------------------------ the operator


def roll_reference(x: torch.Tensor, op: ParCOperator) -> torch.Tensor:
    """y[o, i, j] = b[o] + Σ_{c,k} w[o, c, k] · x'[c, (i + k) mod K, j] (H), written as a sum of torch.roll terms."""
    w, b = op.gcc_conv.weight, op.gcc_conv.bias
    assert b is not None
    if op.pe is not None:
        x = x + op.pe
    n, c, _, _ = x.shape
    groups = op.gcc_conv.groups
    cin_g, cout_g = c // groups, w.shape[0] // groups
    axis = 2 if op.direction == "H" else 3
    y = b.view(1, -1, 1, 1).expand(n, -1, x.shape[2], x.shape[3]).clone()
    for k in range(op.global_kernel_size):
        shifted = torch.roll(x, shifts=-k, dims=axis)  # shifted[..., i] = x[..., (i + k) mod K]
        wk = w[:, :, k, 0] if op.direction == "H" else w[:, :, 0, k]  # (C_out, C_in / groups)
        for gi in range(groups):
            xs = shifted[:, gi * cin_g : (gi + 1) * cin_g]
            wg = wk[gi * cout_g : (gi + 1) * cout_g]
            y[:, gi * cout_g : (gi + 1) * cout_g] += torch.einsum("oc,nchw->nohw", wg, xs)
    return y


@pytest.mark.parametrize("direction", ["H", "W"])
@pytest.mark.parametrize(("groups", "use_pe"), [(None, True), (None, False), (1, True)])
def test_parc_operator_equals_roll_sum(direction: str, groups: int | None, use_pe: bool) -> None:
    torch.manual_seed(0)
    op = ParCOperator(8, direction, 7, use_pe=use_pe, groups=groups)  # type: ignore[arg-type]
    with torch.no_grad():
        if op.pe is not None:
            op.pe.normal_()  # make the PE matter (its init std is 0.02)
        op.gcc_conv.bias.normal_()
        x = torch.randn(2, 8, 7, 7)
        torch.testing.assert_close(op(x), roll_reference(x, op), rtol=1e-5, atol=1e-5)


def test_parc_operator_equals_fft_circular_correlation() -> None:
    torch.manual_seed(1)
    op = ParCOperator(6, "W", 14, use_pe=False)
    x = torch.randn(1, 6, 14, 14, dtype=torch.float64)
    op = op.double()
    w = op.gcc_conv.weight[:, 0, 0, :]  # (C, K)
    bias = op.gcc_conv.bias
    assert bias is not None
    # circular cross-correlation: y[i] = Σ_k w[k] x[(i + k) mod K]  ⇔  Y = X · conj(W)
    ref = torch.fft.ifft(torch.fft.fft(x, dim=3) * torch.fft.fft(w, dim=1).conj()[None, :, None, :], dim=3).real
    with torch.no_grad():
        torch.testing.assert_close(op(x), ref + bias.view(1, -1, 1, 1), rtol=1e-10, atol=1e-10)


def test_parc_operator_is_position_aware_only_with_pe() -> None:
    """Without PE the operator commutes with a circular shift along its axis; the PE breaks that (paper, 3.1)."""
    torch.manual_seed(2)
    x = torch.randn(1, 4, 7, 7)
    for use_pe, equivariant in ((False, True), (True, False)):
        op = ParCOperator(4, "H", 7, use_pe=use_pe)
        if op.pe is not None:
            nn.init.normal_(op.pe)
        with torch.no_grad():
            a = op(torch.roll(x, 3, dims=2))
            b = torch.roll(op(x), 3, dims=2)
        assert torch.allclose(a, b, atol=1e-6) is equivariant


@pytest.mark.parametrize("shape", [(1, 8, 15, 15), (1, 8, 14, 13), (1, 8, 13, 14), (8, 14, 14)])
def test_parc_operator_rejects_other_feature_sizes(shape: tuple[int, ...]) -> None:
    op = ParCOperator(8, "H", 14, use_pe=False)
    with pytest.raises(ConfigError, match=r"expects a feature map of 14x14"):
        op(torch.zeros(shape))


def test_parc_operator_bad_arguments() -> None:
    with pytest.raises(ConfigError, match="direction"):
        ParCOperator(8, "X", 14)  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="even"):
        ParCConvNeXtBlock(7, 14)


def test_circular_conv_uses_cat_then_conv() -> None:
    conv = nn.Conv2d(2, 2, (1, 5), groups=2, bias=False)
    with torch.no_grad():
        conv.weight.zero_()
        conv.weight[:, 0, 0, 1] = 1.0  # picks x[(i + 1) mod 5]
    x = torch.arange(10.0).view(1, 2, 1, 5)
    assert circular_conv(x, conv, "W").flatten().tolist() == [1, 2, 3, 4, 0, 6, 7, 8, 9, 5]


# ------------------------------------------------------------------------------------------ fixed input size


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("size", [192, 256])
def test_build_rejects_other_input_sizes(name: str, size: int) -> None:
    card = get_card(name)
    assert card.resizable is False and card.input_size == 224
    with pytest.raises(ConfigError, match=r"supports only 224x224"):
        build_model(name, input_size=size)
    with pytest.raises(ConfigError, match=r"supports only 224x224"):
        build_parc(card, size)  # the builder checks too when called directly


def test_fixed_model_rejects_other_size_at_run_time(models: dict[str, nn.Module]) -> None:
    with torch.no_grad(), pytest.raises(ConfigError, match=r"expects a feature map of 14x14"):
        models["parc_mobilenetv2"](torch.zeros(1, 3, 256, 256))


def test_card_with_wrong_kernel_size_is_rejected() -> None:
    card = get_card("parc_convnext_xt")
    hyper = dict(card.hyper, global_kernel_sizes=[56, 28, 12, 7])
    with pytest.raises(ConfigError, match=r"hyper\.global_kernel_sizes\[2\]' is 12 but stage 2 sees 14x14"):
        build_parc(card.model_copy(update={"hyper": hyper}), 224)


@pytest.mark.parametrize(
    ("update", "pattern"),
    [
        ({"arch": "vgg16"}, r"unknown ParC arch 'vgg16'"),
        ({"depthz": [1]}, r"hyper\.depthz"),
        ({"parc_insert_locs": [3, 3, 6]}, r"hyper\.parc_insert_locs"),
        ({"global_kernel_sizes": [56, 28, None, 7]}, r"global_kernel_sizes\[2\]' is null"),
    ],
)
def test_card_errors_name_the_field(update: dict[str, Any], pattern: str) -> None:
    card = get_card("parc_convnext_xt")
    with pytest.raises(ConfigError, match=pattern):
        build_parc(card.model_copy(update={"hyper": dict(card.hyper, **update)}), 224)


def test_resnet_first_block_cannot_be_parc() -> None:
    card = get_card("parc_resnet50")
    hyper = dict(card.hyper, parc_insert_locs=[3, 4, 0, 2])
    with pytest.raises(ConfigError, match=r"must be ≥ 1 for resnet50"):
        build_parc(card.model_copy(update={"hyper": hyper}), 224)


# ------------------------------------------------------------------------------------------ lowering / export


def test_lowering_is_registered_and_checks_shape() -> None:
    assert LOWERINGS[ParCOperator] is lower_parc_operator
    op = ParCOperator(4, "W", 7)
    assert isinstance(lower_parc_operator(op, (1, 4, 7, 7), "onnx"), ExportParCOperator)
    with pytest.raises(ConfigError, match="7x7"):
        lower_parc_operator(op, (1, 4, 14, 14), "onnx")
    with pytest.raises(TypeError, match="expects a ParCOperator"):
        lower_parc_operator(nn.Identity(), (1, 4, 7, 7), "onnx")


@pytest.mark.parametrize(("name", "n_ops"), [("parc_mobilenetv2", 8), ("parc_convnext_xt", 8), ("parc_resnet50", 8)])
def test_lowering_changes_nothing(models: dict[str, nn.Module], name: str, n_ops: int) -> None:
    model = models[name]
    x = torch.randn(1, 3, 224, 224, generator=torch.Generator().manual_seed(5))
    lowered, rewritten = lower(model, x, "onnx")
    assert len(rewritten) == n_ops
    assert all(isinstance(lowered.get_submodule(n), ExportParCOperator) for n in rewritten)
    assert not any(isinstance(m, ParCOperator) for m in lowered.modules())
    assert any(isinstance(m, ParCOperator) for m in model.modules())  # the original is untouched
    check = verify_lowering(model, lowered, x, n_random=1)
    assert check.max_abs_error < 1e-5


def test_onnx_export_of_lowered_parc_mobilenetv2_is_concat_conv_without_resize(
    models: dict[str, nn.Module],
) -> None:
    onnx = pytest.importorskip("onnx")
    model = models["parc_mobilenetv2"]
    x = torch.randn(1, 3, 224, 224, generator=torch.Generator().manual_seed(6))
    lowered, rewritten = lower(model, x, "onnx")
    buf = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(lowered, (x,), buf, dynamo=False, opset_version=17, input_names=["input"])
    graph = onnx.load_from_string(buf.getvalue()).graph
    ops = Counter(n.op_type for n in graph.node)
    assert ops["Resize"] == 0 and ops["Expand"] == 0 and ops["Pad"] == 0
    producers = {out: node for node in graph.node for out in node.output}
    shapes = {init.name: tuple(init.dims) for init in graph.initializer}
    circular = []
    for node in graph.node:
        if node.op_type == "Conv" and node.input[0] in producers and producers[node.input[0]].op_type == "Concat":
            cat = producers[node.input[0]]
            assert len(cat.input) == 2 and producers[cat.input[1]].op_type == "Slice"  # cat([x, x[..., :-1]])
            circular.append(shapes[node.input[1]])
    assert sorted(circular) == sorted(
        [(192, 1, 14, 1), (192, 1, 1, 14)] * 2 + [(288, 1, 14, 1), (288, 1, 1, 14)] + [(480, 1, 7, 1), (480, 1, 1, 7)]
    )
    assert len(circular) == len(rewritten)
    ort = pytest.importorskip("onnxruntime")
    sess = ort.InferenceSession(buf.getvalue(), providers=["CPUExecutionProvider"])
    (y,) = sess.run(None, {"input": x.numpy()})
    with torch.no_grad():
        ref = model(x)
    torch.testing.assert_close(torch.from_numpy(y), ref, rtol=1e-4, atol=1e-4 * float(ref.abs().max()))


# ------------------------------------------------------------------------------------------ MACs


REPORTED_MACS = {
    # EdgeFormer paper Table 3 ("FLOPs" column; for these two it equals the MACs the official code performs,
    # the README's 2.0G / 0.6G "Madds" are half of it)
    "parc_resnet50": 4.0e9,
    "parc_convnext_xt": 1.1e9,
    # EdgeFormer README (0.3G Madds; Table 3's 0.6G is 2 x MACs here)
    "parc_mobilenetv2": 0.3e9,
}


@pytest.mark.parametrize("name", NAMES)
def test_macs_near_reported(models: dict[str, nn.Module], name: str) -> None:
    assert_macs_near(models[name], REPORTED_MACS[name])
