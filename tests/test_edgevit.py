"""EdgeViT family: parameter counts and state_dict layout vs the official code, sparse global attention (stride-r
delegate picking, LocalProp) against an independent reference computation, end-to-end logits vs the official
implementation, input sizes, export lowering and ONNX export."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from edgedeploy.cards import get_card
from edgedeploy.errors import ConfigError
from edgedeploy.export.lowering import lower, verify_lowering
from edgedeploy.nn.edgevit import EdgeViT, GlobalSparseAttn, SelfAttn, build_edgevit
from edgedeploy.nn.forms.edgevit import LoweredSelfAttn
from edgedeploy.zoo import build_model, count_params
from tests.lowering_checks import MaxRank, assert_4d_onnx_matches, assert_rewrite_removes_high_rank
from tests.weights import assert_matches_official_logits, seeded_state

FIXTURES = Path(__file__).parent / "fixtures" / "official_keys"

#: parameter counts of the official saic-fi/edgevit builders (src/edgevit.py edgevit_*(), run outside the repo)
OFFICIAL_PARAMS = {"edgevit_xxs": 4_067_704, "edgevit_xs": 6_770_056, "edgevit_s": 13_108_168}


@pytest.fixture(autouse=True)
def _one_thread() -> None:
    torch.set_num_threads(1)


# --------------------------------------------------------------------------------------------------------------------
# counts, layout, shapes, sizes


@pytest.mark.parametrize("name", sorted(OFFICIAL_PARAMS))
def test_param_count_equals_official(name: str) -> None:
    card = get_card(name)
    assert count_params(build_model(card)) == OFFICIAL_PARAMS[name]
    assert card.official is not None and card.official.params == OFFICIAL_PARAMS[name]
    assert card.paper is not None and card.paper.params is not None
    rel = abs(card.paper.params - OFFICIAL_PARAMS[name]) / card.paper.params
    if name == "edgevit_s":  # the official code does not build the paper's 11.1M; the card must say so
        assert rel > 0.15 and card.paper.note and "11.1M" in card.paper.note
    else:
        assert rel < 0.02


@pytest.mark.parametrize("name", sorted(OFFICIAL_PARAMS))
def test_state_dict_matches_official_keys_and_shapes(name: str) -> None:
    fixture = json.loads((FIXTURES / f"{name}.json").read_text())
    ours = {k: list(v.shape) for k, v in build_model(name).state_dict().items()}
    assert ours == fixture["state_dict"]
    assert list(ours) == list(fixture["state_dict"])
    assert fixture["params"] == OFFICIAL_PARAMS[name]


def test_matches_official_logits() -> None:
    assert_matches_official_logits("edgevit_xxs")


@pytest.mark.parametrize("size", [224, 256, 160])
def test_output_shape_multiples_of_32(size: int) -> None:
    model = build_model("edgevit_xxs", input_size=size)
    with torch.no_grad():
        y = model(torch.randn(2, 3, size, size))
    assert y.shape == (2, 1000) and torch.isfinite(y).all()


def test_input_multiple_is_32() -> None:
    model = build_model("edgevit_xs")
    assert isinstance(model, EdgeViT) and model.min_input_multiple() == 32
    for name in OFFICIAL_PARAMS:
        assert get_card(name).min_input_multiple == 32
    with pytest.raises(ConfigError, match="multiple of 32"):
        build_model("edgevit_xxs", input_size=240)
    # 240 = 16·15: stage 3 runs at 15×15, which the sample rate 2 does not divide
    with pytest.raises(ConfigError, match="sample rate 2"), torch.no_grad():
        model(torch.randn(1, 3, 240, 240))


def test_builder_rejects_unknown_hyper() -> None:
    card = get_card("edgevit_xxs")
    bad = card.model_copy(update={"hyper": {**card.hyper, "drop_path_rate": 0.1}})
    with pytest.raises(ConfigError, match="drop_path_rate"):
        build_edgevit(bad, 224)


def test_local_agg_only_where_sampling() -> None:
    m = build_model("edgevit_xxs")
    for i, r in enumerate((4, 2, 2, 1)):
        for blk in getattr(m, f"blocks{i + 1}"):
            assert hasattr(blk.LocalAgg, "attn") == (r > 1)
            assert blk.SelfAttn.attn.sr == r
            assert hasattr(blk.SelfAttn.attn, "LocalProp") == (r > 1)


# --------------------------------------------------------------------------------------------------------------------
# sparse global attention


@pytest.mark.parametrize("r", [2, 4])
def test_sampler_picks_one_pixel_per_cell(r: int) -> None:
    """Delegates are pixels (r·i, r·j) — the official AvgPool2d(kernel_size=1, stride=r) — not cell averages."""
    attn = GlobalSparseAttn(8, 2, r)
    x = torch.randn(2, 8, 16, 12)
    got = attn.sample(x)
    assert torch.equal(got, F.avg_pool2d(x, kernel_size=1, stride=r))  # the official op
    h, w = 16 // r, 12 // r
    picked = x.reshape(2, 8, 16 * 12)[:, :, torch.tensor([(r * i) * 12 + r * j for i in range(h) for j in range(w)])]
    assert torch.equal(got.reshape(2, 8, h * w), picked)
    assert not torch.allclose(got, F.avg_pool2d(x, r, r))


def _reference_sparse_attn(a: GlobalSparseAttn, x: torch.Tensor, H: int, W: int) -> torch.Tensor:
    """GlobalSparseAttn from its definition, one head and one delegate cell at a time (tokens (1, H·W, C))."""
    r, C = a.sr, x.shape[-1]
    h, w = H // r, W // r
    tok = x[0]  # (H·W, C)
    idx = [(r * i) * W + r * j for i in range(h) for j in range(w)]
    d = tok[idx]  # (h·w, C) delegates, row-major
    qkv = d @ a.qkv.weight.T + a.qkv.bias  # (h·w, 3C): [q heads..., k heads..., v heads...]
    heads, hd = a.num_heads, C // a.num_heads
    mixed = torch.zeros(h * w, C)
    for m in range(heads):
        q = qkv[:, m * hd : (m + 1) * hd]
        k = qkv[:, C + m * hd : C + (m + 1) * hd]
        v = qkv[:, 2 * C + m * hd : 2 * C + (m + 1) * hd]
        mixed[:, m * hd : (m + 1) * hd] = torch.softmax(q @ k.T * hd**-0.5, dim=-1) @ v
    # LocalProp: delegate (i, j) spreads over its cell, channel c scaled by kernel[c, 0, a, b], plus bias
    full = torch.zeros(H * W, C)
    kern, bias = a.LocalProp.weight[:, 0], a.LocalProp.bias  # (C, r, r), (C,)
    for n, (i, j) in enumerate((i, j) for i in range(h) for j in range(w)):
        for da in range(r):
            for db in range(r):
                full[(r * i + da) * W + r * j + db] = mixed[n] * kern[:, da, db] + bias
    full = F.layer_norm(full, (C,), a.norm.weight, a.norm.bias, a.norm.eps)
    return (full @ a.proj.weight.T + a.proj.bias)[None]


@pytest.mark.parametrize(("r", "H", "W"), [(2, 8, 6), (4, 8, 12)])
def test_global_sparse_attn_against_reference(r: int, H: int, W: int) -> None:
    a = GlobalSparseAttn(12, 3, r)
    a.load_state_dict(seeded_state(a.state_dict()))
    x = torch.randn(1, H * W, 12)
    with torch.no_grad():
        assert torch.allclose(a(x, H, W), _reference_sparse_attn(a, x, H, W), atol=1e-5)


# --------------------------------------------------------------------------------------------------------------------
# lowering and export


@pytest.mark.parametrize(("name", "size"), [("edgevit_xxs", 224), ("edgevit_xxs", 256), ("edgevit_xs", 224)])
def test_lowering_is_exact_and_4d(name: str, size: int) -> None:
    model = build_model(name, input_size=size)
    model.load_state_dict(seeded_state(model.state_dict()))
    x = torch.randn(1, 3, size, size)
    lowered, names = lower(model, x, target="coreml")  # the ≤ 4-D form (CoreML, ncnn, TFLite)
    assert sorted(names) == sorted(n for n, m in model.named_modules() if isinstance(m, SelfAttn))
    assert all(isinstance(lowered.get_submodule(n), LoweredSelfAttn) for n in names)
    assert verify_lowering(model, lowered, x).max_abs_error < 1e-5
    assert_rewrite_removes_high_rank(
        model, lowered, x, 5
    )  # the training-time qkv layout is 5-D: the rewrite is doing real work


def test_tflite_lowering_replaces_transposed_conv_exactly() -> None:
    model = build_model("edgevit_xxs")
    model.load_state_dict(seeded_state(model.state_dict()))
    x = torch.randn(1, 3, 224, 224)
    lowered, _ = lower(model, x, target="tflite")
    with torch.no_grad(), MaxRank() as mode:
        y = lowered(x)
    assert mode.transposed_convs == 0 and mode.max_rank <= 4
    with torch.no_grad(), MaxRank() as mode:
        ref = model(x)
    assert mode.transposed_convs == 5  # the detector sees the training-time LocalProps
    assert torch.equal(y, ref)  # bitwise: one product and one bias add per output pixel either way
    n_up = sum(1 for m in lowered.modules() if isinstance(m, LoweredSelfAttn) and m.upsample_local_prop)
    assert n_up == 5  # the five blocks with sample rate > 1 (1 + 1 + 3)
    onnx_lowered, _ = lower(model, x, target="onnx")
    assert not any(m.upsample_local_prop for m in onnx_lowered.modules() if isinstance(m, LoweredSelfAttn))


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
def test_onnx_export_of_lowered_edgevit_xxs(tmp_path: Path) -> None:
    model = build_model("edgevit_xxs")
    x = torch.randn(1, 3, 224, 224)
    lowered, _ = lower(model, x, target="coreml")
    assert_4d_onnx_matches(model, lowered, x, tmp_path / "edgevit_xxs.onnx")


@pytest.mark.parametrize("target", ["onnx", "mnn"])
def test_onnx_and_mnn_forms_are_exact_channels_last_and_fold_norms(target: str) -> None:
    """ONNX / MNN: channels-last SelfAttn, LocalAgg with BatchNorms and the pos-embed residual folded into convs."""
    onnx = pytest.importorskip("onnx")
    from edgedeploy.nn.edgevit import LocalAgg
    from edgedeploy.nn.forms.edgevit import ChannelsLastSelfAttn, FoldedLocalAgg

    model = build_model("edgevit_xxs")
    model.load_state_dict(seeded_state(model.state_dict()))
    x = torch.randn(1, 3, 224, 224)
    lowered, names = lower(model, x, target=target)
    kinds = {type(lowered.get_submodule(n)) for n in names}
    assert kinds == {ChannelsLastSelfAttn, FoldedLocalAgg}
    n_local = sum(isinstance(m, LocalAgg) for m in model.modules())
    assert sum(isinstance(m, FoldedLocalAgg) for m in lowered.modules()) == n_local == 5
    assert verify_lowering(model, lowered, x).max_abs_error < 1e-5
    buf = io.BytesIO()
    torch.onnx.export(lowered, (x,), buf, dynamo=False, opset_version=17, input_names=["x"])
    ops = [n.op_type for n in onnx.load_from_string(buf.getvalue()).graph.node]
    ref_buf = io.BytesIO()
    torch.onnx.export(model, (x,), ref_buf, dynamo=False, opset_version=17, input_names=["x"])
    ref_ops = [n.op_type for n in onnx.load_from_string(ref_buf.getvalue()).graph.node]
    assert ops.count("BatchNormalization") == ref_ops.count("BatchNormalization") - 2 * n_local
    assert "ConvTranspose" in ref_ops and "ConvTranspose" not in ops
    n_attn = sum(isinstance(m, SelfAttn) for m in model.modules())
    # the pos-embed residuals are in the convs; each LocalProp adds its bias with an Add instead of inside the deconv
    n_prop = ref_ops.count("ConvTranspose")
    assert ops.count("Add") == ref_ops.count("Add") - n_local - n_attn + n_prop


def test_folds_reject_convs_they_would_change() -> None:
    from edgedeploy.nn.folding import fold_bn_into_next_conv, fold_residual_into_dwconv

    with pytest.raises(ConfigError, match="1×1"):
        fold_bn_into_next_conv(nn.BatchNorm2d(8), nn.Conv2d(8, 8, 3, padding=1))  # the padding would see the shift
    with pytest.raises(ConfigError, match="depth-wise"):
        fold_residual_into_dwconv(nn.Conv2d(8, 8, 3, padding=1))  # not depth-wise: no identity tap per channel
    with pytest.raises(ConfigError, match="depth-wise"):
        fold_residual_into_dwconv(nn.Conv2d(8, 8, 3, stride=2, padding=1, groups=8))
    conv = nn.Conv2d(8, 8, 5, padding=2, groups=8)
    x = torch.randn(2, 8, 9, 11)
    with torch.no_grad():
        assert torch.allclose(fold_residual_into_dwconv(conv)(x), x + conv(x), atol=1e-6)
        bn = nn.BatchNorm2d(8).eval()
        bn.running_mean.uniform_(-1, 1)
        bn.running_var.uniform_(0.5, 2)
        pw = nn.Conv2d(8, 4, 1)
        assert torch.allclose(fold_bn_into_next_conv(bn, pw)(x), pw(bn(x)), atol=1e-5)
