"""The real-model corpus (issue 23): other people's architectures and ONNX files, exported with parity, in CI.

The corpus itself (benchmarks/corpus.py: timm and torchvision architectures with random weights, the PaddleOCR
files of rapidocr-onnxruntime; onnx / mnn / ncnn / tflite through the public API) starts in the background when
this file is selected (tests/corpus_bg.py, conftest.py), and these tests run last and read its result.
Thresholds: issue 23's "Done when".
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks.corpus import CASES, FORMATS, render_md, summarize  # noqa: E402

#: issue 23, "Done when": all applicable pairs, then per format
MIN_ALL = 0.90
MIN_FORMAT = {"onnx": 0.95, "mnn": 0.95, "ncnn": 0.85, "tflite": 0.85}
#: a reason names the converter that refused (or the parity gate that failed)
CONVERTERS = ("onnx", "mnn", "pnnx", "ncnn", "litert", "tflite", "tensorflow", "parity", "scaled", "cosine", "top-1")


def _record(case: str, source: str, statuses: dict[str, str]) -> dict:
    return {"case": case, "source": source, "model": case, "input_shape": [1, 3, 8, 8],
            "formats": {f: {"status": s, "reason": "x"} for f, s in statuses.items()}}  # fmt: skip


def test_summary_counts_only_applicable_pairs() -> None:
    recs = [
        _record("a", "timm", {"onnx": "pass", "mnn": "pass", "ncnn": "export-failed", "tflite": "pass"}),
        _record(
            "b", "onnx", {"onnx": "pass", "mnn": "parity-failed", "ncnn": "not-applicable", "tflite": "not-applicable"}
        ),
    ]
    s = summarize(recs)
    assert (s["pairs_applicable"], s["pairs_passed"], s["pairs_not_applicable"]) == (6, 4, 2)
    assert s["per_format"]["ncnn"]["rate"] == 0.0 and s["per_format"]["tflite"]["applicable"] == 1
    assert s["per_format"]["mnn"]["rate"] == 0.5 and (s["architectures"], s["onnx_files"]) == (1, 1)


def test_corpus_case_list_meets_the_issue() -> None:
    archs = [c for c in CASES if c.source != "onnx"]
    assert len(archs) >= 30 and len({c.model for c in archs if c.source == "timm"}) >= 15
    assert len([c for c in CASES if c.source == "onnx"]) >= 3 and len({c.name for c in CASES}) == len(CASES)


def test_committed_table_is_rendered_from_the_committed_json() -> None:
    doc = json.loads((ROOT / "benchmarks" / "results" / "corpus.json").read_text())
    assert (ROOT / "benchmarks" / "results" / "corpus.md").read_text() == render_md(doc)
    assert doc["summary"] == summarize(doc["cases"])


@pytest.fixture(scope="module")
def corpus() -> dict:
    from tests import corpus_bg

    if corpus_bg.RUN.skip_reason:
        pytest.skip(corpus_bg.RUN.skip_reason)
    return json.loads(corpus_bg.wait().read_text())


@pytest.mark.slow
@pytest.mark.corpus
def test_corpus_is_complete_with_origins(corpus: dict) -> None:
    """Every case ran (a record for each, every format recorded), the ONNX files' origins are recorded."""
    assert corpus["complete"] and {r["case"] for r in corpus["cases"]} == {c.name for c in CASES}
    s = corpus["summary"]
    assert s["architectures"] >= 30 and s["onnx_files"] >= 3
    for r in corpus["cases"]:
        assert set(r["formats"]) == set(FORMATS), r["case"]
        if r["source"] == "onnx":
            o = r["origin"]
            assert o["package"] == "rapidocr-onnxruntime" and len(o["sha256"]) == 64 and o["version"]


@pytest.mark.slow
@pytest.mark.corpus
def test_every_corpus_failure_has_a_one_line_reason(corpus: dict) -> None:
    fails = [(r["case"], f, e) for r in corpus["cases"] for f, e in r["formats"].items()
             if e["status"] in ("export-failed", "parity-failed")]  # fmt: skip

    def named(reason: str) -> bool:
        return any(k in reason.lower() for k in CONVERTERS)

    bad = [
        (c, f, e.get("reason"))
        for c, f, e in fails
        if not e.get("reason") or "\n" in e["reason"] or not named(e["reason"])
    ]
    assert not bad, bad


@pytest.mark.slow
@pytest.mark.corpus
def test_corpus_pass_rates_meet_the_issue(corpus: dict) -> None:
    """>= 90 % of all applicable (case x format) pairs pass with parity; onnx, mnn >= 95 %; ncnn, tflite >= 85 %."""
    s = corpus["summary"]
    rates = {f: s["per_format"][f]["rate"] for f in FORMATS}
    low = {f: r for f, r in rates.items() if r is None or r < MIN_FORMAT[f]}
    assert s["rate"] >= MIN_ALL and not low, f"all {s['rate']}, per format {rates}"
