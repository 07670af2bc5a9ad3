"""Export forms for ncnn, A/B: each variant's parity-checked ncnn artifact against the naive ncnn file, interleaved.

For one zoo model: the naive ncnn pair (``torch.jit.trace`` of the un-lowered module + pnnx with only
``inputshape``, as ``naive_vs_edgedeploy.py`` makes it), then one ``edgedeploy.export(model, "ncnn")`` per variant
with the variant's form-table entries set for target ``"ncnn"`` (parity must pass, else the variant is reported and
not timed), all loaded in one process with edgedeploy's ncnn runtime (``--threads``, fp32) and timed in interleaved
blocks (order reversed every other block) on the process-CPU-time clock; a second session of the naive file
(``naive again``) is the same-file control. Ratios are medians of per-block paired ratios variant / naive.

    taskset -c 0 python benchmarks/ncnn_forms.py --model mobilevit_s --variants mobilevit-static,mobilevit-sdpa

Writes ``benchmarks/results/<name>.json`` / ``.md`` (``--name``, default ``ncnn_forms_<model>``).
The shared loop is ``_common.run_forms``.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

from _threads import threads_from_argv

os.environ.setdefault("OPENBLAS_NUM_THREADS", threads_from_argv(sys.argv, "1"))

from _common import FormEntry, FormsRun, forms_parser, run_forms
from naive_vs_edgedeploy import naive_ncnn

from edgedeploy.nn.forms import mobilevit
from edgedeploy.runtimes.ncnn_rt import ncnn_op_census

#: variant name → the form-table entries it sets for target "ncnn": (module, table name, value)
VARIANTS: dict[str, list[FormEntry]] = {
    "current": [],
    "mobilevit-static": [(mobilevit, "MOBILEVIT_FORM", "static")],
    "mobilevit-sdpa": [(mobilevit, "MOBILEVIT_FORM", "static, sdpa")],
    "mobilevit-torch-mha": [(mobilevit, "MOBILEVIT_FORM", "static, torch-mha")],
}


def make_naive(module: Any, x: Any, folder: Path) -> Path:
    """The naive ncnn pair of ``module`` in ``folder`` (the .param path; reused when present: ``--cache-dir``)."""
    return naive_ncnn(module, x, folder / f"{folder.name}.naive.param")


def main() -> None:
    args = forms_parser(__doc__, VARIANTS, "mobilevit_s").parse_args()
    run_forms(FormsRun("ncnn", "ncnn", "ncnn", VARIANTS, make_naive, ncnn_op_census), args)


if __name__ == "__main__":
    sys.exit(main())
