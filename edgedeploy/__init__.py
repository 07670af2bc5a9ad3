"""edgedeploy — export light-weight vision models to edge formats, prove parity, measure batch-1 latency.

See README.md for the command line; the library entry points are :mod:`edgedeploy.zoo`,
:mod:`edgedeploy.export`, :mod:`edgedeploy.bench` and :mod:`edgedeploy.results`.
"""

import os as _os

__version__ = "0.1.0"

# Never phone home. onnxruntime >= 1.29 (1.31 here) starts a 1DS telemetry uploader on Linux when imported, which
# resolves and contacts a Microsoft endpoint a few seconds later; ORT_DISABLE_TELEMETRY=1 set before its first
# import turns it off for the process and its children (microsoft/onnxruntime#27379). onnxsim imports onnxruntime
# too, so this must happen before any edgedeploy module imports either. tests/test_no_phone_home.py checks it.
_os.environ["ORT_DISABLE_TELEMETRY"] = "1"
