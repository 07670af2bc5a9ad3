"""Deterministic weights for comparing our modules with reference logits recorded from the official code.

Two recipes, each the one its fixtures were recorded with (changing either invalidates those fixtures):
:func:`fill_state_dict` (ParC plug-ins and baselines: a key → shape listing and a seed) and :func:`seeded_state`
(EdgeViT and EMO: every tensor seeded by the CRC32 of its key).
"""

from __future__ import annotations

import json
import math
import zlib
from pathlib import Path
from typing import Any

import torch

#: reference records made from the official code: state-dict keys and shapes, logits, parameter counts
OFFICIAL_KEYS = Path(__file__).parent / "fixtures" / "official_keys"


def official_fixture(name: str) -> dict[str, Any]:
    """The recorded reference of ``name`` (``tests/fixtures/official_keys/<name>.json``)."""
    return json.loads((OFFICIAL_KEYS / f"{name}.json").read_text())


def fill_state_dict(items: list[tuple[str, list[int]]], seed: int) -> dict[str, torch.Tensor]:
    """Deterministic, well-scaled weights for a key → shape listing (the recipe the fixtures' logits used)."""
    g = torch.Generator().manual_seed(seed)
    out: dict[str, torch.Tensor] = {}
    for name, shape in items:
        if name.endswith("num_batches_tracked"):
            out[name] = torch.tensor(0)
            continue
        t = torch.randn(shape, generator=g)
        leaf = name.rsplit(".", 1)[-1]
        if leaf == "running_var":
            v = torch.exp(0.2 * t)
        elif leaf == "pe":
            v = 0.1 * t
        elif len(shape) >= 2:
            v = t * math.sqrt(2 / math.prod(shape[1:]))
        elif leaf == "gamma":
            v = 0.5 + 0.1 * t
        elif leaf == "weight":
            v = 1 + 0.1 * t
        else:
            v = 0.1 * t
        out[name] = v
    return out


def seeded_state(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Deterministic non-trivial weights, keyed by name (the rule the reference-logit fixtures were made with)."""
    out = {}
    for k, v in state.items():
        if not v.dtype.is_floating_point:
            out[k] = v.clone()
            continue
        g = torch.Generator().manual_seed(zlib.crc32(k.encode()))
        if k.endswith("running_var"):
            val = torch.rand(v.shape, generator=g) + 0.5
        elif k.endswith("running_mean"):
            val = torch.randn(v.shape, generator=g) * 0.1
        elif v.dim() == 1 and k.endswith("weight"):
            val = 1.0 + 0.1 * torch.randn(v.shape, generator=g)
        elif v.dim() == 1:
            val = 0.02 * torch.randn(v.shape, generator=g)
        else:
            val = torch.randn(v.shape, generator=g) / math.sqrt(math.prod(v.shape[1:]))
        out[k] = val
    return out


def assert_matches_official_logits(name: str) -> None:
    """``name`` built by the zoo, loaded with :func:`seeded_state`, gives the logits the official code produced with
    the same weights on seeded inputs (``<name>_reference_logits.json``: one entry per input size), to 1e-4."""
    from edgedeploy.zoo import build_model

    ref = json.loads((OFFICIAL_KEYS / f"{name}_reference_logits.json").read_text())["logits"]
    model = build_model(name)
    model.load_state_dict(seeded_state(model.state_dict()))
    for size, logits in ref.items():
        s = int(size)
        x = torch.randn(1, 3, s, s, generator=torch.Generator().manual_seed(s))
        with torch.no_grad():
            y = model(x)[0]
        expected = torch.tensor(logits)
        assert torch.allclose(y, expected, atol=1e-4, rtol=1e-4), (size, float((y - expected).abs().max()))
        assert torch.isfinite(y).all()
