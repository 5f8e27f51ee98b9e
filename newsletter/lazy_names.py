"""Packages whose public names are imported on first use (PEP 562 module __getattr__).

The composer and the importer export names from heavy parts (MJML and premailer; the
subscriber importer) that most commands never touch; importing the package must stay
cheap, so each name's module is imported when the name is first read.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable
from collections.abc import Collection
from collections.abc import Mapping
from typing import Any


def lazy_getattr(
    package: str, homes: Mapping[str, str], parts: Collection[str] = ()
) -> Callable[[str], Any]:
    """Return a module __getattr__ for `package`: a name in `homes` is imported from its
    module on first use (then kept in the package), a name in `parts` is that submodule."""

    def __getattr__(name: str) -> Any:
        if name in parts:
            return importlib.import_module(f"{package}.{name}")
        try:
            module = homes[name]
        except KeyError:
            raise AttributeError(f"module {package!r} has no attribute {name!r}") from None
        value = getattr(importlib.import_module(module), name)
        setattr(sys.modules[package], name, value)
        return value

    return __getattr__
