"""Record the ONNX node lists (op_type, name; graph order) of the four anchor models, exported with defaults.

``python -m tests.anchor_nodes`` (from the checkout, ``PYTHONPATH=.``) rewrites
``tests/fixtures/anchor_node_lists.json``; ``tests/test_structure_anchors.py`` re-exports and compares. The
export goes through the public API (:func:`edgedeploy.export`, default options, fp32, parity on) so what is
pinned is exactly what ``edgedeploy export NAME --to onnx`` writes.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

ANCHORS = ("edgeformer_s", "mobilevit_s", "emo_5m", "edgevit_xs")
FIXTURE = Path(__file__).parent / "fixtures" / "anchor_node_lists.json"


def node_list(model: str, out: Path) -> list[list[str]]:
    """Export ``model`` to ONNX under ``out`` with the API's defaults; its graph's ``[op_type, name]`` pairs."""
    import onnx

    import edgedeploy

    outcome = edgedeploy.export(model, "onnx", out=out)
    graph = onnx.load(str(outcome.artifact), load_external_data=False).graph
    return [[n.op_type, n.name] for n in graph.node]


def record(out: Path) -> dict[str, list[list[str]]]:
    return {m: node_list(m, out / m) for m in ANCHORS}


if __name__ == "__main__":
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        lists = record(Path(tmp))
    FIXTURE.write_text(json.dumps(lists, indent=1) + "\n")
    print({m: len(v) for m, v in lists.items()}, file=sys.stderr)
