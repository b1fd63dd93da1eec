"""The one exception hierarchy of redistribute.

Every error a user can cause derives from :class:`RedistributeError`; its message names the thing that is wrong
(a model, a layer, a node, a file) and says what to do about it. The CLI prints the message on one line and exits
with :attr:`RedistributeError.exit_code` (2 for usage errors, 1 for failures).
"""

from __future__ import annotations

__all__ = [
    "CheckpointError",
    "ConstraintError",
    "DataError",
    "InfeasibleTargetError",
    "OutputError",
    "RebuildError",
    "RedistributeError",
    "SourceError",
    "SpecError",
    "SpecMismatchError",
    "TemplateError",
    "TraceError",
    "UnsupportedOpError",
    "UsageError",
]


class RedistributeError(Exception):
    """Base class of every error redistribute raises on purpose."""

    exit_code: int = 1


class UsageError(RedistributeError, ValueError):
    """An argument is malformed or out of range (exit code 2)."""

    exit_code = 2


class SourceError(UsageError):
    """A model source (``timm:NAME``, ``torchvision:NAME``, ``file.py:factory``) cannot be resolved."""


class TemplateError(UsageError):
    """A template name or control-point string is unknown or malformed."""


class TraceError(RedistributeError):
    """The model cannot be traced at all (the message names the node or module and why)."""


class UnsupportedOpError(TraceError):
    """An operation cannot be mapped to channel groups and redistribution cannot proceed."""


class InfeasibleTargetError(RedistributeError):
    """The cost target or tolerance cannot be reached; the message gives the reachable range."""


class ConstraintError(RedistributeError):
    """A width violates a group's constraint (divisibility, minimum, tie)."""


class RebuildError(RedistributeError):
    """A rebuilt model is inconsistent (a layer's attributes and weights disagree, its forward fails or changes the
    output shapes, or its parameter count is not the plan's); nothing is returned or written."""


class SpecError(UsageError):
    """A spec file is unreadable, not JSON, or of another format version."""


class SpecMismatchError(RedistributeError):
    """A spec does not fit the model it names (renamed layers, another timm version)."""


class CheckpointError(RedistributeError):
    """A checkpoint is corrupt or does not fit the model."""


class OutputError(RedistributeError):
    """An output folder cannot be written, or already holds a result (use ``--force``)."""


class DataError(UsageError):
    """A training data folder is missing or not laid out as ``DIR/train/<class>/*`` (and ``DIR/val/<class>/*``)."""
