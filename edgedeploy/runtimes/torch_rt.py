"""PyTorch eager execution of a zoo model (the reference every artifact is compared against)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from edgedeploy.runtimes.base import Runtime, Session, register_runtime


class TorchSession(Session):
    def __init__(self, module: nn.Module, input_shape: tuple[int, ...]) -> None:
        self.module = module.eval()
        self.input_shape = input_shape

    def run(self, x: np.ndarray) -> np.ndarray:
        with torch.inference_mode():
            return self.module(torch.from_numpy(np.ascontiguousarray(x))).numpy()

    def prepare(self, x: np.ndarray) -> Callable[[], Any]:
        t = torch.from_numpy(np.ascontiguousarray(x))
        module = self.module

        def infer() -> Any:
            with torch.inference_mode():
                return module(t)

        return infer


@register_runtime
class TorchRuntime(Runtime):
    """Eager PyTorch; ``load`` takes a zoo model name (or card path) instead of a file."""

    name = "torch"

    @classmethod
    def version(cls) -> str:
        return torch.__version__

    def load(self, path: Path | str, threads: int) -> Session:
        from edgedeploy.cards import get_card
        from edgedeploy.zoo import build_model

        torch.set_num_threads(threads)
        card = get_card(str(path))
        return TorchSession(build_model(card), (1, 3, card.input_size, card.input_size))

    @staticmethod
    def from_module(module: nn.Module, input_shape: tuple[int, ...], threads: int) -> TorchSession:
        """A session over an already built module (used by the bench command to honour --weights)."""
        torch.set_num_threads(threads)
        return TorchSession(module, input_shape)
