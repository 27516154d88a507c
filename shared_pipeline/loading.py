"""Loads a module of the checkout by its dotted name, or from its file when its folder is no
package (airflow/ is a DAGs folder: as a package it would shadow the installed `airflow`).
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
from pathlib import Path
from types import ModuleType

CHECKOUT = Path(__file__).resolve().parents[1]


def load_module(target: str) -> ModuleType:
    """`target` is a dotted module name, or a path ending in .py relative to the checkout."""
    if not target.endswith(".py"):
        return importlib.import_module(target)
    name = "checkout_" + target.removesuffix(".py").replace("/", "_")  # never an engine's name
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, CHECKOUT / target)
        if spec is None or spec.loader is None:
            raise ImportError(f"cannot load {target}")
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        try:
            spec.loader.exec_module(module)
        except BaseException:
            del sys.modules[name]
            raise
    return sys.modules[name]
