"""Export forms for LiteRT, A/B: each variant's parity-checked .tflite against the naive .tflite, interleaved.

For one zoo model: the naive file (``litert_torch.convert`` of the un-lowered module, as ``naive_vs_edgedeploy.py``
makes it), then one ``edgedeploy.export(model, "tflite")`` per variant with the variant's form-table entries set for
target ``"tflite"`` (parity must pass, else the variant is reported and not timed), all loaded in one process with
edgedeploy's LiteRT runtime (XNNPACK, ``--threads``, fp32) and timed in interleaved blocks (order reversed every
other block) on the process-CPU-time clock; a second session of the naive file (``naive again``) is the same-file
control. Ratios are medians of per-block paired ratios variant / naive. The shared loop is
``_common.run_forms`` (also used by ``ncnn_forms.py`` and ``mnn_forms.py``).

    taskset -c 0 python benchmarks/litert_forms.py --model mobilevit_s --variants mobilevit-static,mobilevit-sdpa

Writes ``benchmarks/results/<name>.json`` / ``.md`` (``--name``, default ``tflite_forms_<model>``).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

from _threads import threads_from_argv

os.environ.setdefault("OPENBLAS_NUM_THREADS", threads_from_argv(sys.argv, "1"))

from _common import FormEntry, FormsRun, forms_parser, run_forms
from mobilevit_trial_forms import cl4d_entry, register
from naive_vs_edgedeploy import naive_tflite

from edgedeploy.nn.forms import mobilevit
from edgedeploy.runtimes.litert_rt import tflite_op_census

register()  # the dropped attention forms' names ("head-major", "head-batched") for the trial variants

#: variant name → the form-table entries it sets for target "tflite" (or, ``cl4d_entry``, a lowering by class)
VARIANTS: dict[str, list[FormEntry]] = {
    "current": [],
    "mobilevit-static": [(mobilevit, "MOBILEVIT_FORM", "static")],
    "mobilevit-sdpa": [(mobilevit, "MOBILEVIT_FORM", "static, sdpa")],
    "mobilevit-torch-mha": [(mobilevit, "MOBILEVIT_FORM", "static, torch-mha")],
    "mobilevit-channels-last": [(mobilevit, "MOBILEVIT_FORM", "channels-last")],
    "mobilevit-head-major": [(mobilevit, "MOBILEVIT_FORM", "static, head-major")],
    "mobilevit-cl4d": [cl4d_entry()],
    "mobilevit-cl4d-head-major": [cl4d_entry("head-major")],
    "mobilevit-head-batched": [(mobilevit, "MOBILEVIT_FORM", "static, head-batched")],
    "mobilevit-cl4d-head-batched": [cl4d_entry("head-batched")],
    "mobilevit-cl6d-head-batched": [(mobilevit, "MOBILEVIT_FORM", "channels-last, head-batched")],
    "mobilevit-cl4d-sdpa": [cl4d_entry("sdpa")],
}


def make_naive(module: Any, x: Any, folder: Path) -> Path:
    """The naive .tflite of ``module`` in ``folder`` (reused when present: ``--cache-dir``)."""
    return naive_tflite(module, x, folder / f"{folder.name}.naive.tflite")


def main() -> None:
    args = forms_parser(__doc__, VARIANTS, "mobilevit_s").parse_args()
    spec = FormsRun("tflite", "litert", "LiteRT", VARIANTS, make_naive, tflite_op_census)
    run_forms(spec, args)


if __name__ == "__main__":
    sys.exit(main())
