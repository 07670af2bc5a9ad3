"""Model spec resolution (edgedeploy.spec): every accepted form, one registry of zoo and user cards, bad input."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from edgedeploy.errors import ArtifactError, ConfigError, UnknownModelError
from edgedeploy.spec import callable_name, parse_input_shape, resolve_model

USER_NET = Path(__file__).resolve().parent / "fixtures" / "byom" / "user_net.py"
CARD = USER_NET.with_suffix(".yaml")


def test_input_shape_parsing() -> None:
    assert parse_input_shape("1,3,96,160") == (1, 3, 96, 160)
    assert parse_input_shape("1x3x96x160") == (1, 3, 96, 160)
    assert parse_input_shape((1, 1, 28, 28)) == (1, 1, 28, 28)
    for bad, msg in (("1,3,96", "4 dims"), ("1,3,0,4", "positive"), ("2,3,8,8", "batch 1"), ("a,b", "integers")):
        with pytest.raises(ConfigError, match=msg):
            parse_input_shape(bad)


def test_names_from_callables() -> None:
    assert callable_name("path/user_net.py", "build") == "user_net"
    assert callable_name("pkg.models", "MyNet") == "my_net"
    assert callable_name("pkg.models", "make_model") == "models"


def test_each_form_resolves() -> None:
    src = resolve_model(f"{USER_NET}:build", input_shape="1,3,64,96")
    assert (src.kind, src.name, src.input_shape, src.output) == ("callable", "user_net", (1, 3, 64, 96), "auto")
    assert type(src.build()).__name__ == "UserNet"
    card = resolve_model(str(CARD))
    assert (card.kind, card.name, card.input_shape, card.mean, card.output) == (
        "card", "user_net_card", (1, 3, 96, 160), (0.0, 0.0, 0.0), "dense")  # fmt: skip
    assert resolve_model(str(CARD), input_shape=(1, 3, 32, 48)).input_shape == (1, 3, 32, 48)  # overrides the card
    zoo = resolve_model("mobilevit_xxs", input_size=192)
    assert (zoo.kind, zoo.family, zoo.input_shape) == ("zoo", "mobilevit", (1, 3, 192, 192))
    with pytest.raises(ConfigError, match="square RGB"):
        resolve_model("mobilevit_xxs", input_shape="1,3,256,320")
    with pytest.raises(UnknownModelError, match="did you mean"):
        resolve_model("mobilevit_xxss")
    with pytest.raises(ArtifactError, match="model card not found"):
        resolve_model("nowhere.yaml")


def test_user_card_in_models_folder_is_a_registry_entry(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A user card under ./models is found by name next to the zoo, and does not break the zoo listing."""
    from edgedeploy.cards import all_cards, model_registry

    (tmp_path / "models").mkdir()
    (tmp_path / "models" / "my_dense.yaml").write_text(
        f"entry: {USER_NET}:build\ninput_shape: [1, 3, 64, 64]\noutput: dense\n"
    )
    monkeypatch.chdir(tmp_path)
    assert model_registry()["my_dense"][0] == "user" and model_registry()["edgeformer_s"][0] == "zoo"
    assert "my_dense" not in all_cards() and "edgeformer_s" in all_cards()
    src = resolve_model("my_dense")
    assert (src.kind, src.name, src.input_shape) == ("card", "my_dense", (1, 3, 64, 64))


def test_bad_card_fields_name_file_and_field(tmp_path: Path) -> None:
    card = tmp_path / "bad.yaml"
    card.write_text(f"entry: {USER_NET}:build\ninput_shape: [1, 3, 64]\n")
    with pytest.raises(ConfigError, match="field 'input_shape'"):
        resolve_model(str(card))
    card.write_text(f"entry: {USER_NET}:build\ninput_shape: [1, 3, 8, 8]\noutput: boxes\n")
    with pytest.raises(ConfigError, match="field 'output'"):
        resolve_model(str(card))
    card.write_text(f"entry: {USER_NET}:build\ninput_shape: [1, 3, 8, 8]\nmean: [0.5, 0.5]\n")
    with pytest.raises(ConfigError, match="field 'mean': 2 values for 3 input channels"):
        resolve_model(str(card))


class _Gemm(torch.nn.Module):
    """Channel-agnostic: a Linear over W, so a wrong channel count would still trace (and go unnoticed)."""

    def __init__(self) -> None:
        super().__init__()
        self.fc = torch.nn.Linear(16, 8, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(x)


@pytest.mark.parametrize("channels", [1, 2, 3, 4])
def test_non_rgb_input_keeps_its_channel_count(channels: int, tmp_path: Path) -> None:
    """ImageNet's 3-value mean once broadcast a (1, 1, H, W) photo to 3 channels: the ONNX file took (1, 3, H, W)."""
    import onnx

    import edgedeploy

    src = resolve_model(_Gemm(), input_shape=(1, channels, 12, 16))
    assert tuple(src.example().shape) == (1, channels, 12, 16)
    assert len(src.mean) == (3 if channels == 3 else 1)
    out = edgedeploy.export(_Gemm(), "onnx", input_shape=(1, channels, 12, 16), out=tmp_path)
    dims = [d.dim_value for d in onnx.load(str(out.artifact)).graph.input[0].type.tensor_type.shape.dim]
    assert dims == [1, channels, 12, 16] and out.parity.passed


def test_a_grey_card_needs_no_mean(tmp_path: Path) -> None:
    card = tmp_path / "grey.yaml"
    card.write_text(f"entry: {USER_NET}:build\ninput_shape: [1, 1, 32, 32]\n")
    src = resolve_model(str(card))
    assert (src.input_shape, src.mean, src.std) == ((1, 1, 32, 32), (0.5,), (0.25,))
