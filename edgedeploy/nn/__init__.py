"""Building blocks and one file per model family; each family file registers a builder in
:mod:`edgedeploy.zoo` with ``@register_family("name")``."""
