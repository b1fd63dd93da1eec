"""Filter-distribution templates: the shape of width over depth.

A template is a function ``T(p, r)`` of the depth position ``p`` in [0, 1] and the range ``r`` of the base model
(its widest stage over its narrowest). The built-ins are the templates of Izquierdo-Cordova and Mayol-Cuevas:

======  ==========  ==============================================
name    alias       T(p)
======  ==========  ==============================================
base    --          the base model's own stage trend
a       increasing  ``1/r + (1 - 1/r) p``
b       uniform     ``1``
c       decreasing  ``1 - (1 - 1/r) p``
d       peak        ``1/r + (1 - 1/r) (1 - |2p - 1|)``
e       valley      ``1 - (1 - 1/r) (1 - |2p - 1|)``
======  ==========  ==============================================

Custom templates are control points (``"0:1,0.5:4,1:1"``, piecewise linear in p), a Python callable ``p -> float``,
or a function registered with :func:`register_template` (other packages: the entry-point group
``redistribute.templates``).

Example:
    >>> t = get_template("peak")
    >>> t.name, round(t(0.5, 8.0), 3), round(t(0.0, 8.0), 3)
    ('d', 1.0, 0.125)
"""

from __future__ import annotations

import itertools
import logging
import math
from collections.abc import Callable
from dataclasses import dataclass
from importlib import metadata

from ..errors import TemplateError

__all__ = ["TEMPLATES", "Template", "get_template", "list_templates", "register_template"]

_logger = logging.getLogger(__name__)

ShapeFn = Callable[[float, float], float]


@dataclass(frozen=True)
class Template:
    """A named width-over-depth shape.

    Attributes:
        name: Canonical name (``a``..``e``, ``base`` or the custom spec string).
        alias: Descriptive alias (``peak``), or ``""``.
        description: The formula, for listings.
        fn: ``T(p, r)``; ``None`` for ``base`` (the base trend itself).
    """

    name: str
    alias: str
    description: str
    fn: ShapeFn | None

    @property
    def is_base(self) -> bool:
        return self.fn is None

    def __call__(self, p: float, r: float) -> float:
        """``T(p, r)``, checked: a custom shape that raises or gives a non-positive value is a TemplateError."""
        if self.fn is None:
            raise TemplateError("template 'base' has no shape of its own: it is the base model's trend")
        try:
            value = float(self.fn(p, r))
        except TemplateError:
            raise
        except Exception as exc:  # a user's callable: report it as a template problem
            raise TemplateError(
                f"template {self.name!r} failed at p={p:.3g}: {type(exc).__name__}: {exc}".splitlines()[0]
            ) from exc
        if not (math.isfinite(value) and value > 0):
            raise TemplateError(
                f"template {self.name!r} gives {value!r} at p={p:.3g}; a template must give a positive finite width "
                "factor at every p in [0, 1]"
            )
        return value


TEMPLATES: dict[str, Template] = {}
_ALIASES: dict[str, str] = {}


def register_template(name: str, alias: str = "", description: str = "") -> Callable[[ShapeFn], ShapeFn]:
    """Register ``fn(p, r) -> float`` as a template under ``name`` (and ``alias``).

    Example:
        >>> @register_template("steps", description="two steps")
        ... def _steps(p, r):
        ...     return 1.0 if p > 0.5 else 1.0 / r
        >>> get_template("steps")(0.9, 8.0)
        1.0
    """

    def deco(fn: ShapeFn) -> ShapeFn:
        TEMPLATES[name] = Template(name, alias, description or (fn.__doc__ or "").strip(), fn)
        if alias:
            _ALIASES[alias] = name
        return fn

    return deco


TEMPLATES["base"] = Template("base", "", "the base model's own stage trend (k = 1 is the model itself)", None)
register_template("a", "increasing", "1/r + (1 - 1/r)·p")(lambda p, r: 1 / r + (1 - 1 / r) * p)
register_template("b", "uniform", "1")(lambda p, r: 1.0)
register_template("c", "decreasing", "1 - (1 - 1/r)·p")(lambda p, r: 1 - (1 - 1 / r) * p)
register_template("d", "peak", "1/r + (1 - 1/r)·(1 - |2p - 1|)")(
    lambda p, r: 1 / r + (1 - 1 / r) * (1 - abs(2 * p - 1))
)
register_template("e", "valley", "1 - (1 - 1/r)·(1 - |2p - 1|)")(lambda p, r: 1 - (1 - 1 / r) * (1 - abs(2 * p - 1)))

_ENTRY_POINTS_LOADED = False


def _load_entry_points() -> None:
    global _ENTRY_POINTS_LOADED
    if _ENTRY_POINTS_LOADED:
        return
    _ENTRY_POINTS_LOADED = True
    for ep in metadata.entry_points(group="redistribute.templates"):
        try:
            fn = ep.load()
        except Exception as exc:  # a broken plugin must not break the built-ins
            _logger.warning("template plugin %r failed to load: %s", ep.name, exc)
            continue
        if ep.name not in TEMPLATES:
            TEMPLATES[ep.name] = Template(ep.name, "", f"from {ep.value}", _of_position(fn))


def _of_position(fn: Callable[[float], float]) -> ShapeFn:
    """A shape ``T(p, r)`` from a function of the position alone."""
    return lambda p, r: float(fn(p))


def list_templates() -> list[Template]:
    """All registered templates, built-ins first."""
    _load_entry_points()
    return list(TEMPLATES.values())


def _valid_names() -> str:
    return ", ".join(sorted(TEMPLATES) + sorted(_ALIASES))


def _control_points(spec: str) -> Template:
    names = f"(or a template name: {_valid_names()})"
    points: list[tuple[float, float]] = []
    for item in spec.split(","):
        try:
            p_str, v_str = item.split(":")
            p, v = float(p_str), float(v_str)
        except ValueError:
            raise TemplateError(
                f"control point {item.strip()!r} in template {spec!r} is not 'position:value'. "
                f"Hint: write e.g. --template '0:1,0.5:4,1:1' {names}"
            ) from None
        if not (0.0 <= p <= 1.0) or not math.isfinite(v) or v <= 0:
            raise TemplateError(
                f"control point {item.strip()!r} in template {spec!r} is out of range: positions go from 0 to 1, "
                f"values must be positive {names}"
            )
        points.append((p, v))
    points.sort()
    if len(points) < 2 or points[0][0] > 0.0 or points[-1][0] < 1.0:
        raise TemplateError(
            f"template {spec!r} must have control points at positions 0 and 1, e.g. '0:1,0.5:4,1:1' {names}"
        )
    top = max(v for _, v in points)

    def fn(p: float, r: float) -> float:
        for (p0, v0), (p1, v1) in itertools.pairwise(points):
            if p <= p1:
                t = 0.0 if p1 == p0 else (p - p0) / (p1 - p0)
                return (v0 + t * (v1 - v0)) / top
        return points[-1][1] / top

    return Template(spec, "", "control points " + spec, fn)


def get_template(template: str | Callable[[float], float] | Template) -> Template:
    """Resolve a template name, alias, control-point string, callable ``p -> float`` or :class:`Template`.

    Raises:
        TemplateError: Unknown name or malformed control points; the message lists the valid names.
    """
    if isinstance(template, Template):
        return template
    if callable(template):
        return Template(getattr(template, "__name__", "custom"), "", "custom callable", _of_position(template))
    if not isinstance(template, str) or not template.strip():
        raise TemplateError(f"template {template!r} is not a name. Hint: run 'redistribute templates'")
    key = template.strip()
    if ":" in key:
        return _control_points(key)
    _load_entry_points()
    key = _ALIASES.get(key.lower(), key.lower() if key.lower() in TEMPLATES else key)
    if key in TEMPLATES:
        return TEMPLATES[key]
    raise TemplateError(
        f"unknown template {template!r}; valid: {_valid_names()}, or control points like '0:1,0.5:4,1:1'"
    )
