"""MobileViT family (edgedeploy.nn.mobilevit) against facts recorded from the official apple/ml-cvnets code.

Fixtures ``tests/fixtures/official_keys/mobilevit_*.json``: the official module's parameter count, ``state_dict``
key → shape listing, and logits on a fixed input after :func:`edgedeploy.nn.layers.fill_deterministic_`.
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from edgedeploy.cards import get_card
from edgedeploy.errors import ConfigError, ExportError
from edgedeploy.export.lowering import LOWERINGS, lower, verify_lowering
from edgedeploy.nn.forms.mobilevit import StaticMobileViTBlock, lower_mobilevit_block
from edgedeploy.nn.layers import fill_deterministic_, hash_uniform
from edgedeploy.nn.mobilevit import (
    MobileViT,
    MobileViTBlock,
    MultiHeadAttention,
    parse_hyper,
)
from edgedeploy.zoo import build_model, count_macs, count_params
from tests.weights import official_fixture

VARIANTS = ["mobilevit_xxs", "mobilevit_xs", "mobilevit_s"]
#: sum(p.numel() for p in official_model.parameters()), apple/ml-cvnets@7771756
OFFICIAL_PARAMS = {"mobilevit_xxs": 1_272_024, "mobilevit_xs": 2_317_848, "mobilevit_s": 5_578_632}


def reference_input(size: int) -> torch.Tensor:
    return hash_uniform(3 * size * size, 20240229).reshape(1, 3, size, size).float()


@pytest.mark.parametrize("name", VARIANTS)
def test_params_equal_official_and_paper(name: str) -> None:
    card = get_card(name)
    n = count_params(build_model(name))
    assert n == OFFICIAL_PARAMS[name] == card.official.params == official_fixture(name)["params"]
    assert abs(n - card.paper.params) / card.paper.params < 0.03  # paper: 1.3M / 2.3M / 5.6M (rounded)


@pytest.mark.parametrize("name", VARIANTS)
def test_state_dict_matches_official_listing(name: str) -> None:
    ours = {k: list(v.shape) for k, v in build_model(name).state_dict().items()}
    assert ours == official_fixture(name)["state_dict"]


@pytest.mark.parametrize("name", VARIANTS)
def test_logits_equal_official_reference(name: str) -> None:
    model = fill_deterministic_(MobileViT(parse_hyper(get_card(name)))).eval()
    logits = official_fixture(name)["reference"]["logits"]
    for size, ref in logits.items():  # 224 (xxs) exercises the official bilinear resize around unfolding
        with torch.no_grad():
            y = model(reference_input(int(size)))[0]
        ref_t = torch.tensor(ref)
        assert float((y - ref_t).abs().max()) < 1e-4 * max(1.0, float(ref_t.abs().max())), f"{name} at {size}"
    a = torch.tensor(logits["256"])
    if "224" in logits:  # the deterministic weights must not collapse the network
        assert float((a - torch.tensor(logits["224"])).norm() / a.norm()) > 0.01


def unfold_reference(fm: torch.Tensor, ph: int, pw: int) -> torch.Tensor:
    """patches[b*P + py*pw + px, iy*nw + ix, c] = fm[b, c, iy*ph + py, ix*pw + px], by explicit indexing."""
    b, c, h, w = fm.shape
    nh, nw = h // ph, w // pw
    out = torch.empty(b * ph * pw, nh * nw, c)
    for bi in range(b):
        for py in range(ph):
            for px in range(pw):
                for iy in range(nh):
                    for ix in range(nw):
                        out[bi * ph * pw + py * pw + px, iy * nw + ix] = fm[bi, :, iy * ph + py, ix * pw + px]
    return out


def small_block(patch: int = 2) -> MobileViTBlock:
    torch.manual_seed(0)
    blk = MobileViTBlock(8, 16, 32, n_transformer_blocks=2, head_dim=4, patch_h=patch, patch_w=patch)
    return fill_deterministic_(blk).eval()


@pytest.mark.parametrize("hw", [(4, 6), (8, 8)])
def test_unfolding_layout_and_folding_inverse(hw: tuple[int, int]) -> None:
    blk = small_block()
    fm = torch.randn(2, 5, *hw)
    patches, info = blk.unfolding(fm)
    torch.testing.assert_close(patches, unfold_reference(fm, 2, 2), atol=0, rtol=0)
    assert not info["interpolate"]
    torch.testing.assert_close(blk.folding(patches, info), fm, atol=0, rtol=0)


def test_unfolding_resizes_odd_features() -> None:
    blk = small_block()
    fm = torch.randn(1, 3, 7, 5)
    patches, info = blk.unfolding(fm)
    assert info["interpolate"] and patches.shape == (4, 4 * 3, 3)
    assert blk.folding(patches, info).shape == fm.shape


def test_attention_equals_torch_multihead_attention() -> None:
    torch.manual_seed(1)
    ours = fill_deterministic_(MultiHeadAttention(24, 4)).eval()
    ref = nn.MultiheadAttention(24, 4, bias=True, batch_first=True).eval()
    with torch.no_grad():  # the fused qkv_proj is torch's in_proj (q, k, v stacked)
        ref.in_proj_weight.copy_(ours.qkv_proj.weight)
        ref.in_proj_bias.copy_(ours.qkv_proj.bias)
        ref.out_proj.weight.copy_(ours.out_proj.weight)
        ref.out_proj.bias.copy_(ours.out_proj.bias)
        x = torch.randn(3, 10, 24)
        torch.testing.assert_close(ours(x), ref(x, x, x, need_weights=False)[0], atol=1e-5, rtol=1e-5)
    with pytest.raises(ConfigError):
        MultiHeadAttention(24, 5)


@pytest.mark.parametrize("hw", [(8, 8), (7, 7), (6, 10)])
def test_static_block_equals_original(hw: tuple[int, int]) -> None:
    blk = small_block()
    x = torch.randn(1, 8, *hw)
    static = lower_mobilevit_block(blk, tuple(x.shape), "coreml")
    assert isinstance(static, StaticMobileViTBlock) and LOWERINGS[MobileViTBlock] is lower_mobilevit_block
    with torch.no_grad():
        torch.testing.assert_close(static(x), blk(x), atol=1e-6, rtol=0)
        with pytest.raises(ValueError, match="built for"):
            static(torch.randn(2, 8, *hw))
    with pytest.raises(ExportError):
        lower_mobilevit_block(blk, (8, 8), "onnx")


@pytest.mark.parametrize("name", VARIANTS)
def test_lowered_equals_original(name: str) -> None:
    model = fill_deterministic_(build_model(name))
    example = reference_input(256)
    lowered, names = lower(model, example, "mnn")
    assert names == ["layer_3.1", "layer_4.1", "layer_5.1"]
    assert verify_lowering(model, lowered, example, n_random=1).max_abs_error < 1e-5


def test_input_sizes() -> None:
    assert get_card("mobilevit_s").min_input_multiple == 64
    with pytest.raises(ConfigError, match="multiple of 64"):
        build_model("mobilevit_xxs", input_size=224)
    model = fill_deterministic_(build_model("mobilevit_xxs", input_size=320))
    x = torch.randn(1, 3, 320, 320)
    with torch.no_grad():
        assert model(x).shape == (1, 1000)
    lowered, _ = lower(model, x, "onnx")
    assert lowered.layer_5[1].s_patches == (4, 25, 96)
    assert verify_lowering(model, lowered, x, n_random=0).max_abs_error < 1e-5


#: zoo.count_macs totals (conv + linear + matmul) at 256x256, as recorded in the cards
MACS_256 = {"mobilevit_xxs": 407_364_096, "mobilevit_xs": 1_025_911_808, "mobilevit_s": 2_000_831_488}


@pytest.mark.parametrize("name", VARIANTS)
def test_macs(name: str) -> None:
    card = get_card(name)
    macs = count_macs(MobileViT(parse_hyper(card)).eval(), 256)
    assert macs.total == MACS_256[name] and macs.matmul > 0
    assert f"{MACS_256[name]:,}" in (card.paper.note or "")
    if card.paper.macs is not None:  # MobileViT-S: 2.0G
        assert abs(macs.total - card.paper.macs) / card.paper.macs < 0.01


def test_bad_hyper_names_the_field() -> None:
    card = get_card("mobilevit_xs").model_copy(deep=True)
    card.hyper["layers"][3]["block"] = "swin"
    with pytest.raises(ConfigError, match=r"hyper\.layers\.3"):
        parse_hyper(card)


def test_lowered_mobilevit_onnx_graph_is_static_and_4d() -> None:
    """The CoreML / ncnn / TFLite form: constant shapes, ranks ≤ 4."""
    onnx = pytest.importorskip("onnx")
    model = fill_deterministic_(build_model("mobilevit_xxs"))
    example = reference_input(256)
    lowered, _ = lower(model, example, "coreml")
    buf = io.BytesIO()
    torch.onnx.export(lowered, (example,), buf, dynamo=False, opset_version=17, input_names=["input"])
    proto = onnx.shape_inference.infer_shapes(onnx.load_from_string(buf.getvalue()))
    ops = {n.op_type for n in proto.graph.node}
    assert not ops & {"Shape", "Resize", "Gather"}
    ranks = [len(v.type.tensor_type.shape.dim) for v in [*proto.graph.value_info, *proto.graph.output]]
    assert ranks and max(ranks) <= 4


@pytest.mark.parametrize("target", ["onnx", "mnn"])
def test_onnx_and_mnn_unfold_moves_whole_channel_vectors(target: str) -> None:
    """ONNX / MNN: the channels-last form is exact, static, and every unfold / fold transpose keeps channels last."""
    onnx = pytest.importorskip("onnx")
    from edgedeploy.nn.forms.mobilevit import ChannelsLastMobileViTBlock

    model = fill_deterministic_(build_model("mobilevit_xxs"))
    example = reference_input(256)
    lowered, names = lower(model, example, target)
    assert len(names) == 3 and all(isinstance(lowered.get_submodule(n), ChannelsLastMobileViTBlock) for n in names)
    from edgedeploy.nn.forms.mobilevit import FusedAttention
    from edgedeploy.nn.mobilevit import MultiHeadAttention

    # ONNX: the attention through SDPA (one opset-23 Attention op); MNN keeps the official attention
    kinds = {type(m) for m in lowered.modules()} & {FusedAttention, MultiHeadAttention}
    assert kinds == ({FusedAttention} if target == "onnx" else {MultiHeadAttention})
    assert verify_lowering(model, lowered, example).max_abs_error < 1e-4
    buf = io.BytesIO()
    torch.onnx.export(lowered, (example,), buf, dynamo=False, opset_version=17, input_names=["input"])
    graph = onnx.load_from_string(buf.getvalue()).graph
    assert not {n.op_type for n in graph.node} & {"Shape", "Resize", "Gather"}
    perms = [list(a.ints) for n in graph.node if n.op_type == "Transpose" for a in n.attribute if a.name == "perm"]
    six = [p for p in perms if len(p) == 6]
    assert len(six) == 2 * 3 and all(p[-1] == 5 for p in six), six  # unfold + fold per block, channel axis kept


def test_onnx_export_is_one_attention_op_on_token_tensors_per_layer(tmp_path: Path) -> None:
    """ONNX: opset 23 (the FusedAttention's own), one ``Attention`` per transformer layer on ``(B·P, N, d)``
    tensors (no head-split Transpose left), parity with the original module in onnxruntime."""
    onnx = pytest.importorskip("onnx")
    ort = pytest.importorskip("onnxruntime")
    from edgedeploy.export.onnx import export_default

    model = fill_deterministic_(build_model("mobilevit_xxs"))
    example = reference_input(256)
    lowered, _ = lower(model, example, "onnx")
    exported = export_default(lowered, example, tmp_path / "m.onnx", None)
    assert exported.opset == 23 and any("Attention node(s)" in n for n in exported.notes)
    proto = onnx.load(str(tmp_path / "m.onnx"))
    attention = [n for n in proto.graph.node if n.op_type == "Attention"]
    assert len(attention) == 2 + 4 + 3  # MobileViT-XXS: 2, 4, 3 transformer layers
    heads = {a.name: a.i for n in attention for a in n.attribute if a.name.endswith("num_heads")}
    assert heads == {"q_num_heads": 4, "kv_num_heads": 4}
    perms = [list(a.ints) for n in proto.graph.node if n.op_type == "Transpose" for a in n.attribute]
    assert not [p for p in perms if p == [0, 2, 1, 3]]  # head split / merge folded into the Attention ops
    sess = ort.InferenceSession(str(tmp_path / "m.onnx"), providers=["CPUExecutionProvider"])
    got = sess.run(None, {"input": example.numpy()})[0]
    with torch.no_grad():
        want = model(example).numpy()
    assert np.abs(got - want).max() < 1e-4 * max(1.0, float(np.abs(want).max()))
    # an explicit older opset still exports (the attention decomposed into MatMul / Softmax), same numbers
    older = export_default(lowered, example, tmp_path / "o.onnx", 20)
    assert older.opset == 20
    ops = {n.op_type for n in onnx.load(str(tmp_path / "o.onnx")).graph.node}
    assert "Attention" not in ops and "Softmax" in ops


@pytest.mark.parametrize("name", ["mobilevit_xxs", "mobilevit_s"])
def test_ncnn_form_is_static_with_torch_multihead_attention_and_exact(name: str) -> None:
    """ncnn: the static (rank ≤ 4) block with each attention as one ``nn.MultiheadAttention`` (pnnx's route to
    ncnn's ``MultiHeadAttention`` layer), the same numbers as the official module."""
    from edgedeploy.nn.forms.mobilevit import MOBILEVIT_FORM, TorchMultiheadAttention

    assert MOBILEVIT_FORM["ncnn"] == "static, torch-mha"
    model = fill_deterministic_(build_model(name))
    example = reference_input(256)
    lowered, names = lower(model, example, "ncnn")
    assert len(names) == 3 and all(isinstance(lowered.get_submodule(n), StaticMobileViTBlock) for n in names)
    kinds = [type(m) for m in lowered.modules() if isinstance(m, (MultiHeadAttention, TorchMultiheadAttention))]
    assert kinds == [TorchMultiheadAttention] * (2 + 4 + 3)  # every transformer layer's attention, none official
    with torch.no_grad():
        want, got = model(example), lowered(example)
    assert torch.allclose(got, want, rtol=0, atol=1e-5 * max(1.0, float(want.abs().max())))
    assert verify_lowering(model, lowered, example).max_abs_error < 1e-4
    # the weights are the source's: q, k, v rows of the fused qkv_proj in order, the same out_proj
    src = model.get_submodule(names[0]).global_rep[0].pre_norm_mha[1]
    mha = lowered.get_submodule(names[0]).global_rep[0].pre_norm_mha[1].mha
    assert torch.equal(mha.in_proj_weight, src.qkv_proj.weight) and torch.equal(mha.out_proj.bias, src.out_proj.bias)


def test_torch_multihead_attention_equals_the_official_attention() -> None:
    from edgedeploy.nn.forms.mobilevit import FusedAttention, TorchMultiheadAttention

    torch.manual_seed(0)
    src = MultiHeadAttention(96, 4).eval()
    x = torch.randn(4, 64, 96)
    with torch.no_grad():
        want = src(x)
        for form in (TorchMultiheadAttention(src), FusedAttention(src)):
            got = form.eval()(x)
            assert got.shape == want.shape and (got - want).abs().max() < 1e-5, type(form).__name__


@pytest.mark.parametrize("name", ["mobilevit_xxs", "mobilevit_s"])
def test_tflite_form_is_channels_last_with_the_official_attention_and_exact(name: str) -> None:
    """TFLite: the channels-last block (rank-6 unfold / fold, 1×1 convs as Linears on tokens) with the official
    attention (benchmarks/results/lowering_forms_litert.md), the same numbers as the official module."""
    from edgedeploy.nn.forms.mobilevit import MOBILEVIT_FORM, ChannelsLastMobileViTBlock, PointwiseChannelsLast

    assert MOBILEVIT_FORM["tflite"] == "channels-last"
    model = fill_deterministic_(build_model(name))
    example = reference_input(256)
    lowered, names = lower(model, example, "tflite")
    blocks = [lowered.get_submodule(n) for n in names]
    assert len(names) == 3 and all(type(b) is ChannelsLastMobileViTBlock for b in blocks)
    assert all(isinstance(b.conv_proj, PointwiseChannelsLast) for b in blocks)
    kinds = {type(m) for b in blocks for m in b.global_rep.modules() if "Attention" in type(m).__name__}
    assert kinds == {MultiHeadAttention}
    with torch.no_grad():
        want, got = model(example), lowered(example)
    assert torch.allclose(got, want, rtol=0, atol=1e-5 * max(1.0, float(want.abs().max())))
    assert verify_lowering(model, lowered, example).max_abs_error < 1e-4


@pytest.mark.parametrize("hw", [(8, 8), (7, 7), (6, 10)])
def test_channels_last_block_equals_original_also_when_resized(hw: tuple[int, int]) -> None:
    """The ONNX / MNN / TFLite form at sizes that are not patch multiples too: ``conv_proj``'s SiLU runs after the
    resize back, as in the official block (it ran before it once, 0.2 off at 7×7)."""
    from edgedeploy.nn.forms.mobilevit import ChannelsLastMobileViTBlock

    blk = small_block()
    x = torch.randn(1, 8, *hw)
    with torch.no_grad():
        torch.testing.assert_close(ChannelsLastMobileViTBlock(blk, tuple(x.shape)).eval()(x), blk(x), atol=1e-5, rtol=0)
