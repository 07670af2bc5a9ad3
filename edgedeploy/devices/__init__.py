"""Device profiles, the connect factory and transports (local, SSH, ADB), the board runner, the remote bench,
board-side parity, locks and the labgrid farm.

Layer 5 (measurement): imports records, models and engines, never ``results`` rules, the API or commands;
imported by ``bench``, the API, suites and the command layer (:mod:`.cli`). :mod:`.runner` is stdlib-only (it runs
on the board) and imports nothing from edgedeploy.
"""
