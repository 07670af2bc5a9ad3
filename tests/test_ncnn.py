"""ncnn as a format: pnnx export, the ncnn runtime on the host, op census, refusals, no network, local bench.

The fast tests use the checked-in ``fixtures/ncnn_tiny`` pair (a pnnx conversion whose output onnxruntime
computed independently); the slow ones run pnnx on zoo models and compare the ncnn wheel's outputs with PyTorch.
"""

from __future__ import annotations

import json
import shutil
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import run_cli

from edgedeploy import registry
from edgedeploy._util import sha256_file
from edgedeploy.errors import ArtifactError, ConfigError, UnsupportedOpError
from edgedeploy.export import lowering
from edgedeploy.export.manifest import read_manifest

ncnn = pytest.importorskip("ncnn", reason="needs the [ncnn] extra (pip install ncnn)")

from edgedeploy.runtimes.ncnn_rt import NcnnRuntime, ncnn_op_census, read_param  # noqa: E402

TINY = Path(__file__).parent / "fixtures" / "ncnn_tiny"

#: one variant per family, exported with the default lowering; every family of the registry is here or in REFUSED
SUPPORTED = {
    "edgeformer": "edgeformer_xs",
    "mobilevit": "mobilevit_xxs",
    "edgevit": "edgevit_xxs",
    "emo": "emo_1m",
    "parc": "parc_mobilenetv2",
    "baselines": "mobilenetv2",
}
#: family -> why it cannot be exported to ncnn (none today: EMO and EdgeViT are lowered for ncnn, see below)
REFUSED: dict[str, str] = {}
#: without the lowering, pnnx 20261020 leaves these ops: model -> op types the refusal must name
UNLOWERED_LEFTOVERS = {
    "emo_1m": ("Tensor.reshape", "torch.unbind"),  # the 6-D window partition and the q/k unbind
    # the stride-r delegate sampling x[:, :, ::r, ::r] ("slice with step 2 is not supported"; the lowering for every
    # other format leaves only this one) and the training-time 5-D qkv layout with its unbind
    "edgevit_xxs": ("Tensor.slice", "Tensor.reshape", "torch.unbind"),
}


def _needs_pnnx() -> None:
    pytest.importorskip("pnnx", reason="needs the [ncnn] extra (pip install pnnx)")


def _linspace(shape: tuple[int, ...]) -> np.ndarray:
    return np.linspace(-1.0, 1.0, int(np.prod(shape)), dtype=np.float32).reshape(shape)


# ------------------------------------------------------------------------------------------------ fast
def test_registry_knows_ncnn() -> None:
    spec = registry.format_spec("ncnn")
    assert spec.suffixes == (".param",) and spec.side_suffixes == (".bin",)
    assert spec.default_runtime == "ncnn" and registry.format_of("x.fp16.param") == "ncnn"
    assert "ncnn" in registry.runtimes_for("ncnn")
    assert lowering.TARGETS == tuple(registry.format_names()) and "ncnn" in lowering.TARGETS


def test_lowering_rejects_a_target_that_is_no_format() -> None:
    with pytest.raises(ConfigError, match="no format"):
        lowering.lower(torch.nn.Identity(), torch.zeros(1, 3, 8, 8), target="tensorrt")


def test_every_family_is_supported_or_refused_with_a_reason() -> None:
    assert set(SUPPORTED) | set(REFUSED) == set(registry.families())
    assert not set(SUPPORTED) & set(REFUSED)


def test_param_parser_and_census_on_the_fixture() -> None:
    g = read_param(TINY / "tiny.ncnn.param")
    assert g.inputs == ["in0"] and g.outputs == ["out0"]
    assert [layer.type for layer in g.layers] == [
        "Input", "Convolution", "ConvolutionDepthWise", "Pooling", "InnerProduct",
    ]  # fmt: skip
    assert ncnn_op_census(TINY / "tiny.ncnn.param") == {
        "Convolution": 1, "ConvolutionDepthWise": 1, "InnerProduct": 1, "Input": 1, "Pooling": 1,
    }  # fmt: skip


def test_param_parser_rejects_garbage(tmp_path: Path) -> None:
    bad = tmp_path / "x.param"
    bad.write_text("hello\n1 1\n")
    with pytest.raises(ArtifactError, match=r"not an ncnn text \.param"):
        read_param(bad)
    bad.write_text("7767517\n3 3\nInput in0 0 1 in0\n")
    with pytest.raises(ArtifactError, match="header says 3 layers"):
        read_param(bad)


def test_runtime_matches_onnxruntime_on_the_fixture(tmp_path: Path) -> None:
    """The ncnn wheel on the host gives what onnxruntime gave for the same network (independent reference).

    The fixture's weights are stored fp16 (pnnx's default ``fp16=1``, magic 0x01306B47 in the .bin): 4e-5 apart.
    """
    ref = json.loads((TINY / "reference.json").read_text())
    session = NcnnRuntime().load(TINY / "tiny.ncnn.param", threads=1)
    y = session.run(_linspace((1, 3, 32, 32)))
    assert y.shape == tuple(ref["shape"]) and y.dtype == np.float32
    assert float(y.sum()) == pytest.approx(ref["sum"], abs=2e-4)
    assert y.reshape(-1)[:5].tolist() == pytest.approx(ref["head"], abs=1e-4)
    infer = session.prepare(_linspace((1, 3, 32, 32)))
    out = infer()
    assert np.array_equal(np.array(out)[None], y)  # the timed call computes the same thing, every time
    assert np.array_equal(np.array(infer())[None], y)


def test_runtime_turns_reduced_precision_off_for_fp32() -> None:
    session = NcnnRuntime().load(TINY / "tiny.ncnn.param", threads=2)
    opt = session.net.opt  # type: ignore[attr-defined]
    assert opt.num_threads == 2
    assert not (opt.use_fp16_storage or opt.use_fp16_packed or opt.use_fp16_arithmetic or opt.use_bf16_storage)
    fp16 = NcnnRuntime().load(TINY / "tiny.ncnn.param", threads=1, precision="fp16")
    assert fp16.net.opt.use_fp16_storage  # type: ignore[attr-defined]
    with pytest.raises(ConfigError, match="fp32 or fp16"):
        NcnnRuntime().load(TINY / "tiny.ncnn.param", threads=1, precision="int8")


def test_runtime_errors_are_artifact_errors(tmp_path: Path) -> None:
    lone = tmp_path / "lone.param"
    shutil.copy(TINY / "tiny.ncnn.param", lone)
    with pytest.raises(ArtifactError, match=r"lone\.bin not found"):
        NcnnRuntime().load(lone, threads=1)
    # a layer type ncnn does not have (what pnnx leaves for an unconverted op) is refused at load
    text = (TINY / "tiny.ncnn.param").read_text().replace("Pooling                  gap_0", "Tensor.slice gap_0")
    odd = tmp_path / "odd.param"
    odd.write_text(text)
    shutil.copy(TINY / "tiny.ncnn.bin", tmp_path / "odd.bin")
    with pytest.raises(ArtifactError, match=r"ncnn cannot load odd\.param"):
        NcnnRuntime().load(odd, threads=1)


def test_unconverted_layers_are_named(tmp_path: Path) -> None:
    from edgedeploy.export.ncnn import _refuse, unconverted_layers

    p = tmp_path / "m.param"
    p.write_text(
        "7767517\n4 4\nInput in0 0 1 in0\nTensor.reshape Tensor.reshape_7 1 1 in0 1\n"
        "torch.unbind Tensor.select_9 1 2 1 2 3\nBinaryOp add_0 2 1 2 3 out0 0=0\n"
    )
    left = unconverted_layers(p)
    assert left == {"Tensor.reshape": ["Tensor.reshape_7"], "torch.unbind": ["Tensor.select_9"]}
    err = _refuse(left, "blah\nunbind along batch axis 0 is not supported\n")
    assert isinstance(err, UnsupportedOpError) and err.exit_code == 4 and "\n" not in str(err)
    assert err.op == "Tensor.reshape, torch.unbind" and err.node == "Tensor.reshape_7, Tensor.select_9"
    assert "unbind along batch axis 0 is not supported" in str(err)


def test_ncnn_export_rejects_options_it_lacks() -> None:
    from edgedeploy.export.base import ExportSettings, get_exporter

    exp = get_exporter("ncnn")
    for settings, msg in (
        (ExportSettings(precision="int8"), "does not support precision int8"),
        (ExportSettings(opset=17), "--opset applies"),
        (ExportSettings(layout="NHWC"), "NCHW input only"),
    ):
        with pytest.raises(ConfigError, match=msg):
            exp.check_settings(settings)


def test_emo_and_edgevit_lowerings_apply_to_ncnn_exactly() -> None:
    from edgedeploy.nn.forms.edgevit import LoweredSelfAttn
    from edgedeploy.nn.forms.emo import LoweredIRMB
    from edgedeploy.zoo import build_model

    x = torch.randn(1, 3, 224, 224, generator=torch.Generator().manual_seed(0))
    emo = build_model("emo_1m")
    lowered, names = lowering.lower(emo, x, target="ncnn")
    assert names and all(isinstance(lowered.get_submodule(n), LoweredIRMB) for n in names)
    vit = build_model("edgevit_xxs")
    lowered, names = lowering.lower(vit, x, target="ncnn")
    pooled = [m for m in lowered.modules() if isinstance(m, LoweredSelfAttn) and m.pool_sampler]
    assert len(pooled) == 5  # the blocks with sample rate > 1
    with torch.no_grad():
        # the same ≤ 4-D form with a strided slice (CoreML's): pool(1, r) == ::r, bitwise
        assert torch.equal(lowered(x), lowering.lower(vit, x, target="coreml")[0](x))


def test_circular_convs_become_explicit_wrap_around_exactly() -> None:
    from edgedeploy.export.ncnn import explicit_circular_padding

    m = torch.nn.Sequential(
        torch.nn.Conv2d(3, 8, (3, 5), stride=2, padding=(1, 2), padding_mode="circular"),
        torch.nn.Conv2d(8, 8, (1, 7), padding=(0, 3), padding_mode="circular", groups=8),
        torch.nn.Conv2d(8, 4, 3, padding=1),
    ).eval()
    rewritten, names = explicit_circular_padding(m)
    assert names == ["0", "1"] and rewritten is not m and m[0].padding_mode == "circular"  # the original is kept
    x = torch.randn(1, 3, 24, 40, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        assert torch.equal(rewritten(x), m(x))
    assert explicit_circular_padding(m[2]) == (m[2], [])


def test_a_user_module_with_two_heads_and_a_circular_conv(tmp_path: Path) -> None:
    """Non-square input, dict outputs (two blobs, in order) and a circular conv, which pnnx alone gets wrong."""
    _needs_pnnx()
    import edgedeploy

    sys.path.insert(0, str(Path(__file__).parent / "fixtures" / "byom"))
    try:
        import user_net
    finally:
        sys.path.pop(0)
    out = edgedeploy.export(user_net.build_two_heads(), "ncnn", input_shape=(1, 3, 96, 160), out=tmp_path, name="two")
    assert out.parity.passed, out.parity.failures
    assert out.manifest.outputs == ["out0", "out1"] and out.manifest.input.shape == [1, 3, 96, 160]
    # the circular conv is made explicit before pnnx sees it: by the generic lowering (default), else by the
    # ncnn exporter's own rewrite (--lowering none)
    lowered = [r for p in out.manifest.lowering.get("passes", []) for r in p["rewrites"] if "circular" in r["was"]]
    assert lowered or any("circular" in n for n in out.manifest.notes)
    session = NcnnRuntime().load(out.artifact, threads=1)
    dense, logits = session.run_outputs(np.zeros((1, 3, 96, 160), np.float32))
    assert dense.shape == (1, 8, 24, 40) and logits.shape == (1, 10)


# ------------------------------------------------------------------------------------------------ slow: pnnx
@pytest.mark.slow
def test_every_supported_family_exports_with_parity(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    """One variant per family through the real pipeline: pnnx, op census, manifest, parity on the ncnn wheel."""
    _needs_pnnx()
    import edgedeploy

    rows = []
    for family, model in SUPPORTED.items():
        t0 = time.perf_counter()
        outcome = edgedeploy.export(model, "ncnn", out=tmp_path)
        total = time.perf_counter() - t0
        m = outcome.manifest
        assert outcome.parity.passed, (model, outcome.parity.failures)
        assert outcome.parity.runtime == "ncnn"
        assert outcome.artifact == tmp_path / f"{model}.param" and (tmp_path / f"{model}.bin").is_file()
        assert m.format == "ncnn" and m.input.name == "in0" and m.outputs == ["out0"]
        assert m.op_census == ncnn_op_census(outcome.artifact) and m.op_census.get("Input") == 1
        assert all("." not in op for op in m.op_census), m.op_census  # nothing left unconverted
        assert m.side_files == {f"{model}.bin": sha256_file(tmp_path / f"{model}.bin")}  # type: ignore[attr-defined]
        assert read_manifest(outcome.artifact, verify=True) is not None
        assert m.size_bytes > (tmp_path / f"{model}.bin").stat().st_size
        assert {"pnnx", "ncnn"} <= set(m.tool_versions)
        p = outcome.parity
        rows.append(
            f"{family:10s} {model:16s} max_abs {p.max_abs_error:.2e} max_rel {p.max_rel_error:.2e} "
            f"1-cos {1 - p.cosine_similarity:.1e} pnnx {m.ncnn['pnnx_s']:.2f}s export {m.timings_s['export']:.1f}s "  # type: ignore[attr-defined]
            f"total {total:.1f}s"
        )
    # only the pairs and their manifests: pnnx's side files and the temp folders are gone
    expected = {f"{m}{s}" for m in SUPPORTED.values() for s in (".param", ".bin", ".param.json")}
    assert {p.name for p in tmp_path.iterdir()} == expected
    with capsys.disabled():
        print("\nncnn export, one variant per family:\n" + "\n".join(rows))
        print("refused:", REFUSED or "none")


@pytest.mark.slow
def test_mobilevit_attention_is_ncnns_native_layer_with_parity(tmp_path: Path) -> None:
    """MobileViT-XXS for ncnn: every attention one ``MultiHeadAttention`` layer (no MatMul / Softmax left), parity
    passed on the ncnn wheel with the usual gates."""
    _needs_pnnx()
    import edgedeploy

    outcome = edgedeploy.export("mobilevit_xxs", "ncnn", out=tmp_path)
    assert outcome.parity.passed, outcome.parity.failures
    census = outcome.manifest.op_census
    assert census.get("MultiHeadAttention") == 2 + 4 + 3, census
    assert not {"MatMul", "Softmax", "SDPA"} & set(census), census


@pytest.mark.slow
def test_unlowered_emo_is_refused_naming_the_ops(tmp_path: Path) -> None:
    """Without the ncnn lowering pnnx leaves ops ncnn lacks: exit 4, one line, op types and layer names."""
    _needs_pnnx()
    proc = run_cli("export", "emo_1m", "--to", "ncnn", "--lowering", "none", "--out", str(tmp_path), timeout=900)
    assert proc.returncode == 4, proc.stderr
    err = proc.stderr.strip()
    assert len(err.splitlines()) == 1 and err.startswith("error: pnnx left operators ncnn cannot run")
    for op in UNLOWERED_LEFTOVERS["emo_1m"]:
        assert op in err
    assert "at node Tensor.reshape_" in err and "unbind along batch axis 0 is not supported" in err
    assert list(tmp_path.iterdir()) == []  # nothing half-written left behind


@pytest.mark.slow
def test_unlowered_edgevit_is_refused_naming_the_strided_slice(tmp_path: Path) -> None:
    _needs_pnnx()
    import edgedeploy

    with pytest.raises(UnsupportedOpError) as info:
        edgedeploy.export("edgevit_xxs", "ncnn", out=tmp_path, lowering="none")
    assert set(str(info.value.op).split(", ")) == set(UNLOWERED_LEFTOVERS["edgevit_xxs"])
    assert "slice with step 2 is not supported" in str(info.value)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.slow
def test_fp16_export_and_a_changed_bin_is_caught(tmp_path: Path) -> None:
    _needs_pnnx()
    import edgedeploy

    out = edgedeploy.export("mobilenetv2", "ncnn", out=tmp_path, precision="fp16")
    assert out.artifact.name == "mobilenetv2.fp16.param" and out.parity.passed, out.parity.failures
    assert out.manifest.precision == "fp16" and out.manifest.ncnn["options"]["use_fp16_storage"]  # type: ignore[attr-defined]
    fp32 = edgedeploy.export("mobilenetv2", "ncnn", out=tmp_path, parity=False)
    ratio = (tmp_path / "mobilenetv2.fp16.bin").stat().st_size / (tmp_path / "mobilenetv2.bin").stat().st_size
    assert 0.45 < ratio < 0.6  # fp16 weights
    assert fp32.manifest.precision == "fp32"
    # the .bin is part of the artifact: a changed one is refused by bench (exit 2)
    with open(tmp_path / "mobilenetv2.bin", "r+b") as fh:
        fh.seek(100)
        fh.write(b"\x00\x01\x02\x03")
    proc = run_cli("bench", str(fp32.artifact), "--runtime", "ncnn", "--iterations", "2", "--warmup", "0")
    assert proc.returncode == 2 and "mobilenetv2.bin" in proc.stderr and "does not match" in proc.stderr


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("strace") is None, reason="strace is not installed (apt-get install strace)")
def test_ncnn_export_and_local_bench_make_no_network_calls(tmp_path: Path) -> None:
    """``export --to ncnn`` (pnnx, a native executable, and the ncnn wheel for parity) and ``bench x.param``,
    strace'd: no AF_INET socket, no installer or downloader started; the bench result is complete."""
    _needs_pnnx()
    import os
    import subprocess

    from tests.test_no_phone_home import network_calls

    trace = tmp_path / "trace.txt"
    result = tmp_path / "bench.json"
    script = (
        "from edgedeploy.cli import main\n"
        f"main(['export', 'mobilenetv2', '--to', 'ncnn', '--out', {str(tmp_path)!r}], standalone_mode=False)\n"
        f"main(['bench', {str(tmp_path / 'mobilenetv2.param')!r}, '--runtime', 'ncnn', '--iterations', '10',"
        f" '--warmup', '1', '--threads', '1', '--device', 'local', '--out', {str(result)!r}], standalone_mode=False)\n"
    )
    cmd = ["strace", "-f", "-qq", "-e", "trace=socket,connect,execve", "-o", str(trace), sys.executable, "-c", script]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=900, env=dict(os.environ))
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "mobilenetv2.param").is_file()
    lines = trace.read_text().splitlines()
    started = [ln.split('"')[1] for ln in lines if "execve(" in ln and '"' in ln and "= 0" in ln]
    # the trace follows the pnnx child: a socket it opened would be in this file
    assert any(Path(p).name == "pnnx" for p in started), started
    assert not [p for p in started if Path(p).name in ("pip", "pip3", "curl", "wget")], started
    assert network_calls(trace) == []
    # and the local bench of the .param file worked
    res = json.loads(result.read_text())
    assert res["format"] == "ncnn" and res["runtime"] == "ncnn" and res["model"] == "mobilenetv2"
    assert len(res["samples_ms"]) == 10 and all(v > 0 for v in res["samples_ms"])
    assert res["input_shape"] == [1, 3, 224, 224] and res["threads"] == 1 and res["precision"] == "fp32"
