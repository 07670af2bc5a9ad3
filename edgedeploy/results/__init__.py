"""Benchmark results: the records and their files, and the decisions made from them.

Records (layer 2; any layer may import them): :mod:`.result` (``BenchResult``, timestamps), :mod:`.stats`,
:mod:`.store` (one JSON run per file), :mod:`.baseline`, :mod:`.sources` (results by name). Decisions (layer 6;
imported by the API and the command layer only): :mod:`.compare` (the regression rule), :mod:`.report`
(Markdown / JSON / HTML). :mod:`.cli` is a command module.
"""
