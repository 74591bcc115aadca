"""The layers, one file each: importing this package registers every layer and layout.

Each module here declares its ``Layer`` and decorates its layouts (see
``formulas/registry.py``); nothing else lists them, so a new layer is a new file here.
"""

import importlib
import pkgutil

for _module in pkgutil.iter_modules(__path__):
    importlib.import_module(f"{__name__}.{_module.name}")
