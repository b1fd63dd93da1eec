"""Stage 5b, train: a saved spec (and weights) in, a trained model and its metrics out.

Takes a spec folder written by the pipeline and an image folder; :mod:`~redistribute.training.loop` trains with
timm's components (optimizer, scheduler, Mixup/CutMix, EMA, AMP, DDP under ``torchrun``) under one
:class:`~redistribute.training.config.TrainConfig`, with data loaders from :mod:`~redistribute.training.data` and
optional distillation from :mod:`~redistribute.training.distill`. Hands on a
:class:`~redistribute.training.loop.TrainResult` and an output folder (:mod:`~redistribute.training.files`).
:func:`~redistribute.training.loop.train_model` runs the same loop on a model and in-memory datasets, such as those
the named readers of :mod:`~redistribute.training.readers` build for the study (CIFAR-10, FSDD, MNIST, folders).
"""

from __future__ import annotations

from .._lazy import lazy_exports

_EXPORTS = {
    "TrainConfig": ".config",
    "EpochMetrics": ".files",
    "TrainProgress": ".loop",
    "TrainResult": ".loop",
    "train": ".loop",
    "train_model": ".loop",
}
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
__all__ = sorted(_EXPORTS)
