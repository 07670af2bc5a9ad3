"""The generic export-time passes (edgedeploy/export/generic.py) on small modules written without edgedeploy."""

from __future__ import annotations

import math
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from edgedeploy.export import fx_graph
from edgedeploy.export.lowering import lower, lowering_report, register_lowering, verify_lowering
from edgedeploy.nn import (
    GCC,
    BakedGCC,
    BakedGCCBlock,
    GCCBlock,
    UnrolledGCCBlock,
    circular_conv,
    circular_pad,
    rewrites,
    roll_by_slices,
)


def _ops(gm: nn.Module) -> list[str]:
    """call_function / call_method targets in a lowered GraphModule (empty for a plain module)."""
    graph = getattr(gm, "graph", None)
    if graph is None:
        return []
    return [fx_graph._name_of(n) for n in graph.nodes if n.op in ("call_function", "call_method")]


def _records(lowered: nn.Module, pass_name: str) -> list[dict]:
    return [r for p in lowering_report(lowered)["passes"] if p["pass"] == pass_name for r in p["rewrites"]]


@pytest.mark.parametrize("pad", [(0, 5, 0, 0), (2, 3, 1, 0), (1, 1, 2, 0), (0, 0, 0, 7), (6, 0, 8, 8)])
def test_circular_pad_equals_torch(pad: tuple[int, ...]) -> None:
    x = torch.randn(2, 3, 8, 6)
    assert torch.equal(circular_pad(x, pad), F.pad(x, pad, mode="circular"))


@pytest.mark.parametrize(("shifts", "dims"), [((1,), (2,)), ((-3, 2), (3, 1)), ((13,), (-1,)), ((0,), (2,))])
def test_roll_by_slices_equals_torch(shifts: tuple[int, ...], dims: tuple[int, ...]) -> None:
    x = torch.randn(1, 4, 5, 7)
    assert torch.equal(roll_by_slices(x, shifts, dims), torch.roll(x, shifts, dims))


def test_circular_pad_rejects_bad_pads() -> None:
    with pytest.raises(ValueError, match="pairs"):
        circular_pad(torch.zeros(1, 1, 4, 4), (1, 2, 3))
    with pytest.raises(ValueError, match="not supported"):
        circular_pad(torch.zeros(1, 1, 4, 4), (5, 0))


class _PadConv(nn.Module):
    """F.pad(circular) then a kernel spanning the whole row, with a non-zero left pad: cat-then-conv + rolled kernel."""

    def __init__(self) -> None:
        super().__init__()
        self.w = nn.Parameter(torch.randn(4, 1, 1, 9))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.conv2d(F.pad(x, (4, 4, 0, 0), mode="circular"), self.w, groups=4)


def test_circular_pad_before_full_kernel_becomes_cat_then_conv() -> None:
    m, x = _PadConv().eval(), torch.randn(1, 4, 5, 9)
    low, names = lower(m, x)
    assert names == ["<model>"]
    assert "pad" not in _ops(low) and "circular_pad" in _ops(low)
    (rec,) = _records(low, "circular_to_slices")
    assert rec["was"] == "F.pad(circular, (4, 4, 0, 0))" and rec["now"].startswith("cat-then-conv")
    assert "kernel rolled dim 3 by -4" in rec["now"]
    pads = [n.args[1] for n in low.graph.nodes if n.op == "call_function" and n.target is circular_pad]
    assert pads == [(0, 8, 0, 0)]  # the EdgeFormer form cat([x, x[..., :-1]])
    assert verify_lowering(m, low, x).max_abs_error < 1e-5


@pytest.mark.parametrize("conv_cls", [nn.Conv1d, nn.Conv2d, nn.Conv3d])
def test_padding_mode_circular_convs(conv_cls: type[nn.Module]) -> None:
    dims = {nn.Conv1d: 1, nn.Conv2d: 2, nn.Conv3d: 3}[conv_cls]
    m = nn.Sequential(conv_cls(3, 5, 3, padding=1, padding_mode="circular"), nn.ReLU()).eval()
    x = torch.randn(1, 3, *([6] * dims))
    low, _ = lower(m, x)
    convs = [mod for mod in low.modules() if isinstance(mod, conv_cls)]
    assert len(convs) == 1 and convs[0].padding_mode == "zeros" and convs[0].padding == (0,) * dims
    assert "circular_pad" in _ops(low)
    assert verify_lowering(m, low, x).max_abs_error < 1e-5
    assert m[0].padding_mode == "circular"  # the original is untouched


def test_circular_pad_module_and_roll_method() -> None:
    class M(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.pad = nn.CircularPad2d((1, 2, 0, 1))

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.pad(x).roll(-2, 3) + 1

    m, x = M().eval(), torch.randn(1, 2, 4, 5)
    low, _ = lower(m, x)
    assert {"circular_pad", "roll_by_slices"} <= set(_ops(low)) and "roll" not in _ops(low)
    assert not any(isinstance(mod, nn.CircularPad2d) for mod in low.modules())
    assert torch.equal(m(x), low(x))


class _MetaKernelConv(nn.Module):
    """A GCC-style kernel: F.interpolate of a learned meta-kernel to the feature height, read from x.shape."""

    def __init__(self) -> None:
        super().__init__()
        self.meta = nn.Parameter(torch.randn(6, 1, 5, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        k = F.interpolate(self.meta, size=(x.shape[2], 1), mode="bilinear", align_corners=True)
        return F.conv2d(torch.cat((x, x[:, :, :-1]), dim=2), k, groups=x.shape[1])


def test_meta_kernel_interpolation_is_folded_into_a_constant() -> None:
    m, x = _MetaKernelConv().eval(), torch.randn(1, 6, 11, 7)
    low, _ = lower(m, x)
    assert "interpolate" not in _ops(low)
    (rec,) = _records(low, "fold_constants")
    assert rec["shape"] == [6, 1, 11, 1] and "interpolate" in rec["was"] and "meta" in rec["was"]
    assert torch.equal(m(x), low(x))
    conv = next(n for n in low.graph.nodes if n.op == "call_function" and n.target is torch.conv2d)
    assert conv.args[1].op == "get_attr" and conv.kwargs["groups"] == 6  # constant kernel, literal groups


def test_module_called_at_two_shapes_is_not_folded() -> None:
    class Two(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.k = _MetaKernelConv()

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.k(x).mean() + self.k(x[:, :, :7]).mean()

    m, x = Two().eval(), torch.randn(1, 6, 11, 7)
    low, _ = lower(m, x)
    # the whole model traces (k is inlined into one graph, each call folded at its own size) …
    assert len(_records(low, "fold_constants")) == 2
    assert torch.allclose(m(x), low(x), atol=1e-6)

    # … and a module that cannot be traced falls back to its submodules, where the shared one is refused
    class Untraceable(Two):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            if x.sum() > 1e9:  # data-dependent control flow: not traceable
                return x.mean()
            return super().forward(x)

    m2 = Untraceable().eval()
    low2, names = lower(m2, x)
    notes = lowering_report(low2)["notes"]
    assert any("cannot be traced" in n for n in notes)
    assert any("inputs of different shapes" in n for n in notes)
    assert names == [] and torch.equal(m2(x), low2(x))


def test_untraceable_parent_child_still_rewritten() -> None:
    class Parent(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.child = _PadConv()

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            if float(x.abs().max()) > 1e9:
                return x
            return self.child(x)

    m, x = Parent().eval(), torch.randn(1, 4, 5, 9)
    low, names = lower(m, x)
    assert names == ["child"]
    assert "circular_pad" in _ops(low.child)
    assert any("Parent" in n and "submodules were tried" in n for n in lowering_report(low)["notes"])
    assert torch.allclose(m(x), low(x), atol=1e-5)


def test_in_place_mutation_of_a_constant_blocks_folding() -> None:
    class Mut(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.meta = nn.Parameter(torch.randn(1, 2, 3, 1))

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            pe = F.interpolate(self.meta, size=(x.shape[2], 1), mode="bilinear")
            pe.mul_(x.mean())  # scaled in place by the input: pe is not a constant
            return x + pe

    m, x = Mut().eval(), torch.randn(1, 2, 6, 4)
    low, names = lower(m, x)
    assert names == []
    assert any("mutates a constant" in n for n in lowering_report(low)["notes"])


def test_models_without_anything_to_do_are_left_as_they_are() -> None:
    m = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 36, 2))
    low, names = lower(m.eval(), torch.randn(1, 3, 6, 6))
    assert names == [] and type(low) is nn.Sequential
    assert all(not p["rewrites"] for p in lowering_report(low)["passes"])


def test_tuple_and_dict_outputs_are_verified() -> None:
    class Multi(nn.Module):
        def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
            return {"a": torch.roll(x, 1, 2), "b": (F.pad(x, (1, 1, 0, 0), mode="circular"), x.mean())}

    m, x = Multi().eval(), torch.randn(1, 2, 4, 4)
    low, _ = lower(m, x)
    assert len(_records(low, "circular_to_slices")) == 2
    check = verify_lowering(m, low, x)
    assert check.max_abs_error == 0.0 and check.inputs == 3


class _UsesEdgedeployLayers(nn.Module):
    """A user's detector-style net built from edgedeploy.nn.GCC and GCCBlock: (1, 3, 64, 96) → (1, 8, 16, 24)."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Conv2d(3, 16, 4, stride=4)
        self.gcc = GCC(16, "W", meta_kernel_size=7)
        self.block = GCCBlock(dim=8, meta_kernel_size=7)
        self.head = nn.Conv2d(16, 8, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.block(self.gcc(self.stem(x))))


def test_user_net_with_edgedeploy_layers_gets_the_registered_rewrites(tmp_path: Path) -> None:
    pytest.importorskip("onnx")
    import onnx

    from edgedeploy.export.base import ExportSettings, get_exporter

    torch.manual_seed(0)
    m, x = _UsesEdgedeployLayers().eval(), torch.randn(1, 3, 64, 96)
    low, names = lower(m, x)
    assert names == ["gcc", "block"]
    # the onnx target's block form: both halves' GCCs as one unrolled GCC-V and one GCC-H over all 16 channels
    assert isinstance(low.gcc, BakedGCC) and isinstance(low.block, UnrolledGCCBlock)
    assert low.gcc.kernel.shape == (16, 1, 1, 24) and low.block.gcc_h.weight.shape == (16, 1, 31, 1)
    assert verify_lowering(m, low, x).max_abs_error < 1e-5
    path = get_exporter("onnx").export(low, x, tmp_path / "u.onnx", ExportSettings()).path
    ops = [n.op_type for n in onnx.load(str(path)).graph.node]
    assert "Resize" not in ops and "Pad" not in ops and "Split" not in ops
    assert ops.count("Conv") == 2 + 1 + 2 + 2 + 2  # stem, head, GCC, 2 block GCCs, FFN 2, CA 2
    assert isinstance(lower(m, x, "tflite")[0].block, BakedGCCBlock)


def test_gcc_layer_is_a_circular_conv_with_interpolated_kernel() -> None:
    torch.manual_seed(1)
    g = GCC(3, "H", meta_kernel_size=5, bias=True).eval()
    x = torch.randn(2, 3, 9, 4)
    k = F.interpolate(g.meta_kernel, size=(9, 1), mode="bilinear", align_corners=True)
    pe = F.interpolate(g.meta_pe, size=(9, 1), mode="bilinear", align_corners=True)
    xp = x + pe
    ref = torch.stack([sum(k[:, 0, t, 0].view(1, 3, 1) * torch.roll(xp, -t, 2)[:, :, i] for t in range(9))
                       for i in range(9)], dim=2)  # fmt: skip
    assert torch.allclose(g(x), ref, atol=1e-5)
    assert torch.allclose(circular_conv(xp, k, "H"), ref, atol=1e-5)
    baked = rewrites.LOWERINGS[GCC](g, (2, 3, 9, 4), "onnx")
    assert isinstance(baked, BakedGCC) and torch.equal(baked(x), g(x))
    with pytest.raises(ValueError, match="baked for length 9"):
        baked(torch.randn(1, 3, 8, 4))
    with pytest.raises(ValueError, match="direction"):
        GCC(3, "X", 5)  # type: ignore[arg-type]
    assert math.isclose(float(g.bias.abs().sum()), 0.0)


def test_register_lowering_is_the_same_table_everywhere() -> None:
    from edgedeploy.export import lowering

    assert lowering.register_lowering is rewrites.register_lowering and lowering.LOWERINGS is rewrites.LOWERINGS
    assert register_lowering is rewrites.register_lowering


def test_nn_does_not_import_export() -> None:
    """Every ``edgedeploy.nn.*`` module imports in a fresh interpreter without any ``edgedeploy.export`` module.

    ``import edgedeploy`` itself imports the empty ``edgedeploy.export`` package (so the public ``export``
    function can be bound, see edgedeploy/__init__.py): only modules beyond what ``import edgedeploy`` loads count.
    """
    code = (
        "import importlib, pkgutil, sys\n"
        "import edgedeploy\n"
        "base = set(sys.modules)\n"
        "assert not [m for m in base if m.startswith('edgedeploy.export.')], sorted(base)\n"
        "import edgedeploy.nn as pkg\n"
        "names = [m.name for m in pkgutil.iter_modules(pkg.__path__, 'edgedeploy.nn.')]\n"
        "assert len(names) >= 9, names\n"
        "for n in names: importlib.import_module(n)\n"
        "bad = sorted(m for m in set(sys.modules) - base if m.startswith('edgedeploy.export'))\n"
        "print(len(names), bad)\n"
        "assert not bad, bad\n"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]


class _SDPA(nn.Module):
    """Tokens (B, S, 32) → attention with 4 heads of 8 → (B, S, 32); ``k_layout="heads-first"`` reshapes k
    straight to (B, h, S, d) (a different tensor than a head split), which the fold must leave alone."""

    def __init__(self, k_layout: str = "split") -> None:
        super().__init__()
        self.qkv = nn.Linear(32, 96)
        self.k_layout = k_layout

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, s, _ = x.shape
        q, k, v = torch.split(self.qkv(x), 32, dim=-1)
        q, v = (t.reshape(b, s, 4, 8).transpose(1, 2) for t in (q, v))
        k = k.reshape(b, s, 4, 8).transpose(1, 2) if self.k_layout == "split" else k.reshape(b, 4, s, 8)
        return F.scaled_dot_product_attention(q, k, v).transpose(1, 2).reshape(b, s, 32)


@pytest.mark.parametrize("k_layout", ["split", "heads-first"])
def test_attention_head_fold_is_exact_and_only_where_the_layout_is_a_head_split(tmp_path: Path, k_layout: str) -> None:
    onnx = pytest.importorskip("onnx")
    ort = pytest.importorskip("onnxruntime")
    from edgedeploy.export.onnx import torch_to_onnx
    from edgedeploy.export.onnx_passes import fold_attention_heads

    torch.manual_seed(0)
    model, x = _SDPA(k_layout).eval(), torch.randn(2, 10, 32)
    exported = torch_to_onnx(model, x, tmp_path / "a.onnx", opset=23, output_names=["y"])
    graph = onnx.load(str(tmp_path / "a.onnx")).graph
    (att,) = [n for n in graph.node if n.op_type == "Attention"]
    folded = any("Attention node(s)" in n for n in exported.notes)
    assert folded == (k_layout == "split")
    # folded: q / k / v are the 3-D (B, S, h·d) tensors, the heads are the op's attributes
    assert {a.name: a.i for a in att.attribute if a.name.endswith("num_heads")} == ({"q_num_heads": 4,
                                                                                    "kv_num_heads": 4} if folded
                                                                                   else {})  # fmt: skip
    assert not {i.name for i in graph.initializer} - {t for n in graph.node for t in n.input}  # no orphans left
    got = ort.InferenceSession(str(tmp_path / "a.onnx"), providers=["CPUExecutionProvider"]).run(None, {
        "input": x.numpy()})[0]  # fmt: skip
    with torch.no_grad():
        assert float((torch.from_numpy(got) - model(x)).abs().max()) < 1e-5
    _, more = fold_attention_heads(onnx.load(str(tmp_path / "a.onnx")))
    assert more == []  # nothing left to fold


class _BNThenConv(nn.Module):
    """BN → 1×1 conv (folded), BN → grouped 1×1 conv (folded), BN → padded 3×3 conv (kept: padding would see the
    BN's shift), BN read twice (kept)."""

    def __init__(self) -> None:
        super().__init__()
        self.bn1, self.pw = nn.BatchNorm2d(8), nn.Conv2d(8, 16, 1)
        self.bn2, self.gpw = nn.BatchNorm2d(16), nn.Conv2d(16, 8, 1, groups=4, bias=False)
        self.bn3, self.c3 = nn.BatchNorm2d(8), nn.Conv2d(8, 8, 3, padding=1)
        self.bn4, self.c4 = nn.BatchNorm2d(8), nn.Conv2d(8, 8, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # a ReLU before each BatchNorm: torch's exporter folds a BatchNorm that follows a conv itself
        y = self.gpw(self.bn2(torch.relu(self.pw(self.bn1(x)))))
        y = self.c3(self.bn3(torch.relu(y)))
        z = self.bn4(torch.relu(y))
        return self.c4(z) + z


def test_batchnorm_folds_into_the_unpadded_conv_after_it_and_nowhere_else(tmp_path: Path) -> None:
    onnx = pytest.importorskip("onnx")
    ort = pytest.importorskip("onnxruntime")
    from edgedeploy.export.onnx import torch_to_onnx

    torch.manual_seed(0)
    model = _BNThenConv()
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.uniform_(-1, 1)
            m.running_var.uniform_(0.5, 2)
            m.weight.data.uniform_(0.5, 1.5)
            m.bias.data.uniform_(-0.5, 0.5)
    model.eval()
    x = torch.randn(1, 8, 12, 12)
    exported = torch_to_onnx(model, x, tmp_path / "bn.onnx", output_names=["y"])
    graph = onnx.load(str(tmp_path / "bn.onnx")).graph
    assert [n.op_type for n in graph.node].count("BatchNormalization") == 2  # bn3 (padded conv), bn4 (two readers)
    assert any("2 BatchNormalization node(s) folded" in n for n in exported.notes)
    got = ort.InferenceSession(str(tmp_path / "bn.onnx"), providers=["CPUExecutionProvider"]).run(None, {
        "input": x.numpy()})[0]  # fmt: skip
    with torch.no_grad():
        assert float((torch.from_numpy(got) - model(x)).abs().max()) < 1e-4
