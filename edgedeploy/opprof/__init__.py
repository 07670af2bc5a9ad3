"""Per-operator profiles mapped back to ``nn.Module`` paths: ``edgedeploy profile`` (see :mod:`.run`).

Modules: :mod:`.ort` / :mod:`.mnn` / :mod:`.torch_prof` (one runtime profiler each, named by the registry's
``RuntimeSpec.profiler``), :mod:`.record` (the record schema shared by every runtime), :mod:`.run` (profile and
bench in one process), :mod:`.render` (rows, side-by-side comparison, HTML; a report, layer 6), :mod:`.cli` (the
command). The op-name → module-path map is :mod:`edgedeploy.export.sourcemap`, written at export.

Layer 5 (measurement): imports records, models, engines and ``bench``; imported only by the command layer.
"""
