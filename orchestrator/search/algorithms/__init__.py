"""The registry of search algorithms: one file per algorithm in this package.

Every module here registers its class with `@register`; importing the package imports them
all (`pkgutil`), so a new algorithm is a new file (and its line in
`core.search_algorithms.ALGORITHMS`, which the job spec validates against; a test checks
that the two agree).
"""

from __future__ import annotations

import importlib
import pkgutil

from .base import Algorithm, Brood, registered

for _module in pkgutil.iter_modules(__path__):
    if _module.name != "base":
        importlib.import_module(f"{__name__}.{_module.name}")

__all__ = ["Algorithm", "Brood", "registered"]
