"""EdgeFormer family (edgedeploy.nn.edgeformer) against facts recorded from the official hkzhang91/EdgeFormer code.

The fixtures ``tests/fixtures/official_keys/edgeformer_*.json`` hold, for the official module built from each
released config: its parameter count, its ``state_dict`` key → shape listing, and its logits on a fixed input
after :func:`edgedeploy.nn.layers.fill_deterministic_` (the same values for the same keys in any process).
"""

from __future__ import annotations

import io
from pathlib import Path

import pytest
import torch

from edgedeploy.cards import get_card
from edgedeploy.errors import ConfigError, WeightsError
from edgedeploy.export.lowering import lower, verify_lowering
from edgedeploy.nn.edgeformer import adapt_official_checkpoint, parse_hyper
from edgedeploy.nn.forms.gcc import BakedGCCBlock, UnrolledGCCBlock
from edgedeploy.nn.gcc import GCCBlock
from edgedeploy.nn.layers import fill_deterministic_, hash_uniform
from edgedeploy.zoo import CHECKPOINT_ADAPTERS, build_model, count_macs, count_params, load_weights
from tests.official_checks import zoo_models_fixture
from tests.weights import official_fixture

VARIANTS = ["edgeformer_s", "edgeformer_xs", "edgeformer_h"]
#: sum(p.numel() for p in official_model.parameters()), official configs, hkzhang91/EdgeFormer@f430ced
OFFICIAL_PARAMS = {"edgeformer_s": 5_037_088, "edgeformer_xs": 2_185_384, "edgeformer_h": 20_403_940}
#: GCC blocks per variant (cf_blocks of layers 3-5)
GCC_BLOCKS = {"edgeformer_s": 2 + 4 + 3, "edgeformer_xs": 2 + 3 + 2, "edgeformer_h": 3 + 9 + 3}


def reference_input(size: int) -> torch.Tensor:
    return hash_uniform(3 * size * size, 20240229).reshape(1, 3, size, size).float()


models = zoo_models_fixture(VARIANTS)


@pytest.mark.parametrize("name", VARIANTS)
def test_params_equal_official(name: str, models: dict) -> None:
    card = get_card(name)
    n = count_params(models[name])
    assert n == OFFICIAL_PARAMS[name] == card.official.params == official_fixture(name)["params"]


def test_edgeformer_s_params_near_paper(models: dict) -> None:
    card = get_card("edgeformer_s")
    assert abs(count_params(models["edgeformer_s"]) - card.paper.params) / card.paper.params < 0.01  # "5.0M"


@pytest.mark.parametrize("name", VARIANTS)
def test_state_dict_matches_official_listing(name: str, models: dict) -> None:
    official = official_fixture(name)["state_dict"]
    ours = {k: list(v.shape) for k, v in models[name].state_dict().items()}
    aliases = {k for k in official if k.startswith("residual.")}
    assert aliases, "the official state_dict repeats layer_5.0.* under residual.*"
    for k in aliases:
        assert official[k] == official["layer_5.0." + k[len("residual.") :]]
    assert ours == {k: v for k, v in official.items() if k not in aliases}


@pytest.mark.parametrize("name", VARIANTS)
def test_pe_only_in_first_gcc_block_of_each_stage(name: str, models: dict) -> None:
    blocks = [(n, m) for n, m in models[name].named_modules() if isinstance(m, GCCBlock)]
    assert len(blocks) == GCC_BLOCKS[name]
    for n, m in blocks:
        assert m.use_pe == n.endswith("spatial_global_rep.0"), n
        assert m.meta_1_H_bias is None and m.ca is not None


def test_xs_uses_additive_fusion(models: dict) -> None:
    frames = {n: m for n, m in models["edgeformer_xs"].named_modules() if type(m).__name__ == "OuterFrameV1"}
    assert len(frames) == 3 and all(m.fusion_method == "add" for m in frames.values())
    assert models["edgeformer_xs"].layer_3[1].local_global_fusion.block.conv.in_channels == 96
    assert models["edgeformer_s"].layer_3[1].local_global_fusion.block.conv.in_channels == 192


@pytest.mark.parametrize("name", VARIANTS)
def test_logits_equal_official_reference(name: str) -> None:
    model = fill_deterministic_(build_model(name))
    for size, ref in official_fixture(name)["reference"]["logits"].items():
        x = reference_input(int(size))
        with torch.no_grad():
            y = model(x)[0]
        ref_t = torch.tensor(ref)
        scale = float(ref_t.abs().max())
        assert float((y - ref_t).abs().max()) < 1e-4 * max(1.0, scale), f"{name} at {size}"


def test_reference_is_input_sensitive() -> None:
    # guards the reference test itself: the deterministic weights must not collapse the network
    ref = official_fixture("edgeformer_s")["reference"]["logits"]
    a, b = torch.tensor(ref["256"]), torch.tensor(ref["224"])
    assert float((a - b).norm() / a.norm()) > 0.01


@pytest.mark.parametrize("size", [224, 320])
def test_other_input_sizes(size: int) -> None:
    model = fill_deterministic_(build_model("edgeformer_s", input_size=size))
    x = torch.randn(2, 3, size, size)
    with torch.no_grad():
        y = model(x)
    assert y.shape == (2, 1000) and torch.isfinite(y).all()
    for target in ("tflite", "onnx"):
        lowered, names = lower(model, x[:1], target)
        gcc = [n for n in names if ".spatial_global_rep." in n]
        assert len(gcc) == GCC_BLOCKS["edgeformer_s"]
        # onnxruntime also gets the frames' grouped-conv forms (dim_adaptive, channel_adaptive of 3 frames)
        assert len(names) - len(gcc) == (6 if target == "onnx" else 0)
        block = lowered.layer_3[1].spatial_global_rep[0]
        if target == "tflite":
            assert isinstance(block, BakedGCCBlock) and block.k_1_H.shape[2] == size // 8
        else:  # onnxruntime: one unrolled full-channel GCC-V (2n - 1 taps) and one GCC-H per block
            assert isinstance(block, UnrolledGCCBlock) and block.gcc_h.kernel_size == (2 * (size // 8) - 1, 1)
        # folded BatchNorms and commuted convs round differently: fp32 rounding of the logits' magnitude
        assert verify_lowering(model, lowered, x[:1]).max_abs_error < 1e-5 * max(1.0, float(y.abs().max()))


def test_input_size_must_be_multiple_of_32() -> None:
    with pytest.raises(ConfigError, match="multiple of 32"):
        build_model("edgeformer_s", input_size=250)


@pytest.mark.parametrize(
    "name", ["edgeformer_s", "edgeformer_xs", pytest.param("edgeformer_h", marks=pytest.mark.slow)]
)
def test_lowered_equals_original(name: str) -> None:
    model = fill_deterministic_(build_model(name))
    example = reference_input(256)
    lowered, names = lower(model, example, "mnn")
    assert len(names) == GCC_BLOCKS[name]
    assert not any(isinstance(m, GCCBlock) for m in lowered.modules())
    check = verify_lowering(model, lowered, example, n_random=1)
    with torch.no_grad():
        scale = max(1.0, float(model(example).abs().max()))
    assert check.max_abs_error < 1e-5 * scale, check  # fp32 rounding of folded / commuted GCCs


def test_checkpoint_adapter_loads_official_layout(tmp_path: Path, models: dict) -> None:
    assert CHECKPOINT_ADAPTERS["edgeformer"] is adapt_official_checkpoint
    src = fill_deterministic_(build_model("edgeformer_s"))
    state = src.state_dict()
    listing = official_fixture("edgeformer_s")["state_dict"]
    official = {}
    for k, shape in listing.items():  # the official key order and layout, residual.* aliases included
        t = state[k] if not k.startswith("residual.") else state["layer_5.0." + k[len("residual.") :]]
        assert list(t.shape) == shape
        official[k] = t.clone()
    path = tmp_path / "official.pt"
    torch.save({"state_dict": {"module." + k: v for k, v in official.items()}}, path)
    target = build_model("edgeformer_s", seed=1)
    load_weights(target, path, card=get_card("edgeformer_s"))
    for k, v in target.state_dict().items():
        assert torch.equal(v, state[k]), k

    broken = dict(official)
    key = next(k for k in broken if k.startswith("residual.") and k.endswith("conv.weight"))
    broken[key] = broken[key] + 1.0
    with pytest.raises(WeightsError, match="alias"):
        adapt_official_checkpoint(broken, target)
    plain = target.state_dict()
    assert adapt_official_checkpoint(plain, target) is plain


def test_bad_hyper_names_the_field() -> None:
    card = get_card("edgeformer_s").model_copy(deep=True)
    card.hyper["fusion"] = "mul"
    with pytest.raises(ConfigError, match=r"hyper\.fusion"):
        parse_hyper(card)
    card = get_card("edgeformer_s").model_copy(deep=True)
    card.hyper["layers"][2]["cf_blocks"] = 0
    with pytest.raises(ConfigError, match=r"hyper\.layers\.2"):
        parse_hyper(card)


#: zoo.count_macs totals (conv + linear + matmul) at 256x256, as recorded in the cards
MACS_256 = {"edgeformer_s": 1_657_347_584, "edgeformer_xs": 944_016_896, "edgeformer_h": 8_544_418_656}


@pytest.mark.parametrize("name", VARIANTS)
def test_macs(name: str, models: dict) -> None:
    # EdgeFormer-S: the repository's own counter reports 1740.55 M, over-counting the SE layer (see the card)
    macs = count_macs(models[name], 256)
    assert macs.total == MACS_256[name]
    assert macs.matmul == 0 and macs.linear == models[name].classifier.fc.weight.numel()
    assert f"{MACS_256[name]:,}" in (get_card(name).paper.note or "")


def _producer(graph: object) -> dict[str, object]:
    return {out: node for node in graph.node for out in node.output}


@pytest.mark.slow
@pytest.mark.parametrize("size", [256, 224])
def test_lowered_edgeformer_s_exports_to_onnx_without_resize(size: int) -> None:
    onnx = pytest.importorskip("onnx")
    ort = pytest.importorskip("onnxruntime")
    model = fill_deterministic_(build_model("edgeformer_s", input_size=size))
    example = reference_input(size)
    if size != 256:
        # off the meta size the kernels are interpolated at run time: the legacy exporter either refuses the
        # "kernel of unknown shape" (torch 2.13) or would have to emit Resize; the lowered model needs neither
        try:
            raw = io.BytesIO()
            torch.onnx.export(model, (example,), raw, dynamo=False, opset_version=17)
        except Exception as e:  # noqa: BLE001 - any exporter failure is the point here
            assert "unknown shape" in str(e) or "Conv" in str(e)
        else:
            assert "Resize" in {n.op_type for n in onnx.load_from_string(raw.getvalue()).graph.node}
    lowered, _ = lower(model, example, "tflite")  # cat-then-conv: the GCC form of TFLite, CoreML, ncnn
    buf = io.BytesIO()
    torch.onnx.export(lowered, (example,), buf, dynamo=False, opset_version=17, input_names=["input"])
    proto = onnx.load_from_string(buf.getvalue())
    ops = [n.op_type for n in proto.graph.node]
    assert "Resize" not in ops and "Shape" not in ops
    inits = {i.name: list(i.dims) for i in proto.graph.initializer}
    prod = _producer(proto.graph)
    gcc_convs = []
    for node in proto.graph.node:
        if node.op_type != "Conv":
            continue
        w = inits.get(node.input[1])
        group = next((a.i for a in node.attribute if a.name == "group"), 1)
        if w is None or w[1] != 1 or group != w[0] or 1 not in w[2:] or max(w[2:]) == 1:
            continue  # not a full-length depthwise 1-D kernel
        gcc_convs.append(node)
        cat = prod[node.input[0]]
        assert cat.op_type == "Concat", node.name
        first, second = cat.input
        assert prod[second].op_type == "Slice" and prod[second].input[0] == first
    assert len(gcc_convs) == 4 * GCC_BLOCKS["edgeformer_s"]
    sess = ort.InferenceSession(buf.getvalue(), providers=["CPUExecutionProvider"])
    (y,) = sess.run(None, {"input": example.numpy()})
    with torch.no_grad():
        ref = model(example).numpy()
    assert abs(y - ref).max() < 1e-4


def test_outer_frame_grouped_convs_have_exact_depthwise_and_dense_forms() -> None:
    """ONNX: EdgeFormer-S's channel-multiplier 3×3 conv (96 → 192, groups 96) becomes cat([x, x]) + a depth-wise
    conv with its consumer's columns permuted, the grouped 1×1 a dense one, the channel attention's pool an
    AveragePool — each exact (random BatchNorm statistics); MNN keeps the official modules."""
    from torch import nn

    from edgedeploy.nn.edgeformer import ChannelAdaptive, DimAdaptive, ReplicatedDepthwise
    from edgedeploy.nn.forms.gcc import PooledChannelAttention

    torch.manual_seed(0)
    model = fill_deterministic_(build_model("edgeformer_s"))
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.uniform_(-0.5, 0.5)
            m.running_var.uniform_(0.5, 2.0)
    model.eval()
    frame = model.get_submodule("layer_3.1")
    x = torch.randn(2, 96, 32, 32)
    rep = ReplicatedDepthwise(frame.dim_adaptive)
    assert rep.dw.groups == rep.dw.in_channels == 192 and rep.m == 2
    with torch.no_grad():
        assert float((rep(x) - frame.dim_adaptive(x)).abs().max()) < 1e-4
    example = torch.randn(1, 3, 256, 256)
    lowered, _ = lower(model, example, "onnx")
    kinds = [type(lowered.get_submodule(f"layer_{i}.1.dim_adaptive")) for i in (3, 4, 5)]
    assert kinds == [ReplicatedDepthwise] * 3
    dense = lowered.get_submodule("layer_3.1.channel_adaptive").block.conv
    assert dense.groups == 1 and dense.in_channels == 192 and dense.out_channels == 96
    assert sum(isinstance(m, PooledChannelAttention) for m in lowered.modules()) == 9
    assert verify_lowering(model, lowered, example).max_abs_error < 1e-4
    kept, _ = lower(model, example, "mnn")
    assert isinstance(kept.get_submodule("layer_3.1.dim_adaptive"), DimAdaptive)
    assert isinstance(kept.get_submodule("layer_3.1.channel_adaptive"), ChannelAdaptive)
    assert kept.get_submodule("layer_3.1.channel_adaptive").block.conv.groups == 96
    assert not any(isinstance(m, PooledChannelAttention) for m in kept.modules())
