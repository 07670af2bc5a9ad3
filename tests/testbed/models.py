"""Small real models for the device tests, made with torch's ONNX exporter (legacy path, opset 13)."""

from __future__ import annotations

from pathlib import Path


def tiny_convnet_onnx(path: Path, size: int = 32) -> Path:
    """Export a tiny conv net (conv, depthwise conv, pooling, linear; 10 classes) for a 1x3xSIZExSIZE input."""
    import torch
    from torch import nn

    torch.manual_seed(0)
    m = nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1),
        nn.ReLU(),
        nn.Conv2d(8, 8, 3, stride=2, padding=1, groups=8),
        nn.ReLU(),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(8, 10),
    ).eval()
    x = torch.randn(1, 3, size, size)
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            m, (x,), str(path), dynamo=False, opset_version=13, input_names=["input"], output_names=["output"]
        )
    return path
