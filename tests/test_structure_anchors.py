"""The structure redesign (issue 21) changes no exported graph: the four anchor models' ONNX node lists match.

The fixture was recorded by ``python -m tests.anchor_nodes`` on the tree before the redesign (commit 78e5164);
a re-export through the public API with default options must give the same ops, names and order.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.anchor_nodes import ANCHORS, FIXTURE, node_list


@pytest.mark.slow
@pytest.mark.parametrize("model", ANCHORS)
def test_anchor_node_list_unchanged(model: str, tmp_path: Path) -> None:
    recorded = json.loads(FIXTURE.read_text())[model]
    current = node_list(model, tmp_path)
    assert len(current) == len(recorded), f"{model}: {len(current)} nodes, recorded {len(recorded)}"
    diffs = [(i, r, c) for i, (r, c) in enumerate(zip(recorded, current, strict=True)) if r != c]
    assert not diffs, f"{model}: first differing nodes {diffs[:5]}"
