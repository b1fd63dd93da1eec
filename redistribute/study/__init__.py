"""Stage 5a, study: a model source in, every template's variant measured side by side out.

Takes a model source and the templates to compare; plans each at the base's cost (:mod:`redistribute.planning`),
builds it (:mod:`redistribute.surgery`) and measures latency, throughput and peak memory
(:mod:`~redistribute.study.timing`, :mod:`~redistribute.study.latency` for latency-matched plans). Hands on a
:class:`~redistribute.study.comparison.Comparison` (rows per template) and plots of width per layer
(:mod:`~redistribute.study.plot`). :mod:`~redistribute.study.flop_counters` cross-checks FLOPs with torch's counter.

The accuracy study (:func:`~redistribute.study.studies.run_study`): every template and seed redistributed, trained
under one recipe and measured (:mod:`~redistribute.study.runs`), on an executor (:mod:`~redistribute.study.executors`:
local, torchrun, Ray; :mod:`~redistribute.study.worker` runs one run in a subprocess), summarised in
:mod:`~redistribute.study.results`.
"""

from __future__ import annotations

from .._lazy import lazy_exports

_EXPORTS = {
    "CompareRow": ".comparison",
    "Comparison": ".comparison",
    "compare": ".comparison",
    "LatencyMatch": ".latency",
    "match_latency": ".latency",
    "Timing": ".timing",
    "measure_latency": ".timing",
    "peak_memory": ".timing",
    "plot_comparison": ".plot",
    "plot_plans": ".plot",
    "ExecutorOptions": ".executors",
    "register_executor": ".executors",
    "RunResult": ".runs",
    "RunSpec": ".runs",
    "StudyProgress": ".studies",
    "run_study": ".studies",
    "StudyResult": ".results",
    "TemplateRow": ".results",
    "plot_study": ".results",
}
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
__all__ = sorted(_EXPORTS)
