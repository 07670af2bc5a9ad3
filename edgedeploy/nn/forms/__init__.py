"""Export forms: the export-friendly modules the registered rewrites put in place of a family's blocks, one module
per family (:mod:`.gcc`, :mod:`.emo`, :mod:`.edgevit`, :mod:`.mobilevit`), each beside the module it stands for.

Importing this package registers every form's rewrite with :func:`edgedeploy.nn.rewrites.register_lowering`
(``edgedeploy/nn/__init__`` imports it, so importing any module of :mod:`edgedeploy.nn` registers them all). A forms
module imports its family module, never the reverse. Layer 3 (models): imports the family modules and
:mod:`edgedeploy.nn.rewrites`, never :mod:`edgedeploy.export`.
"""

from edgedeploy.nn.forms import edgevit, emo, gcc, mobilevit

__all__ = ["edgevit", "emo", "gcc", "mobilevit"]
