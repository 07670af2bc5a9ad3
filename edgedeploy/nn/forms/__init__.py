"""Export forms: the export-friendly modules the registered rewrites put in place of a family's blocks, one module
per family (:mod:`.emo`, :mod:`.edgevit`, :mod:`.mobilevit`), each beside the module it stands for.

Importing this package registers every form's rewrite (``edgedeploy/nn/__init__`` imports it). Layer 3 (models):
imports the family modules and :mod:`edgedeploy.nn.rewrites`, never :mod:`edgedeploy.export`.
"""

from edgedeploy.nn.forms import edgevit, emo, mobilevit

__all__ = ["edgevit", "emo", "mobilevit"]
