"""Per-operator times from MNN's per-op callbacks (Interpreter / Session API, ``runSessionWithCallBackInfo``).

The Express ``Module`` API that ``edgedeploy bench`` times has no per-op hook in Python; the Session API runs the
same CPU backend kernels with a ``begin(tensors, op_info)`` / ``end(tensors, op_info)`` callback around each op
(``op_info.getName()`` / ``getType()``). Each op's time is ``perf_counter_ns`` at the start of ``end`` minus at the
end of ``begin``, in ms. Settings: CPU backend, ``numThread = threads``, precision ``"high"`` (fp32 compute), as
the bench runtime. MNN overwrites the session input during ``runSession`` (TOOLCHAIN_NOTES.md): a fresh copy of
the input is written before every run, outside the timed region.

Callback overhead, measured and corrected: the same session is also run without callbacks (``runSession``),
interleaved run by run. ``overhead["callback_ms_per_run"]`` = median(with callbacks) − median(without);
``overhead["per_op_us"]`` that divided by the op count. Part of each callback pair falls inside an op's interval
(returning from ``begin``, entering ``end``); it is estimated as the shortest interval seen for any op
(``overhead["in_interval_us"]``, an upper bound: that op's own work counts in it too) and subtracted from every op
(clamped at 0).

MNN gives at most two multi-threaded runtimes of a process a share of its CPU thread pool
(``MNN_THREAD_POOL_MAX_TASKS = 2`` in ``source/backend/cpu/ThreadPool.cpp``); another one runs single-threaded. So
``edgedeploy profile`` never keeps this session and the bench session alive together: with ``keep_open=False``
each :meth:`MnnProfiler.run` opens its own session and releases it.
"""

from __future__ import annotations

import gc
import time
from pathlib import Path
from typing import Any

import numpy as np

from edgedeploy._util import captured_fd_output
from edgedeploy.opprof.record import RawProfile


class MnnProfiler:
    """An MNN Interpreter session with per-op callbacks; :meth:`run` runs it, :meth:`result` averages.

    ``x`` is the float32 NCHW input (the artifact's input shape). Raises
    :class:`~edgedeploy.errors.ArtifactError` when MNN cannot open the file.
    """

    def __init__(self, path: Path, x: np.ndarray, threads: int, keep_open: bool = True) -> None:
        from edgedeploy.runtimes.mnn_rt import import_mnn

        self.mnn = import_mnn()
        self.x = np.ascontiguousarray(x, dtype=np.float32)
        self.path = path
        self.threads = threads
        self.keep_open = keep_open
        self.interp: Any = None
        self.per_run: list[tuple[list[str], list[str], list[int]]] = []
        self.with_cb_ms: list[float] = []
        self.plain_ms: list[float] = []
        self.open()
        if not keep_open:
            self.close()

    def open(self) -> None:
        """Create the Interpreter and its session (CPU, ``threads``, precision high)."""
        from edgedeploy.errors import ArtifactError

        mnn, x = self.mnn, self.x
        with captured_fd_output():
            try:
                self.interp = mnn.Interpreter(str(self.path))
                self.sess = self.interp.createSession(
                    {"backend": "CPU", "numThread": self.threads, "precision": "high"}
                )
            except Exception as e:
                raise ArtifactError(f"MNN cannot open {self.path}: {type(e).__name__}: {e}") from e
            self.inp = self.interp.getSessionInput(self.sess)
            if tuple(self.inp.getShape()) != tuple(x.shape):
                self.interp.resizeTensor(self.inp, tuple(x.shape))
                self.interp.resizeSession(self.sess)
        self.fresh = mnn.Tensor(list(x.shape), mnn.Halide_Type_Float, x, mnn.Tensor_DimensionType_Caffe)

    def close(self) -> None:
        """Release the session and its runtime (and so its share of MNN's thread pool)."""
        self.interp = self.sess = self.inp = self.fresh = None
        gc.collect()

    def run(self, n: int, timed: bool = True, warm: int = 0) -> None:
        """``warm`` untimed runs, then ``n`` runs with callbacks, each followed by one run without (for the overhead);
        a fresh input before every run. Without ``keep_open`` the session is opened for this call only."""
        if self.interp is None:
            self.open()
        if warm:
            with captured_fd_output():
                for _ in range(warm):
                    self.inp.copyFrom(self.fresh)
                    self.interp.runSession(self.sess)
        clock = time.perf_counter_ns
        state: dict[str, Any] = {}

        def begin(_tensors: object, _info: object) -> bool:
            state["t"] = clock()
            return True

        def end(_tensors: object, info: Any) -> bool:
            t = clock()
            state["d"].append(t - state["t"])
            state["n"].append(info.getName())
            state["y"].append(info.getType())
            return True

        interp, sess, inp, fresh = self.interp, self.sess, self.inp, self.fresh
        with captured_fd_output():
            for _ in range(n):
                state.update(d=[], n=[], y=[])
                inp.copyFrom(fresh)
                t0 = clock()
                interp.runSessionWithCallBackInfo(sess, begin, end)
                t1 = clock()
                inp.copyFrom(fresh)
                t2 = clock()
                interp.runSession(sess)
                t3 = clock()
                if timed:
                    self.per_run.append((state["n"], state["y"], state["d"]))
                    self.with_cb_ms.append((t1 - t0) / 1e6)
                    self.plain_ms.append((t3 - t2) / 1e6)
        if not self.keep_open:
            self.close()

    def result(self) -> RawProfile:
        from edgedeploy.errors import ArtifactError

        per_run = self.per_run
        if not per_run or not per_run[0][0]:
            raise ArtifactError(f"MNN ran {self.path} without calling the per-op callbacks")
        first_names, first_types, _ = per_run[0]
        order: list[str] = []
        op_types: dict[str, str] = {}
        calls: dict[str, int] = {}
        for name, typ in zip(first_names, first_types, strict=True):
            if name not in op_types:
                order.append(name)
                op_types[name] = typ
            calls[name] = calls.get(name, 0) + 1
        floor_ns = min(min(d) for _, _, d in per_run)
        samples: dict[str, list[float]] = {name: [] for name in order}
        for names, _, durs in per_run:
            acc: dict[str, float] = {}
            for name, d in zip(names, durs, strict=True):
                acc[name] = acc.get(name, 0.0) + max(d - floor_ns, 0) / 1e6
            for name in order:
                samples[name].append(acc.get(name, 0.0))
        n_ops = len(first_names)
        cb_over = float(np.median(self.with_cb_ms) - np.median(self.plain_ms))
        overhead = {
            "callback_ms_per_run": cb_over,
            "per_op_us": cb_over / n_ops * 1e3 if n_ops else None,
            "in_interval_us": floor_ns / 1e3,
            "subtracted_ms_per_run": floor_ns * n_ops / 1e6,
            "with_callbacks_median_ms": float(np.median(self.with_cb_ms)),
            "without_callbacks_median_ms": float(np.median(self.plain_ms)),
            "ops_per_run": n_ops,
        }
        return RawProfile(
            runtime="mnn", op_types=op_types, samples=samples, order=order, calls=calls, run_ms=self.plain_ms,
            overhead=overhead,
            notes=[
                "per-op times from MNN's Session API callbacks (runSessionWithCallBackInfo); in-interval callback "
                f"overhead {floor_ns / 1e3:.2f} us/op subtracted; run_ms = runSession without callbacks"
            ],
        )  # fmt: skip
