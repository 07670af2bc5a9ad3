"""The timing harness (warm-up, timed batch-1 iterations, raw samples), local runs and result keeping.

Layer 5 (measurement): imports records, models, engines (``export`` / ``runtimes``) and ``devices``; imported by
the API, the suite runner and the command layer. :mod:`.suite_run` runs a suite through :mod:`edgedeploy.api` and
sits on the API layer; :mod:`.cli` is a command module. Kept cheap to import (``edgedeploy/__init__`` imports it
first, see there).
"""
