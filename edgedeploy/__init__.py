"""edgedeploy — export light-weight vision models to edge formats, prove parity, measure batch-1 latency.

Public API: :func:`export`, :func:`bench`, :func:`compare` (:mod:`edgedeploy.api`); see README.md for the command
line. Library modules: :mod:`edgedeploy.spec`, :mod:`edgedeploy.zoo`, the ``export`` / ``bench`` subpackages
(``edgedeploy.export.pipeline`` …) and :mod:`edgedeploy.results`.

The package's layers, bottom up (README "Layout"; ``tests/test_structure.py`` enforces them): base (errors,
registry, _util, _version, signals), records, models (``nn``, zoo, cards, spec), engines (``export``,
``runtimes``), measurement (``bench``, ``devices``, ``opprof``), decisions (``results`` rules, suites), the API,
then the command layer (``cli``, ``commands``, each package's ``cli``). This module is the API's facade: library
modules import submodules directly, never ``edgedeploy`` itself.
"""

import os as _os

from edgedeploy._version import __version__

# Never phone home. onnxruntime >= 1.29 (1.31 here) starts a 1DS telemetry uploader on Linux when imported, which
# resolves and contacts a Microsoft endpoint a few seconds later; ORT_DISABLE_TELEMETRY=1 set before its first
# import turns it off for the process and its children (microsoft/onnxruntime#27379). onnxsim imports onnxruntime
# too, so this must happen before any edgedeploy module imports either. tests/test_no_phone_home.py checks it.
_os.environ["ORT_DISABLE_TELEMETRY"] = "1"

# The public API. ``edgedeploy.export`` and ``edgedeploy.bench`` are also subpackages: importing a subpackage for
# the first time sets it as an attribute of this package, which would replace the function. So the two (empty,
# cheap) subpackages are imported first and the functions bound after; later ``import edgedeploy.export.pipeline``
# finds ``edgedeploy.export`` in sys.modules and leaves the attribute alone (tests/test_api.py checks it).
import edgedeploy.bench as _bench_pkg  # noqa: F401
import edgedeploy.export as _export_pkg  # noqa: F401
from edgedeploy.api import ab, bench, compare, export

# ``import edgedeploy.export.pipeline as p`` resolves ``edgedeploy.export`` by attribute (the function) and then
# falls back to ``sys.modules[f"{that.__name__}.pipeline"]``: the functions carry their package's dotted name so
# the fallback finds the submodule. (``__qualname__`` / ``__module__``, which pickle and inspect use, are unchanged.)
export.__name__ = "edgedeploy.export"
bench.__name__ = "edgedeploy.bench"

__all__ = ["__version__", "ab", "bench", "compare", "export"]
