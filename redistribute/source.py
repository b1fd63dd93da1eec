"""Resolve a model source: ``timm:NAME``, ``torchvision:NAME``, ``path/to/file.py:factory``.

Example:
    >>> m = load_model("timm:test_resnet")
    >>> type(m).__name__
    'ResNet'
"""

from __future__ import annotations

import difflib
import importlib.util
import inspect
import logging
import os
import socket
import sys
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from torch import nn

from .errors import CheckpointError, SourceError
from .skeleton import skeleton

__all__ = ["PREFIXES", "check_pretrained", "class_label", "load_model", "pretrained_cache"]

#: Prefix of the module names that ``file.py:factory`` sources are imported under (unique per file path).
_USER_MODULE = "_redistribute_user_"


def class_label(cls: type) -> str:
    """``module.Class`` of a model class, or ``file.py:Class`` for one defined in a ``file.py:factory`` source
    (never the internal module name it was imported under)."""
    if cls.__module__.startswith(_USER_MODULE):
        file = getattr(sys.modules.get(cls.__module__), "__file__", None)
        return f"{Path(file).name if file else 'model file'}:{cls.__qualname__}"
    return f"{cls.__module__}.{cls.__qualname__}"


PREFIXES = ("timm", "torchvision")

_logger = logging.getLogger(__name__)


def _suggest(name: str, names: list[str]) -> str:
    close = difflib.get_close_matches(name, names, n=3, cutoff=0.6)
    return f"; did you mean {', '.join(close)}?" if close else ""


def _timm(name: str, kwargs: dict[str, Any], pretrained: bool = False, meta: bool = False) -> nn.Module:
    import timm

    if not timm.is_model(name):
        raise SourceError(
            f"unknown timm model {name!r}{_suggest(name, timm.list_models())} (list them with timm.list_models())"
        )
    if not pretrained:
        return _call(f"timm:{name}", timm.create_model, name, pretrained=False, meta=meta, **kwargs)
    cached, _ = pretrained_cache(f"timm:{name}")
    if cached is not None:  # load the cached file itself: no request to the Hub, no retries when offline
        overlay = {**(kwargs.pop("pretrained_cfg_overlay", None) or {}), "file": cached}
        kwargs = {**kwargs, "pretrained_cfg_overlay": overlay}
    try:
        return _call(f"timm:{name}", timm.create_model, name, pretrained=True, **kwargs)
    except OSError as exc:  # hub/URL download failures and missing cache entries are all OSError subclasses
        raise CheckpointError(
            f"pretrained weights for timm:{name} {_timm_cache_hint(name)}: {exc}".splitlines()[0][:400]
        ) from exc


def _on_meta(label: str, factory: Any, *args: Any, **kwargs: Any) -> Any:
    """``factory(...)`` built as a skeleton (:mod:`redistribute.skeleton`), or ``None`` when it cannot be: the
    caller then builds it for real, which reports the factory's own errors. The fallback is logged."""
    try:
        with skeleton():
            return factory(*args, **kwargs)
    except (Exception, SystemExit) as exc:  # any failure on meta: the real build reports it properly
        _logger.info(
            "%s cannot be built on the meta device (%s: %s); building it for real", label, type(exc).__name__, exc
        )
        return None


def _call(label: str, factory: Any, *args: Any, meta: bool = False, **kwargs: Any) -> nn.Module:
    """Call a zoo factory; an argument it rejects (``num_classes="x"``, an unknown keyword) is a SourceError.

    With ``meta``, the model is built as a skeleton (:mod:`redistribute.skeleton`); a factory that cannot build
    one is called again for real, with a log line saying so.
    """
    model = _on_meta(label, factory, *args, **kwargs) if meta else None
    if model is not None:
        return model  # type: ignore[no-any-return]
    try:
        return factory(*args, **kwargs)  # type: ignore[no-any-return]
    except (TypeError, ValueError, KeyError, AssertionError, RuntimeError) as exc:
        shown = ", ".join(f"{k}={v!r}" for k, v in kwargs.items() if k not in ("pretrained", "weights"))
        raise SourceError(
            f"building {label}({shown}) failed: {type(exc).__name__}: {exc}".splitlines()[0][:400]
        ) from exc


def _timm_cache_hint(name: str) -> str:
    import timm

    cfg = timm.models.get_pretrained_cfg(name) or timm.models.get_pretrained_cfg(timm.models.get_arch_name(name))
    hub_id = getattr(cfg, "hf_hub_id", None) if cfg is not None else None
    try:
        from huggingface_hub.constants import HF_HUB_CACHE as cache
    except ImportError:  # pragma: no cover - huggingface_hub comes with timm
        cache = "~/.cache/huggingface/hub"
    where = f"(Hugging Face Hub {hub_id})" if hub_id else "(no Hub id)"
    return f"{where} are not in the cache {cache} and cannot be downloaded. Hint: download them once online or pass --checkpoint PATH"


def _hub_cache() -> str:
    from huggingface_hub import constants

    return str(constants.HF_HUB_CACHE)


def _timm_cache(name: str) -> tuple[str | None, str, str]:
    import timm

    cfg = timm.models.get_pretrained_cfg(name) or timm.models.get_pretrained_cfg(timm.models.get_arch_name(name))
    if cfg is None:
        return None, f"no pretrained weights are published for timm:{name}", ""
    if cfg.file:
        return (cfg.file if os.path.isfile(cfg.file) else None), cfg.file, ""
    if cfg.hf_hub_id:
        from huggingface_hub import constants, try_to_load_from_cache

        repo = cfg.hf_hub_id.split("@")[0]
        names = [cfg.hf_hub_filename] if cfg.hf_hub_filename else ["model.safetensors", "pytorch_model.bin"]
        for filename in names:
            found = try_to_load_from_cache(repo, filename, cache_dir=_hub_cache())
            if isinstance(found, str):
                return found, found, ""
        entry = os.path.join(_hub_cache(), "models--" + repo.replace("/", "--"))
        return None, entry, urlparse(constants.ENDPOINT).hostname or "huggingface.co"
    if cfg.url:
        import torch.hub

        path = os.path.join(torch.hub.get_dir(), "checkpoints", os.path.basename(urlparse(cfg.url).path))
        return (path if os.path.isfile(path) else None), path, urlparse(cfg.url).hostname or ""
    return None, f"no pretrained weights are published for timm:{name}", ""


def _torchvision_cache(name: str) -> tuple[str | None, str, str]:
    import torch.hub
    from torchvision import models

    try:
        url = models.get_model_weights(name).DEFAULT.url
    except (ValueError, AttributeError):
        return None, f"no pretrained weights are published for torchvision:{name}", ""
    path = os.path.join(torch.hub.get_dir(), "checkpoints", os.path.basename(urlparse(url).path))
    return (path if os.path.isfile(path) else None), path, urlparse(url).hostname or ""


def pretrained_cache(source: str) -> tuple[str | None, str]:
    """Where the zoo keeps ``source``'s pretrained weights, without touching the network.

    Follows timm's own resolution (``pretrained_cfg``: ``file``, then the Hugging Face Hub id, then the URL in
    torch.hub's cache) and torchvision's (torch.hub's ``checkpoints`` folder).

    Returns:
        ``(path, entry)``: the cached file (``None`` when not cached) and the cache entry a download would fill.

    Raises:
        SourceError: ``source`` is not a ``timm:`` or ``torchvision:`` model.
    """
    path, entry, _ = _zoo_cache(source)
    return path, entry


def _zoo_cache(source: str, option: str = "--checkpoint") -> tuple[str | None, str, str]:
    """``(path, entry, host)`` of a ``timm:``/``torchvision:`` source's pretrained weights (see the callers)."""
    prefix, _, name = source.partition(":")
    if prefix == "timm":
        return _timm_cache(name)
    if prefix == "torchvision":
        return _torchvision_cache(name)
    raise SourceError(
        f"pretrained weights need a timm: or torchvision: source, not {source!r}. Hint: use {option} PATH"
    )


def _offline() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "").upper() in ("1", "ON", "YES", "TRUE")


def _reachable(host: str, timeout: float = 1.0) -> bool:
    try:
        socket.create_connection((host, 443), timeout=timeout).close()
    except OSError:
        return False
    return True


def check_pretrained(source: str, option: str = "--checkpoint") -> None:
    """Fail fast, before any model is built, when ``source``'s pretrained weights can be neither read nor fetched.

    Cached weights pass without a request. Otherwise, with ``HF_HUB_OFFLINE=1`` or when the download host does not
    answer within a second, one line names the cache entry a download would fill (no retries).

    Args:
        source: ``timm:NAME`` or ``torchvision:NAME``.
        option: The option that gives weights instead, named in the hint (``--teacher-checkpoint`` for a teacher).

    Raises:
        SourceError: ``source`` is unknown or not a zoo model.
        CheckpointError: Not cached, and offline or the host is unreachable; or no weights are published.
    """
    prefix, _, name = source.partition(":")
    if prefix == "timm":
        import timm

        if not timm.is_model(name):
            raise SourceError(f"unknown timm model {name!r}{_suggest(name, timm.list_models())}")
    path, entry, host = _zoo_cache(source, option)
    if path is not None:
        return
    if not host:
        raise CheckpointError(f"{entry}. Hint: pass {option} PATH with trained weights")
    if _offline() or not _reachable(host):
        why = "HF_HUB_OFFLINE=1 is set" if _offline() else f"{host} cannot be reached"
        raise CheckpointError(
            f"pretrained weights for {source} are not in the cache ({entry}) and {why}. "
            f"Hint: download them once online (HF_HUB_OFFLINE=1 then reads the cache only) or pass {option} PATH"
        )


def _torchvision(name: str, kwargs: dict[str, Any], pretrained: bool = False, meta: bool = False) -> nn.Module:
    from torchvision import models

    names = models.list_models()
    if name not in names:
        raise SourceError(f"unknown torchvision model {name!r}{_suggest(name, names)}")
    if not pretrained:
        if "weights_backbone" in inspect.signature(models.get_model_builder(name)).parameters:
            kwargs = {"weights_backbone": None, **kwargs}  # segmentation/detection: no backbone download either
        return _call(f"torchvision:{name}", models.get_model, name, weights=None, meta=meta, **kwargs)
    try:
        return _call(f"torchvision:{name}", models.get_model, name, weights="DEFAULT", **kwargs)
    except OSError as exc:  # URLError is an OSError
        import torch.hub

        raise CheckpointError(
            f"pretrained weights for torchvision:{name} are not in the cache {torch.hub.get_dir()}/checkpoints and cannot "
            f"be downloaded ({exc}). Hint: download them once online or pass --checkpoint PATH".splitlines()[0]
        ) from exc


def _file(path_text: str, factory: str, kwargs: dict[str, Any], meta: bool = False) -> nn.Module:
    path = Path(path_text)
    if path.is_dir():
        raise SourceError(
            f"model file {path_text!r} is a folder, not a Python file. Hint: give path/to/file.py:factory"
        )
    if not path.is_file():
        raise SourceError(f"model file {path_text!r} does not exist. Hint: give path/to/file.py:factory")
    if not factory:
        raise SourceError(f"{path_text!r} names no factory. Hint: give path/to/file.py:factory, e.g. {path_text}:make")
    mod_name = f"{_USER_MODULE}{abs(hash(str(path.resolve())))}"
    spec = importlib.util.spec_from_file_location(mod_name, path)
    if spec is None or spec.loader is None:
        raise SourceError(f"cannot import {path_text!r} as Python. Hint: give a .py file")
    module = importlib.util.module_from_spec(spec)
    sys.modules[mod_name] = module
    try:
        spec.loader.exec_module(module)
    except (Exception, SystemExit) as exc:  # the user's file: report, don't crash (Ctrl-C goes on)
        sys.modules.pop(mod_name, None)
        raise SourceError(f"importing {path_text!r} failed: {type(exc).__name__}: {exc}".splitlines()[0]) from exc
    fn = getattr(module, factory, None)
    if not callable(fn):
        found = [n for n, v in vars(module).items() if callable(v) and not n.startswith("_")]
        raise SourceError(f"{path_text!r} has no callable {factory!r}{_suggest(factory, found)}")
    model = _on_meta(f"{factory}() from {path_text}", fn, **kwargs) if meta else None
    try:
        model = model if model is not None else fn(**kwargs)
    except (Exception, SystemExit) as exc:
        raise SourceError(
            f"calling {factory}() from {path_text!r} failed: {type(exc).__name__}: {exc}".splitlines()[0]
        ) from exc
    if not isinstance(model, nn.Module):
        raise SourceError(f"{factory}() in {path_text!r} returned {type(model).__name__}, not an nn.Module")
    return model


def load_model(source: str, pretrained: bool = False, *, meta: bool = False, **kwargs: Any) -> nn.Module:
    """Build a model from a source string, with random weights or the zoo's pretrained ones.

    Args:
        source: ``timm:NAME``, ``torchvision:NAME`` or ``path/to/file.py:factory``.
        pretrained: Load the zoo's pretrained weights through its normal path (timm: the Hugging Face Hub cache;
            torchvision: ``torch.hub``'s cache). Not available for ``file.py:factory`` sources.
        meta: Build a skeleton for planning: tensors over :data:`redistribute.skeleton.SMALL` elements on the
            meta device, so the cost does not grow with the parameter count. Ignored with ``pretrained``; a
            factory that cannot build on meta is called for real (logged).
        **kwargs: Passed to the factory (e.g. ``num_classes``).

    Raises:
        SourceError: Unknown prefix or name (with close names), or a file/factory that fails.
        CheckpointError: ``pretrained`` weights are neither cached nor downloadable (offline).
    """
    if not isinstance(source, str) or ":" not in source:
        raise SourceError(
            f"model source {source!r} has no prefix. Hint: write timm:NAME, torchvision:NAME or path/to/file.py:factory"
        )
    prefix, _, name = source.partition(":")
    meta = meta and not pretrained
    if prefix == "timm":
        return _timm(name, kwargs, pretrained, meta)
    if prefix == "torchvision":
        return _torchvision(name, kwargs, pretrained, meta)
    if pretrained:
        raise SourceError(
            f"--pretrained needs a timm: or torchvision: source, not {source!r}. Hint: use --checkpoint PATH"
        )
    path, _, factory = source.rpartition(":")
    if path.endswith(".py"):
        return _file(path, factory, kwargs, meta)
    raise SourceError(
        f"unknown model source prefix {prefix!r}; use timm:NAME, torchvision:NAME or path/to/file.py:factory"
    )
