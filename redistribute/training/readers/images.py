"""Image files as normalised float tensors, decoded with PIL."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import torch
from PIL import Image
from torch.utils.data import Dataset
from torchvision.transforms.functional import pil_to_tensor

from ...errors import DataError

__all__ = ["IMAGE_EXTENSIONS", "ImageFiles", "decode_image"]

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".ppm", ".bmp", ".pgm", ".tif", ".tiff", ".webp")

Sample = tuple[Path, int]


def decode_image(path: Path, mode: str, size: tuple[int, int] | None = None) -> torch.Tensor:
    """Read an image as a float tensor in [0, 1] of shape (C, H, W); ``size`` is (H, W) to resize to."""
    try:
        with Image.open(path) as image:
            image = image.convert(mode)
            if size is not None and image.size != (size[1], size[0]):
                image = image.resize((size[1], size[0]), Image.Resampling.BILINEAR)
            return pil_to_tensor(image).float() / 255.0
    except OSError as exc:
        raise DataError(f"cannot read image {path}: {exc}") from None


class ImageFiles(Dataset):
    """Image files with class labels, decoded with PIL, resized to one size and normalised per channel."""

    def __init__(
        self, samples: Sequence[Sample], input_size: tuple[int, int, int], mean: Sequence[float], std: Sequence[float]
    ) -> None:
        """Create the dataset.

        Args:
            samples: ``(path, class index)`` pairs.
            input_size: Output shape (C, H, W); C is 1 (greyscale) or 3 (RGB).
            mean: Per-channel mean subtracted after scaling to [0, 1].
            std: Per-channel standard deviation divided by.

        """
        self.samples = list(samples)
        self.input_size = input_size
        self.mode = "L" if input_size[0] == 1 else "RGB"
        self.mean = torch.tensor(mean, dtype=torch.float32).view(-1, 1, 1)
        self.std = torch.tensor(std, dtype=torch.float32).view(-1, 1, 1)

    def __len__(self) -> int:
        return len(self.samples)

    def verify(self) -> None:
        """Open every file and check it is a whole image (PIL's ``verify``: no pixel decoding).

        Raises:
            DataError: Naming the first file that is not a readable image.
        """
        for path, _ in self.samples:
            try:
                with Image.open(path) as image:
                    image.verify()
            except (OSError, SyntaxError, ValueError) as exc:
                raise DataError(f"cannot read image {path}: {exc}") from None

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        path, label = self.samples[index]
        image = decode_image(path, self.mode, self.input_size[1:])
        return (image - self.mean) / self.std, label
