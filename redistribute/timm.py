"""timm plugin: build redistributed models with ``timm.create_model``.

Importing this module registers one generic timm entrypoint, ``redistributed``, that rebuilds the model a spec
describes (and loads the weights saved beside it when ``pretrained=True``)::

    import timm
    import redistribute.timm  # registers "redistributed"

    model = timm.create_model("redistributed", spec="out/spec.json", pretrained=True, num_classes=10)

An ``--out`` folder that also holds the timm files written by :func:`save_timm_files` (``config.json`` with the
spec embedded in its ``model_args``, and ``model.safetensors``) loads through timm's own local-folder source,
``timm.create_model("local-dir:out", pretrained=True)``, and so does timm's ``train.py``::

    python train.py DATA --device-modules redistribute.timm --model local-dir:out --pretrained --num-classes 10

:func:`register` gives a saved redistribution its own timm name.

timm's ``validate.py``, ``benchmark.py`` and ``inference.py`` have no ``--device-modules`` flag: run them (and
``train.py``) unchanged through this module, which registers the plugin first::

    python -m redistribute.timm validate.py DATA --model local-dir:out --pretrained
"""

from __future__ import annotations

if __name__ == "__main__":  # python -m redistribute.timm SCRIPT.py ...: import the real module (registering the
    import sys  # plugin once, under its own name) and run the script; this copy of the module stops here

    from redistribute.timm import run_script

    sys.exit(run_script(sys.argv[1:]))

import json
import os
import re
from collections.abc import Mapping
from functools import partial
from pathlib import Path
from typing import Any

import torch
from timm.models import build_model_with_cfg, generate_default_cfgs, register_model
from timm.models import is_model as _timm_is_model
from torch import nn

from .errors import CheckpointError, UsageError
from .source import load_model
from .spec import load as _load_spec
from .spec import read_spec, validate_spec

__all__ = ["ARCHITECTURE", "redistributed", "register", "run_script", "save_timm_files", "spec_num_classes",
           "timm_config", "write_timm_files"]  # fmt: skip

ARCHITECTURE = "redistributed"
"""The timm name of the generic entrypoint (and the ``architecture`` written to ``config.json``)."""

_WEIGHT_FILES = ("weights.safetensors", "model.safetensors")
# timm's training kwargs that a non-timm factory (torchvision, file.py) does not take; dropped at their no-op value.
_NEUTRAL = {"in_chans": 3, "drop_rate": 0.0, "drop_path_rate": None, "drop_block_rate": None, "global_pool": None,
            "bn_momentum": None, "bn_eps": None}  # fmt: skip
_DATA_KEYS = ("interpolation", "crop_pct", "crop_mode", "mean", "std", "first_conv", "classifier", "fixed_input_size")
_registered: set[str] = set()

default_cfgs = generate_default_cfgs({ARCHITECTURE: {"num_classes": 1000, "first_conv": None, "classifier": None}})


def _final_layer(model: nn.Module) -> tuple[str | None, int | None]:
    """Name and output width of the classifier: the last Linear (or, without one, the last conv)."""
    last: tuple[str | None, int | None] = (None, None)
    for name, m in model.named_modules():
        if isinstance(m, nn.Linear):
            last = (name, m.out_features)
    if last[0] is None:
        for name, m in model.named_modules():
            if isinstance(m, nn.Conv2d):
                last = (name, m.out_channels)
    return last


def _first_conv(model: nn.Module) -> str | None:
    return next((name for name, m in model.named_modules() if isinstance(m, nn.Conv2d)), None)


def _num_classes(model: nn.Module) -> int | None:
    n = getattr(model, "num_classes", None)
    return int(n) if isinstance(n, int) else _final_layer(model)[1]


def _base_model(spec: Mapping[str, Any], kwargs: dict[str, Any]) -> nn.Module:
    """The spec's base model built with timm's factory ``kwargs`` (a non-timm source gets the ones it can take)."""
    source = str(spec.get("source") or "")
    own = dict(spec.get("model_kwargs") or {})
    if source.startswith("timm:"):
        return load_model(source, **{**own, **kwargs})
    portable = {k: v for k, v in kwargs.items() if not (k in _NEUTRAL and v == _NEUTRAL[k])}
    classes = portable.pop("num_classes", None)
    base = load_model(source, **{**own, **portable})
    if classes is not None and classes != _num_classes(base):
        base = load_model(source, **{**own, **portable, "num_classes": classes})
    return base


def _build(spec: Mapping[str, Any], device: Any = None, dtype: Any = None, **kwargs: Any) -> nn.Module:
    """Model class stand-in for ``build_model_with_cfg``: the base model rebuilt at the spec's widths."""
    model = _load_spec(dict(spec), model=_base_model(spec, kwargs))
    if device is not None or dtype is not None:
        model.to(device=device, dtype=dtype)
    return model


def _resolve_spec(spec: str | os.PathLike[str] | Mapping[str, Any] | None) -> tuple[dict[str, Any], Path | None]:
    """The spec as a dict, and the folder it was read from (where its weights are), if any."""
    if spec is None:
        raise UsageError(
            f"timm model {ARCHITECTURE!r} needs a spec: timm.create_model({ARCHITECTURE!r}, spec='out/spec.json') "
            "or timm.create_model('local-dir:out')"
        )
    if isinstance(spec, Mapping):
        data = dict(spec)
        validate_spec(data)
        return data, None
    path = Path(spec)
    return read_spec(path), path if path.is_dir() else path.parent


def _weights_in(folder: Path | None) -> Path | None:
    if folder is None:
        return None
    return next((folder / n for n in _WEIGHT_FILES if (folder / n).is_file()), None)


def _pretrained_cfg(
    spec: Mapping[str, Any], num_classes: int | None = None, file: Path | None = None
) -> dict[str, Any]:
    """A timm ``pretrained_cfg`` for the redistributed model: the base's data settings at the spec's input size."""
    source = str(spec.get("source") or "")
    cfg: dict[str, Any] = {}
    if source.startswith("timm:"):
        from timm.models import get_pretrained_cfg

        base = get_pretrained_cfg(source.partition(":")[2])
        if base is not None:
            cfg = {k: v for k, v in base.to_dict().items() if k in (*_DATA_KEYS, "num_classes")}
    own = dict(spec.get("model_kwargs") or {})
    classes = own.get("num_classes", cfg.get("num_classes"))
    if "classifier" not in cfg or classes is None:
        probe = load_model(source, **own)
        cfg.setdefault("classifier", _final_layer(probe)[0])
        cfg.setdefault("first_conv", _first_conv(probe))
        classes = _num_classes(probe) if classes is None else classes
    size = list(spec.get("input_size") or (3, 224, 224))
    cfg.update(architecture=ARCHITECTURE, input_size=(int(own.get("in_chans", size[0])), *size[1:]))
    classes = num_classes if num_classes is not None else classes
    cfg["num_classes"] = int(classes) if classes is not None else -1  # -1: timm passes no num_classes
    if file is not None:
        cfg["file"] = str(file)
    return cfg


def _create(variant: str, spec: Any, pretrained: bool, pretrained_cfg: Any, **kwargs: Any) -> nn.Module:
    data, folder = _resolve_spec(spec)
    local = isinstance(pretrained_cfg, Mapping) and pretrained_cfg.get("source") == "local-dir"
    if not local:
        weights = _weights_in(folder)
        if pretrained and weights is None and not (kwargs.get("pretrained_cfg_overlay") or {}).get("file"):
            where = f"in {str(folder)!r}" if folder is not None else "for a spec given as a dict"
            raise CheckpointError(
                f"no weights {where} (looked for {', '.join(_WEIGHT_FILES)}). Hint: use pretrained=False, or save "
                "them with `redistribute MODEL --out DIR`"
            )
        pretrained_cfg = _pretrained_cfg(data, file=weights)
    return build_model_with_cfg(
        partial(_build, data), variant, pretrained, pretrained_cfg=dict(pretrained_cfg), **kwargs
    )  # type: ignore[no-any-return]


@register_model
def redistributed(
    pretrained: bool = False,
    spec: str | os.PathLike[str] | Mapping[str, Any] | None = None,
    pretrained_cfg: Any = None,
    **kwargs: Any,
) -> nn.Module:
    """timm entrypoint: the redistributed model a spec describes.

    Args:
        pretrained: Load the weights saved beside the spec (``weights.safetensors``, else ``model.safetensors``);
            the classifier is dropped when ``num_classes`` differs, as timm does for any pretrained model.
        spec: A spec dict, a ``spec.json`` path, or the ``--out`` folder holding it. ``local-dir:`` passes the
            spec embedded in ``config.json``.
        pretrained_cfg: Set by timm (``local-dir:`` passes the folder's config).
        **kwargs: timm factory arguments (``num_classes``, ``in_chans``, ``drop_rate``, ``device``, ...), passed to
            the base model's factory; a non-timm base gets the ones it can take.

    Example:
        >>> import timm, redistribute, redistribute.timm
        >>> p = redistribute.plan(timm.create_model("test_resnet"), "d", input_size=(3, 32, 32), source="timm:test_resnet")
        >>> m = timm.create_model("redistributed", spec=redistribute.spec_from_plan(p), num_classes=4)
        >>> m.num_classes, m.pretrained_cfg["input_size"]
        (4, (3, 32, 32))
    """
    return _create(ARCHITECTURE, spec, pretrained, pretrained_cfg, **kwargs)


def _default_name(folder: Path) -> str:
    stem = re.sub(r"\W+", "_", folder.resolve().name).strip("_") or "model"
    return f"{ARCHITECTURE}_{stem}"


def register(spec: str | os.PathLike[str], name: str | None = None) -> str:
    """Register a saved redistribution as a named timm model.

    Args:
        spec: The ``spec.json`` written by ``--out``, or the folder holding it. Its weights
            (``weights.safetensors``, else ``model.safetensors``) load when the model is created with
            ``pretrained=True``.
        name: The timm name (letters, digits, ``_``); default ``redistributed_<folder name>``. A name timm
            already has is refused unless this function registered it.

    Returns:
        The registered name.

    Raises:
        SpecError: The spec cannot be read.
        UsageError: The name is malformed or taken by a timm model.

    Example:
        >>> import timm
        >>> name = register("out/resnet50_d", name="resnet50_peak")  # doctest: +SKIP
        >>> model = timm.create_model("resnet50_peak", pretrained=True)  # doctest: +SKIP
    """
    path = Path(spec)
    data = read_spec(path)
    folder = path if path.is_dir() else path.parent
    name = name or _default_name(folder)
    if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", name):
        raise UsageError(f"timm model name {name!r} is invalid. Hint: use letters, digits and '_' (e.g. resnet50_peak)")
    if _timm_is_model(name) and name not in _registered:
        raise UsageError(
            f"timm already has a model named {name!r}. Hint: choose another name, e.g. {name}_redistributed"
        )
    spec_path = str((path / "spec.json" if path.is_dir() else path).resolve())
    weights = _weights_in(folder.resolve())
    default_cfgs.update(generate_default_cfgs({name: _pretrained_cfg(data, file=weights)}))

    def entrypoint(pretrained: bool = False, pretrained_cfg: Any = None, **kwargs: Any) -> nn.Module:
        return _create(name, kwargs.pop("spec", spec_path), pretrained, pretrained_cfg, **kwargs)

    entrypoint.__name__ = entrypoint.__qualname__ = name
    entrypoint.__module__ = __name__
    entrypoint.__doc__ = f"timm entrypoint registered by redistribute.timm.register for {spec_path}."
    globals()[name] = entrypoint
    _registered.add(name)
    import warnings

    with warnings.catch_warnings():  # re-registering our own name: timm warns about the overwrite
        warnings.simplefilter("ignore")
        register_model(entrypoint)
    return name


def spec_num_classes(spec: Mapping[str, Any]) -> int | None:
    """The class count of the model ``spec`` describes (its base's), or ``None`` when it has no classifier.

    A timm base answers from its ``pretrained_cfg`` without building anything; other bases are built once.
    """
    classes = _pretrained_cfg(spec)["num_classes"]
    return None if classes < 0 else int(classes)


def timm_config(spec: Mapping[str, Any], model: nn.Module) -> dict[str, Any]:
    """The timm ``config.json`` content for ``model`` built from ``spec`` (the spec is embedded in ``model_args``)."""
    validate_spec(spec)
    classes = _num_classes(model)
    cfg = _pretrained_cfg(spec, num_classes=classes)
    config: dict[str, Any] = {"architecture": ARCHITECTURE, "num_classes": cfg["num_classes"]}
    if isinstance(getattr(model, "num_features", None), int):
        config["num_features"] = model.num_features
    config["model_args"] = {"spec": dict(spec)}
    config["pretrained_cfg"] = cfg
    return config


def write_timm_files(
    config_path: str | os.PathLike[str], weights_path: str | os.PathLike[str], spec: Mapping[str, Any], model: nn.Module
) -> None:
    """Write timm's ``config.json`` and ``model.safetensors`` content to the given paths, *not* atomically.

    For callers that write them inside their own :func:`redistribute.io.atomic_paths` group.
    """
    from .surgery.weights import write_weights

    text = json.dumps(timm_config(spec, model), indent=2, sort_keys=True) + "\n"
    Path(config_path).write_text(text, encoding="utf-8")
    with torch.no_grad():
        write_weights(model, weights_path)


def save_timm_files(
    out_dir: str | os.PathLike[str],
    spec: Mapping[str, Any],
    model: nn.Module,
    same_weights: str | os.PathLike[str] | None = None,
) -> tuple[Path, Path]:
    """Write timm's ``config.json`` and ``model.safetensors`` for ``model`` into ``out_dir``, as one atomic step.

    The folder then loads with ``timm.create_model("local-dir:OUT_DIR", pretrained=True)`` once this module is
    imported (``--device-modules redistribute.timm`` in timm's ``train.py``). Both files are written in full before
    either replaces an older one (see :mod:`redistribute.io`).

    Args:
        out_dir: An existing folder (the ``--out`` folder).
        spec: The spec ``model`` was built from (:func:`redistribute.spec_from_plan`); it is embedded in the config.
        model: The redistributed model whose weights to save (contiguous tensors, e.g. on the CPU).
        same_weights: A safetensors file already holding exactly ``model``'s weights (the ``weights.safetensors``
            :func:`~redistribute.spec.save_result` wrote): ``model.safetensors`` becomes a hard link to it, one file
            on disk under two names (a copy where the file system has no hard links).

    Returns:
        The paths of ``config.json`` and ``model.safetensors``.

    Raises:
        OutputError: The folder cannot be written (nothing is replaced).

    Example:
        >>> save_timm_files("out", spec, new_model)  # doctest: +SKIP
        (PosixPath('out/config.json'), PosixPath('out/model.safetensors'))
    """
    from .io import atomic_paths

    out = Path(out_dir)
    paths = (out / "config.json", out / "model.safetensors")
    with atomic_paths(paths) as (config_tmp, weights_tmp):
        if same_weights is None:
            write_timm_files(config_tmp, weights_tmp, spec, model)
        else:
            config_tmp.write_text(json.dumps(timm_config(spec, model), indent=2, sort_keys=True) + "\n", "utf-8")
            _link_or_copy(Path(same_weights), weights_tmp)
    return paths


def _link_or_copy(source: Path, target: Path) -> None:
    """Make ``target`` (an empty temporary file) the same file as ``source``: a hard link, else a copy."""
    import shutil

    target.unlink()
    try:
        os.link(source, target)
    except OSError:  # no hard links here (another device, FAT, some network file systems)
        shutil.copyfile(source, target)


def run_script(argv: list[str]) -> int:
    """Run a Python script (timm's ``train.py``, ``validate.py``, ...) as ``__main__`` with this plugin registered.

    ``argv`` is the script's path and its arguments, as they follow ``python -m redistribute.timm``; the script sees
    them as ``sys.argv`` and its own folder first on ``sys.path``, as under ``python SCRIPT.py``.

    Returns:
        The exit status: 0, the script's own ``sys.exit`` code, or 2 when no script is given or it does not exist.
    """
    import runpy
    import sys

    if not argv or not argv[0].endswith(".py"):
        print("usage: python -m redistribute.timm SCRIPT.py [ARGS...] (e.g. timm's validate.py)", file=sys.stderr)
        return 2
    script = Path(argv[0])
    if not script.is_file():
        print(f"error: script {argv[0]!r} does not exist. Hint: give the path of timm's train.py, validate.py, "
              "benchmark.py or inference.py", file=sys.stderr)  # fmt: skip
        return 2
    saved_argv, saved_path = sys.argv, list(sys.path)
    sys.argv, sys.path[0:0] = [str(script), *argv[1:]], [str(script.resolve().parent)]
    try:
        runpy.run_path(str(script), run_name="__main__")
    except SystemExit as exc:  # the script's sys.exit(code); a message is printed as Python would
        if exc.code is not None and not isinstance(exc.code, int):
            print(exc.code, file=sys.stderr)
        return exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    finally:
        sys.argv, sys.path[:] = saved_argv, saved_path
    return 0
