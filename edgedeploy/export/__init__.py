"""One module per format, the lowering, parity, the export pipeline, ``--to all``, the source map and manifests.

Layer 4 (engines): imports models (``nn``, ``zoo``, ``spec``), records and the base layer, never ``bench``,
``devices``, ``results`` or the API; imported by measurement, decisions, the API and the command layer
(:mod:`.cli`). :mod:`.manifest` and :mod:`.sourcemap` are records (layer 2). Kept cheap to import
(``edgedeploy/__init__`` imports it first, see there).
"""
