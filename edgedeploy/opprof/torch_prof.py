"""Per-operator times of the eager PyTorch module from ``torch.profiler`` (CPU activity).

Every submodule gets a forward pre-hook / hook pair that opens and closes a ``record_function`` range named
``module::<dotted path>``, so each aten op the profiler records has its module as the nearest enclosing range
(``torch.profiler.profile(with_modules=True)`` only annotates TorchScript modules, not eager ones). An op's time is
its ``cpu_time_total`` (µs → ms, the op with the aten ops it calls); only ops directly under a module range are
counted, so nothing is counted twice. Ops are named ``<module>/<aten op>#<k>`` (k-th such op in that module per
run). Runs happen under ``torch.inference_mode()`` with ``torch.set_num_threads(threads)``; the first ``1 + warmup``
runs are outside the profiler. The profiler's own per-op cost is in these times (reported as ``overhead``:
median run with the profiler minus without).
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np
import torch
from torch import nn

from edgedeploy.opprof.record import RawProfile

_PREFIX = "module::"
_RUN = "edgedeploy::run"


class TorchProfiler:
    """The eager module under ``torch.profiler``; :meth:`run` profiles a block of runs, :meth:`result` parses."""

    def __init__(self, module: nn.Module, x: np.ndarray, threads: int) -> None:
        torch.set_num_threads(threads)
        self.module = module.eval()
        self.t = torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32))
        self.events: list[Any] = []
        self.timed: list[float] = []
        self.plain: list[float] = []

    def _hooks(self) -> list[Any]:
        from torch.autograd.profiler import record_function

        stack: list[Any] = []

        def pre(name: str) -> Any:
            def hook(_m: nn.Module, _args: Any) -> None:
                rf = record_function(_PREFIX + name)
                rf.__enter__()
                stack.append(rf)

            return hook

        def post(_m: nn.Module, _args: Any, _out: Any) -> None:
            if stack:
                stack.pop().__exit__(None, None, None)

        handles = []
        for name, m in self.module.named_modules():
            handles.append(m.register_forward_pre_hook(pre(name)))
            handles.append(m.register_forward_hook(post))
        return handles

    def run(self, n: int, timed: bool = True, warm: int = 0) -> None:
        """``warm`` untimed runs, then ``n`` profiled runs (hooks and profiler only for this block), then one plain
        run for the overhead."""
        from torch.autograd.profiler import record_function
        from torch.profiler import ProfilerActivity, profile

        clock = time.perf_counter_ns
        with torch.inference_mode():
            for _ in range(warm):
                self.module(self.t)
            if not timed:
                for _ in range(n):
                    self.module(self.t)
                return
            handles = self._hooks()
            try:
                with profile(activities=[ProfilerActivity.CPU]) as prof:
                    for _ in range(n):
                        t0 = clock()
                        with record_function(_RUN):
                            self.module(self.t)
                        self.timed.append((clock() - t0) / 1e6)
            finally:
                for h in handles:
                    h.remove()
            t0 = clock()
            self.module(self.t)
            self.plain.append((clock() - t0) / 1e6)
        self.events.extend(prof.events())

    def result(self) -> RawProfile:
        return _parse(self.events, self.timed, self.plain)


def _parse(events: list[Any], timed: list[float], plain: list[float]) -> RawProfile:
    runs = sorted((e for e in events if e.name == _RUN), key=lambda e: e.time_range.start)
    run_index = {id(e): i for i, e in enumerate(runs)}
    per_run: list[dict[str, float]] = [{} for _ in runs]
    op_types: dict[str, str] = {}
    modules: dict[str, str | None] = {}
    order_first: list[tuple[float, str]] = []
    for e in events:
        parent = e.cpu_parent
        if e.name.startswith(_PREFIX) or e.name == _RUN or parent is None:
            continue
        if not (parent.name.startswith(_PREFIX) or parent.name == _RUN):
            continue  # nested inside another aten op: counted in that op's total
        where = parent.name[len(_PREFIX) :] if parent.name.startswith(_PREFIX) else ""
        top = parent
        while top is not None and top.name != _RUN:
            top = top.cpu_parent
        if top is None or id(top) not in run_index:
            continue
        i = run_index[id(top)]
        per_run[i].setdefault("__seq__" + where + e.name, 0)
        k = int(per_run[i]["__seq__" + where + e.name])
        per_run[i]["__seq__" + where + e.name] = k + 1
        name = f"{where}/{e.name}#{k}"
        per_run[i][name] = per_run[i].get(name, 0.0) + e.cpu_time_total / 1e3
        if name not in op_types:
            op_types[name] = e.name
            modules[name] = where
            order_first.append((e.time_range.start - top.time_range.start, name))
    order = [n for _, n in sorted(order_first)]
    samples = {n: [r.get(n, 0.0) for r in per_run] for n in order}
    over = float(np.median(timed) - np.median(plain)) if timed and plain else None
    return RawProfile(
        runtime="torch", op_types=op_types, samples=samples, order=order, run_ms=timed, modules=modules,
        overhead={"profiler_ms_per_run": over, "with_profiler_median_ms": float(np.median(timed)),
                  "without_profiler_median_ms": float(np.median(plain))},
        notes=["aten op times from torch.profiler under per-module record_function ranges (forward hooks)"],
    )  # fmt: skip
