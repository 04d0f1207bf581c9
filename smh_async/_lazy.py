"""Public names imported from their home modules on first use (PEP 562), for ``smh_async``
and ``smh_async.testing``: importing either, or the pytest plugin, stays cheap."""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from typing import Any

__all__ = ["lazy_names"]


def lazy_names(
    namespace: dict[str, Any], home_of: Mapping[str, str]
) -> tuple[Callable[[str], object], Callable[[], list[str]]]:
    """A package's module ``__getattr__`` and ``__dir__``; ``namespace`` is its
    ``globals()``, ``home_of`` maps each public name to the module that defines it."""
    package = namespace["__name__"]

    def __getattr__(name: str) -> object:
        """Import a public name from its module on first use (then it is a plain attribute)."""
        module = home_of.get(name)
        if module is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        try:
            home = importlib.import_module(module)
        except AttributeError as exc:
            # `from ... import name` would report it as "cannot import name", hiding what
            # failed inside the import (e.g. a dependency too old for an attribute we use).
            raise ImportError(f"cannot import {name!r} from {module!r}: {exc}") from exc
        value = getattr(home, name)
        namespace[name] = value
        return value

    def __dir__() -> list[str]:
        """The public names as well as what is already loaded."""
        return sorted({*namespace, *namespace.get("__all__", ())})

    return __getattr__, __dir__
