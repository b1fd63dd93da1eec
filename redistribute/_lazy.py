"""Lazy re-exports for package ``__init__`` files (PEP 562): a name's module is imported on first access.

``import redistribute`` then costs no torch import, so ``redistribute --help``, ``--version`` and ``templates`` start
at once; every public name still resolves as a normal attribute (``redistribute.trace``) and through
``from redistribute import trace``.

Example:
    >>> __getattr__, __dir__ = lazy_exports("redistribute", {"load_model": ".source"})  # in an __init__.py
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable, Mapping
from typing import Any

__all__ = ["lazy_exports"]


def lazy_exports(package: str, exports: Mapping[str, str]) -> tuple[Callable[[str], Any], Callable[[], list[str]]]:
    """Module ``__getattr__`` and ``__dir__`` for ``package`` that import ``exports[name]`` on first access.

    Args:
        package: The package's ``__name__``.
        exports: Public name -> module path relative to ``package`` (e.g. ``".planning.planner"``).

    Returns:
        ``(__getattr__, __dir__)`` to assign in the package's ``__init__``. A resolved name is cached in the
        package's namespace, so each module is imported once.

    Raises:
        AttributeError: (from ``__getattr__``) for a name that is not exported, as for any module.
    """

    def __getattr__(name: str) -> Any:
        try:
            where = exports[name]
        except KeyError:
            raise AttributeError(f"module {package!r} has no attribute {name!r}") from None
        value = getattr(importlib.import_module(where, package), name)
        setattr(sys.modules[package], name, value)
        return value

    def __dir__() -> list[str]:
        return sorted(set(vars(sys.modules[package])) | set(exports))

    return __getattr__, __dir__
