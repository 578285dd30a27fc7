"""LIV operators (linear input-varying systems, as in STAR): token and channel mixers.

`core.catalog` registers every operator once (torch-free) and names its implementation
(`impl = "module:Class"`); the implementations live here, one family per module, and are
imported only when a model is built.
"""

from __future__ import annotations

import importlib

from core import catalog


def load_operator(name: str) -> type:
    """The torch class that implements catalog operator `name`."""
    module_name, class_name = catalog.REGISTRY[name].impl.split(":")
    return getattr(importlib.import_module(module_name), class_name)
