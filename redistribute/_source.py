"""Resolve a model source: ``timm:NAME``, ``torchvision:NAME``, ``path/to/file.py:factory``.

Example:
    >>> m = load_model("timm:test_resnet")
    >>> type(m).__name__
    'ResNet'
"""

from __future__ import annotations

import difflib
import importlib.util
import sys
from pathlib import Path
from typing import Any

from torch import nn

from ._errors import SourceError

__all__ = ["load_model", "PREFIXES"]

PREFIXES = ("timm", "torchvision")


def _suggest(name: str, names: list[str]) -> str:
    close = difflib.get_close_matches(name, names, n=3, cutoff=0.6)
    return f"; did you mean {', '.join(close)}?" if close else ""


def _timm(name: str, kwargs: dict[str, Any]) -> nn.Module:
    import timm

    if not timm.is_model(name):
        raise SourceError(f"unknown timm model {name!r}{_suggest(name, timm.list_models())} (list them with timm.list_models())")
    return timm.create_model(name, pretrained=False, **kwargs)


def _torchvision(name: str, kwargs: dict[str, Any]) -> nn.Module:
    from torchvision import models

    names = models.list_models()
    if name not in names:
        raise SourceError(f"unknown torchvision model {name!r}{_suggest(name, names)}")
    return models.get_model(name, weights=None, **kwargs)


def _file(path_text: str, factory: str, kwargs: dict[str, Any]) -> nn.Module:
    path = Path(path_text)
    if not path.is_file():
        raise SourceError(f"model file {path_text!r} does not exist. Hint: give path/to/file.py:factory")
    mod_name = f"_redistribute_user_{abs(hash(str(path.resolve())))}"
    spec = importlib.util.spec_from_file_location(mod_name, path)
    if spec is None or spec.loader is None:
        raise SourceError(f"cannot import {path_text!r} as Python. Hint: give a .py file")
    module = importlib.util.module_from_spec(spec)
    sys.modules[mod_name] = module
    try:
        spec.loader.exec_module(module)
    except Exception as exc:  # the user's file: report, don't crash
        raise SourceError(f"importing {path_text!r} failed: {type(exc).__name__}: {exc}".splitlines()[0]) from exc
    fn = getattr(module, factory, None)
    if not callable(fn):
        found = [n for n, v in vars(module).items() if callable(v) and not n.startswith("_")]
        raise SourceError(f"{path_text!r} has no callable {factory!r}{_suggest(factory, found)}")
    try:
        model = fn(**kwargs)
    except Exception as exc:
        raise SourceError(f"calling {factory}() from {path_text!r} failed: {type(exc).__name__}: {exc}".splitlines()[0]) from exc
    if not isinstance(model, nn.Module):
        raise SourceError(f"{factory}() in {path_text!r} returned {type(model).__name__}, not an nn.Module")
    return model


def load_model(source: str, **kwargs: Any) -> nn.Module:
    """Build a model (random weights) from a source string.

    Args:
        source: ``timm:NAME``, ``torchvision:NAME`` or ``path/to/file.py:factory``.
        **kwargs: Passed to the factory (e.g. ``num_classes``).

    Raises:
        SourceError: Unknown prefix or name (with close names), or a file/factory that fails.
    """
    if not isinstance(source, str) or ":" not in source:
        raise SourceError(
            f"model source {source!r} has no prefix. Hint: write timm:NAME, torchvision:NAME or path/to/file.py:factory"
        )
    prefix, _, name = source.partition(":")
    if prefix == "timm":
        return _timm(name, kwargs)
    if prefix == "torchvision":
        return _torchvision(name, kwargs)
    path, _, factory = source.rpartition(":")
    if path.endswith(".py"):
        return _file(path, factory, kwargs)
    raise SourceError(f"unknown model source prefix {prefix!r}; use timm:NAME, torchvision:NAME or path/to/file.py:factory")
