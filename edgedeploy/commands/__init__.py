"""The command layer's shared pieces: rich tables (:mod:`.tables`) and command bodies too long for a callback
(:mod:`.export_all`). Only command modules (``edgedeploy/cli.py``, a package's ``cli.py``) import this package;
it may import anything below it (the API and every library layer).
"""
