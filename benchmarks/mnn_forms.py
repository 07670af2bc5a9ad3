"""Export forms for MNN, A/B: each variant's parity-checked MNN artifact against the naive MNN file, interleaved.

For one zoo model: the naive MNN file (``torch.onnx.export`` + onnxsim + MNN's converter, as
``naive_vs_edgedeploy.py`` makes it), then one ``edgedeploy.export(model, "mnn")`` per variant with the variant's
form table entries set for target ``"mnn"`` (parity must pass, else the variant is reported and not timed), all
loaded in one process with edgedeploy's MNN runtime (``--threads``, precision high) and timed in interleaved
blocks (order reversed every other block) on the process-CPU-time clock; a second session of the naive file
(``naive again``) is the same-file control. Ratios are medians of per-block paired ratios variant / naive.

    taskset -c 0 python benchmarks/mnn_forms.py --model edgeformer_s --variants unrolled,merged-cat,baked

Writes ``benchmarks/results/<name>.json`` / ``.md`` (``--name``, default ``mnn_forms_<model>``).
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
from naive_vs_edgedeploy import naive_onnx

from edgedeploy.export.mnn import onnx_to_mnn
from edgedeploy.nn.forms import edgevit, emo, gcc, mobilevit

#: variant name → the form-table entries it sets for target "mnn": (module, table name, value)
VARIANTS: dict[str, list[FormEntry]] = {
    "current": [],
    "unrolled": [(gcc, "GCC_BLOCK_FORM", "unrolled")],
    "merged-cat": [(gcc, "GCC_BLOCK_FORM", "merged-cat")],
    "baked": [(gcc, "GCC_BLOCK_FORM", "baked")],
    "mobilevit-static": [(mobilevit, "MOBILEVIT_FORM", "static")],
    "mobilevit-channels-last": [(mobilevit, "MOBILEVIT_FORM", "channels-last")],
    "emo-4d": [(emo, "IRMB_FORM", "4d")],
    "emo-merge-first": [(emo, "IRMB_FORM", "merge-first")],
    "edgevit-4d": [(edgevit, "SELF_ATTN_FORM", "4d")],
    "edgevit-channels-last": [(edgevit, "SELF_ATTN_FORM", "channels-last")],
}


def make_naive(module: Any, x: Any, folder: Path) -> Path:
    """The naive MNN file of ``module`` in ``folder`` (ONNX + MNN's converter; reused when present)."""
    mnn_path = folder / f"{folder.name}.naive.mnn"
    if not mnn_path.is_file():
        onnx_to_mnn(naive_onnx(module, x, folder / f"{folder.name}.naive.onnx"), mnn_path)
    return mnn_path


def main() -> None:
    args = forms_parser(__doc__, VARIANTS, "edgeformer_s").parse_args()
    run_forms(FormsRun("mnn", "mnn", "MNN", VARIANTS, make_naive, None), args)


if __name__ == "__main__":
    sys.exit(main())
