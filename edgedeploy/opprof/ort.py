"""Per-operator times from onnxruntime's own profiler (``SessionOptions.enable_profiling``).

The session is opened with the bench runtime's settings (CPU EP, ``intra_op_num_threads = threads``, one
inter-op thread, sequential execution, default graph optimizations) plus profiling, and with
``optimized_model_filepath`` so the graph onnxruntime actually runs (NCHWc ``Conv`` nodes, ``ReorderInput`` /
``ReorderOutput`` layout conversions, fusions) is available to place every node on a module. The profile is a
Chrome-trace JSON: one ``cat: "Node"`` event ``<node>_kernel_time`` per node and run with ``dur`` in µs, inside a
``cat: "Session"`` ``model_run`` event per run. Only the runs made as measured (not warm-up) are kept.
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from edgedeploy.export.sourcemap import onnx_graph_nodes
from edgedeploy.opprof.record import RawProfile

_KERNEL = "_kernel_time"


class OrtProfiler:
    """onnxruntime sessions with profiling on; :meth:`run` runs one, :meth:`result` merges the parsed traces.

    With ``keep_open`` one session serves every :meth:`run`; without, each :meth:`run` opens a session, ends its
    profiling, parses the trace and releases it, so no idle profiled session (and its intra-op threads) is alive
    while the bench session runs. Raises :class:`~edgedeploy.errors.ArtifactError` when onnxruntime cannot load
    the file, :class:`~edgedeploy.errors.MissingExtraError` without onnxruntime.
    """

    def __init__(self, path: Path, x: np.ndarray, threads: int, keep_open: bool = True) -> None:
        self.path = path
        self.threads = threads
        self.keep_open = keep_open
        self._x = np.ascontiguousarray(x, dtype=np.float32)
        self._tmp = tempfile.TemporaryDirectory(prefix="edgedeploy-ortprof-")
        self._optimized = Path(self._tmp.name) / "optimized.onnx"
        self.sess: Any = None
        self.timed: list[bool] = []
        self.parts: list[RawProfile] = []
        self.graph: list | None = None
        self._open()
        if not keep_open:
            self._close()

    def _open(self) -> None:
        from edgedeploy.runtimes.onnxruntime_rt import OnnxRuntime, create_session, session_options

        ort = OnnxRuntime.import_engine()
        opts = session_options(ort, self.threads)  # the bench's settings, so the profile times what bench times
        opts.enable_profiling = True
        opts.profile_file_prefix = str(Path(self._tmp.name) / f"ort{len(self.parts)}")
        if self.graph is None:
            opts.optimized_model_filepath = str(self._optimized)
        try:
            self.sess = create_session(ort, self.path, opts)
        except Exception:
            self._tmp.cleanup()
            raise
        self._feed = {self.sess.get_inputs()[0].name: self._x}
        self._names = [self.sess.get_outputs()[0].name]
        self.timed = []
        if self.graph is None and self._optimized.is_file():
            import onnx

            self.graph = onnx_graph_nodes(onnx.load(str(self._optimized), load_external_data=False))

    def _close(self) -> None:
        trace = Path(self.sess.end_profiling())
        events = json.loads(trace.read_text())
        trace.unlink()
        if any(self.timed):
            self.parts.append(parse_trace(events, self.timed, None))
        self.sess = None

    def run(self, n: int, timed: bool = True, warm: int = 0) -> None:
        """``warm`` untimed runs, then ``n`` runs, measured or not (``timed``); every run is a ``model_run`` window
        of the trace, in order."""
        if self.sess is None:
            self._open()
        for _ in range(warm):
            self.sess.run(self._names, self._feed)
        self.timed += [False] * warm
        for _ in range(n):
            self.sess.run(self._names, self._feed)
        self.timed += [timed] * n
        if not self.keep_open:
            self._close()

    def result(self) -> RawProfile:
        try:
            if self.sess is not None:
                self._close()
            return merge(self.parts, self.graph)
        finally:
            self._tmp.cleanup()


def merge(parts: list[RawProfile], graph: list | None) -> RawProfile:
    """One RawProfile from the parsed traces of several sessions of the same model (runs concatenated)."""
    from edgedeploy.errors import ArtifactError

    if not parts:
        raise ArtifactError("onnxruntime's profiler recorded no measured run")
    first = parts[0]
    order = list(first.order)
    op_types = dict(first.op_types)
    for p in parts[1:]:
        for n in p.order:
            if n not in op_types:
                order.append(n)
                op_types[n] = p.op_types[n]
    samples: dict[str, list[float]] = {n: [] for n in order}
    for p in parts:
        for n in order:
            samples[n] += p.samples.get(n, [0.0] * p.runs)
    return RawProfile(
        runtime="onnxruntime", op_types=op_types, samples=samples, order=order, calls=first.calls,
        run_ms=[ms for p in parts for ms in p.run_ms], graph=graph, notes=first.notes,
    )  # fmt: skip


def parse_trace(events: list[dict], timed: list[bool], graph: list | None = None) -> RawProfile:
    """Per-node times (ms) of the ``model_run`` windows of an onnxruntime profile trace flagged in ``timed`` (one
    flag per run, in run order)."""
    runs = sorted((e for e in events if e.get("cat") == "Session" and e.get("name") == "model_run"),
                  key=lambda e: e["ts"])  # fmt: skip
    if len(runs) != len(timed):
        from edgedeploy.errors import ArtifactError

        raise ArtifactError(f"onnxruntime's profile holds {len(runs)} runs, {len(timed)} were made")
    runs = [r for r, t in zip(runs, timed, strict=True) if t]
    nodes = sorted((e for e in events if e.get("cat") == "Node" and e.get("name", "").endswith(_KERNEL)),
                   key=lambda e: e["ts"])  # fmt: skip
    op_types: dict[str, str] = {}
    order: list[str] = []
    samples: dict[str, list[float]] = {}
    calls: dict[str, int] = {}
    j = 0
    for k, run in enumerate(runs):
        lo, hi = run["ts"], run["ts"] + run["dur"]
        per_run: dict[str, float] = {}
        while j < len(nodes) and nodes[j]["ts"] < lo:
            j += 1
        while j < len(nodes) and nodes[j]["ts"] <= hi:
            e = nodes[j]
            name = e["name"][: -len(_KERNEL)]
            per_run[name] = per_run.get(name, 0.0) + e["dur"] / 1e3
            if k == 0:
                if name not in op_types:
                    order.append(name)
                    op_types[name] = e.get("args", {}).get("op_name", "?")
                calls[name] = calls.get(name, 0) + 1
            j += 1
        for name in order:
            samples.setdefault(name, []).append(per_run.get(name, 0.0))
    return RawProfile(
        runtime="onnxruntime", op_types=op_types, samples=samples, order=order, calls=calls,
        run_ms=[r["dur"] / 1e3 for r in runs], graph=graph,
        notes=["per-node kernel times from onnxruntime's profiler (enable_profiling); run_ms = its model_run"],
    )  # fmt: skip
