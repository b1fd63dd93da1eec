"""Named training-data readers for ``redistribute study``: ``--data cifar10:DIR``, ``fsdd:DIR``, ``mnist`` or a folder.

:mod:`~redistribute.training.readers.registry` holds the registry (:func:`register_reader`); :func:`load_data` (in :mod:`~.loading`)
which parses a ``--data`` spec into a :class:`StudyData` (train and val ``Dataset`` of normalised tensors, class names,
input size). :mod:`~redistribute.training.readers.builtin` registers the built-in readers on first use;
:mod:`~redistribute.training.readers.archives` extracts tars once into a cache, :mod:`~.images` decodes images with
PIL and :mod:`~.audio` turns WAVs into log-mel spectrograms (``soundfile`` + ``librosa.filters.mel`` +
``torch.stft``; both imported only when audio is read).

Example:
    >>> data = load_data("mnist", limit_train=20, limit_val=10)  # doctest: +SKIP
    >>> data.input_size, len(data.train)  # doctest: +SKIP
    ((1, 28, 28), 20)
"""

from __future__ import annotations

from ..._lazy import lazy_exports

_EXPORTS = {
    "ReadOptions": ".registry",
    "StudyData": ".registry",
    "balanced_subset": ".registry",
    "load_data": ".loading",
    "reader_names": ".loading",
    "register_reader": ".registry",
}
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
__all__ = sorted(_EXPORTS)
