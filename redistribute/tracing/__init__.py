"""Stage 1, trace: a model in, a shape-annotated ``torch.fx`` graph out.

Takes an ``nn.Module`` (never modified: the tracer works on a meta-device copy built from hooked subclasses,
see :mod:`~redistribute.tracing.hooked`) and an input size; hands on a
:class:`~redistribute.tracing.tracer.TracedModel`: the graph with every node's meta value (``node.meta["val"]``),
the module index (names, aliases, parameter counts) and the modules kept as black boxes with their reasons.
Nothing here knows about channels; :mod:`redistribute.groups` reads the graph.

Modules: ``tracer`` (the fx tracer and meta propagation), ``hooked`` (tracing without patching ``nn.Module``),
``clone`` (meta copies), ``known`` (constant tensors keep their values), ``index`` (one walk over the module tree), ``shape_rules`` (meta values that torch
cannot compute on meta), ``input_size`` (parsing ``--input-size``), ``gcpause`` (GC paused while building graphs).
"""

from __future__ import annotations

from .._lazy import lazy_exports

_EXPORTS = {
    "TracedModel": ".tracer",
    "trace_model": ".tracer",
    "meta_copy": ".clone",
    "index_modules": ".index",
    "ModuleIndex": ".index",
    "parse_input_size": ".input_size",
    "resolve_input_size": ".input_size",
}
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
__all__ = sorted(_EXPORTS)
