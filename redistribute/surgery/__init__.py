"""Stage 4, surgery: a model and a plan in, the rebuilt model out.

Takes the caller's model and a :class:`~redistribute.planning.planner.Plan`; :mod:`~redistribute.surgery.rebuild`
scores channels per group, keeps the most important on shrink and grows function-preservingly, dispatching each
layer to its handler by type (:mod:`~redistribute.surgery.handlers`, :mod:`~redistribute.surgery.attention`).
Hands on an ``nn.Module`` of the original classes at the new widths, with timm's metadata updated. Around it:
weights in and out (:mod:`~redistribute.surgery.checkpoint`, :mod:`~redistribute.surgery.weights`), BatchNorm
recalibration (:mod:`~redistribute.surgery.calibrate`) and the transfer report
(:mod:`~redistribute.surgery.transfer`).
"""

from __future__ import annotations

from .._lazy import lazy_exports

_EXPORTS = {
    "apply": ".rebuild",
    "apply_": ".rebuild",
    "register_handler": ".handlers",
    "load_checkpoint": ".checkpoint",
    "save_weights": ".weights",
    "folder_batches": ".calibrate",
    "noise_batches": ".calibrate",
    "recalibrate_bn_": ".calibrate",
    "TransferRow": ".transfer",
    "transfer_report": ".transfer",
}
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
__all__ = sorted(_EXPORTS)
