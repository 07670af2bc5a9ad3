"""Per-operator profiles mapped back to ``nn.Module`` paths: ``edgedeploy profile`` (see :mod:`.run`).

Modules: :mod:`edgedeploy.export.sourcemap` (op names → module paths, written at export), :mod:`.ort` / :mod:`.mnn` /
:mod:`.torch_prof` (one runtime profiler each), :mod:`.record` (the record schema shared by every runtime),
:mod:`.render` (tables, side-by-side comparison, HTML), :mod:`.cli` (the command).
"""
