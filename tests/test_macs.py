"""MACs in the EMO / EdgeViT papers' convention (fvcore totals): per-op rules on small modules with hand-computed
counts, the seven EMO / EdgeViT variants against the official modules' exact counts and the papers' figures, and the
relation to zoo.count_macs (conv + linear + matmul)."""

from __future__ import annotations

import sys

import pytest
import torch
from torch import nn

from edgedeploy.errors import MissingExtraError
from edgedeploy.macs import count_macs_paper_convention, macs_by_operator_paper_convention
from edgedeploy.zoo import build_model, count_macs, get_card

#: fvcore totals of the *official* modules at 224×224 (official code run outside the repo with fvcore 0.1.5)
OFFICIAL_FVCORE_224 = {
    "edgevit_xxs": 557_457_984,
    "edgevit_xs": 1_136_470_560,
    "edgevit_s": 1_923_271_008,
    "emo_1m": 260_843_664,
    "emo_2m": 439_363_064,
    "emo_5m": 902_583_776,
    "emo_6m": 960_752_512,
}


@pytest.fixture(autouse=True)
def _needs_fvcore() -> None:
    pytest.importorskip("fvcore", reason="fvcore (the 'macs' extra) is needed for the papers' MAC convention")
    torch.set_num_threads(1)


class _Conv(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3, stride=2, padding=1)  # 8×3×3×3 weights, 4×4 output at 8×8

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x)


class _ConvBN(_Conv):
    def __init__(self) -> None:
        super().__init__()
        self.bn = nn.BatchNorm2d(8)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.bn(self.conv(x))


class _ConvLNLinear(_Conv):
    def __init__(self) -> None:
        super().__init__()
        self.ln = nn.LayerNorm(8)
        self.fc = nn.Linear(8, 5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        t = self.conv(x).flatten(2).transpose(1, 2)  # (1, 16, 8)
        return self.fc(self.ln(t))


class _Attention(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        t = x.flatten(2).transpose(1, 2)  # (1, 64, 3)
        a = (t @ t.transpose(1, 2)).softmax(-1)  # 64·3·64, softmax free
        return a @ t  # 64·64·3


class _Pools(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.pool = nn.AdaptiveAvgPool2d(1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.pool(x).flatten(1) + x.mean((2, 3)) + torch.relu(x).sum()


class _Transposed(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.up = nn.ConvTranspose2d(3, 3, 2, stride=2, groups=3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.up(x)


CONV = 8 * 3 * 3 * 3 * 4 * 4  # 3456


@pytest.mark.parametrize(
    ("module", "expected"),
    [
        (_Conv(), {"conv": CONV}),
        (_ConvBN(), {"conv": CONV, "batch_norm": 2 * 8 * 4 * 4}),  # eval BN with affine: 2 per element
        (_ConvLNLinear(), {"conv": CONV, "layer_norm": 5 * 16 * 8, "linear": 16 * 8 * 5}),  # LN 5/element, no bias
        (_Attention(), {"matmul": 64 * 3 * 64 + 64 * 64 * 3}),
        (_Pools(), {"adaptive_avg_pool2d": 3 * 8 * 8}),  # mean, relu, sum and add count 0
        (_Transposed(), {"conv": 3 * 1 * 2 * 2 * 8 * 8}),  # transposed conv: input spatial size
    ],
)
def test_per_op_rules(module: nn.Module, expected: dict[str, int]) -> None:
    assert macs_by_operator_paper_convention(module, 8) == expected
    assert count_macs_paper_convention(module, 8) == sum(expected.values())


def test_counts_in_eval_mode_and_restores_training() -> None:
    m = _ConvBN().train()
    m.bn.eval()
    assert count_macs_paper_convention(m, 8) == CONV + 2 * 8 * 4 * 4  # BN counted as in eval, not training (5/elem)
    assert m.training and not m.bn.training and m.conv.training


@pytest.mark.parametrize("name", sorted(OFFICIAL_FVCORE_224))
def test_variants_match_official_and_paper(name: str) -> None:
    model = build_model(name)
    by_op = macs_by_operator_paper_convention(model, 224)
    total = sum(by_op.values())
    assert total == OFFICIAL_FVCORE_224[name]
    card = get_card(name)
    assert card.paper is not None and card.paper.macs is not None
    figure = str(round(card.paper.macs))  # rounded as the paper prints it: 557M, 1136M, 1.9G
    scale = 10 ** (len(figure) - len(figure.rstrip("0")))
    assert round(total / scale) * scale == round(card.paper.macs)
    # the papers' convention = zoo's conv + linear + matmul, plus the norms
    zoo = count_macs(model, 224)
    assert (zoo.conv, zoo.linear, zoo.matmul) == (by_op["conv"], by_op["linear"], by_op["matmul"])
    assert total == zoo.total + by_op["batch_norm"] + by_op["layer_norm"]


def test_missing_fvcore_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "fvcore", None)
    monkeypatch.setitem(sys.modules, "fvcore.nn", None)
    with pytest.raises(MissingExtraError, match=r"edgedeploy\[macs\]"):
        count_macs_paper_convention(_Conv(), 8)
