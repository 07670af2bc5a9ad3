"""ABNet: a small real conv net whose cost grows by whole blocks — the known slowdowns of A/B calibration.

``abnet(extra_blocks=k)`` is the same network as ``abnet()`` with ``k`` more depthwise-separable blocks (3×3
depthwise conv, BatchNorm, ReLU6, 1×1 pointwise conv, BatchNorm, ReLU6, at a fixed width and resolution) appended
to its body: a REAL graph change (more operators, more MACs), not a busy-wait. With ``blocks=60`` each extra block
adds roughly 1.5 % of the base latency (the stem and the head cost the rest); ``edgedeploy calibrate`` and
``benchmarks/ab_power.py`` measure the slowdown each variant really gives, they do not assume it.

Input: NCHW float32 ``(1, 3, H, W)``; output: ``(1, classes)`` class scores. Random init (seeded), no weights.
"""

from __future__ import annotations

import torch
from torch import nn

#: base body depth; ``extra_for_pct`` sizes slowdowns against it
DEFAULT_BLOCKS = 60


def _block(width: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(width, width, 3, padding=1, groups=width, bias=False),
        nn.BatchNorm2d(width),
        nn.ReLU6(),
        nn.Conv2d(width, width, 1, bias=False),
        nn.BatchNorm2d(width),
        nn.ReLU6(),
    )


class ABNet(nn.Module):
    """Stem (3×3 stride-2 conv to ``width`` channels), ``blocks + extra_blocks`` blocks, global pool, linear head."""

    def __init__(self, blocks: int = DEFAULT_BLOCKS, extra_blocks: int = 0, width: int = 32, classes: int = 100):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, width, 3, stride=2, padding=1, bias=False), nn.BatchNorm2d(width),
                                  nn.ReLU6())  # fmt: skip
        self.body = nn.Sequential(*[_block(width) for _ in range(blocks + extra_blocks)])
        self.head = nn.Linear(width, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.body(self.stem(x))
        return self.head(y.mean(dim=(2, 3)))


def abnet(extra_blocks: int = 0, blocks: int = DEFAULT_BLOCKS, width: int = 32, seed: int = 0) -> ABNet:
    """An :class:`ABNet` in eval mode, its weights drawn from ``seed`` (every variant shares the base's prefix)."""
    torch.manual_seed(seed)
    return ABNet(blocks, extra_blocks, width).eval()


def extra_for_pct(pct: float, blocks: int = DEFAULT_BLOCKS) -> int:
    """Extra blocks for a nominal ``pct`` % slowdown (at least 1 for pct > 0): ``round(blocks * pct / 100)``."""
    return 0 if pct <= 0 else max(1, round(blocks * pct / 100))


class WithExtraBlocks(nn.Module):
    """``net(x) + 0.01 · side(x)``: any classifier plus an ABNet side branch of ``extra_blocks`` blocks (stem and
    head always present, so ``extra_blocks=0`` is the baseline and each variant differs by blocks alone). The side
    branch's output really feeds the result, so no exporter can drop it. ``classes`` must match ``net``'s."""

    def __init__(self, net: nn.Module, extra_blocks: int, width: int = 32, classes: int = 1000):
        super().__init__()
        self.net = net
        torch.manual_seed(1)
        self.side = ABNet(0, extra_blocks, width, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x) + 0.01 * self.side(x)


def with_extra_blocks(net: nn.Module, extra_blocks: int, width: int = 32, classes: int = 1000) -> WithExtraBlocks:
    """:class:`WithExtraBlocks` in eval mode."""
    return WithExtraBlocks(net, extra_blocks, width, classes).eval()
