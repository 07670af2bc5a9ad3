"""edgedeploy — export light-weight vision models to edge formats, prove parity, measure batch-1 latency.

See README.md for the command line; the library entry points are :mod:`edgedeploy.zoo`,
:mod:`edgedeploy.export`, :mod:`edgedeploy.bench` and :mod:`edgedeploy.results`.
"""

__version__ = "0.1.0"
