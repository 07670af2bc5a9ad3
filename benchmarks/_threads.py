"""The ``--threads`` value of a benchmark's command line, read before numpy / onnxruntime are imported.

OpenBLAS reads ``OPENBLAS_NUM_THREADS`` once, when numpy is imported, so a script that times numpy's GEMM ceiling
with its own thread count must set it from ``sys.argv`` before its other imports. Stdlib only, for that reason.
"""

from __future__ import annotations


def threads_from_argv(argv: list[str], default: str) -> str:
    """The value given as ``--threads N`` or ``--threads=N`` in ``argv``; ``default`` when absent."""
    for i, a in enumerate(argv):
        if a == "--threads" and i + 1 < len(argv):
            return argv[i + 1]
        if a.startswith("--threads="):
            return a.split("=", 1)[1]
    return default
