"""Spoken-audio clips as 1-channel log-mel spectrogram images.

WAV files are read with ``soundfile`` (libsndfile); the mel filter bank comes from ``librosa.filters.mel`` and the
spectrogram from ``torch.stft``. Both libraries are imported only when audio is used.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import torch
from torch.utils.data import Dataset

from ...errors import DataError

__all__ = ["AudioFiles", "LogMel"]

Sample = tuple[Path, int]


class LogMel:
    """Log-mel spectrogram of a fixed-length mono clip, as a 1-channel image of shape (1, n_mels, frames)."""

    def __init__(
        self, sample_rate: int = 8000, seconds: float = 1.0, n_fft: int = 512, hop: int = 128, n_mels: int = 64
    ) -> None:
        """Create the transform (``librosa.filters.mel`` filter bank, ``torch.stft`` with a Hann window).

        Args:
            sample_rate: Expected sample rate in Hz.
            seconds: Clip length; shorter clips are zero-padded at the end, longer ones cropped.
            n_fft: FFT size.
            hop: Hop length in samples.
            n_mels: Number of mel bins.

        """
        try:  # optional dependencies, imported only when audio is used
            import librosa.filters
            import soundfile  # noqa: F401  (checked here, before any file is read)
        except ImportError as exc:
            raise DataError(
                f"audio data needs soundfile and librosa ({exc.name} is missing). Hint: pip install 'redistribute[study]'"
            ) from None

        self.sample_rate, self.length, self.n_fft, self.hop = sample_rate, int(sample_rate * seconds), n_fft, hop
        self.mel = torch.from_numpy(librosa.filters.mel(sr=sample_rate, n_fft=n_fft, n_mels=n_mels))
        self.window = torch.hann_window(n_fft)
        self.shape = (1, n_mels, 1 + self.length // hop)

    def read(self, path: Path) -> torch.Tensor:
        """Read a WAV file with soundfile and return its log-mel spectrogram."""
        import soundfile

        try:
            wave, rate = soundfile.read(path, dtype="float32", always_2d=True)
        except (soundfile.SoundFileError, OSError) as exc:
            raise DataError(f"cannot read audio {path}: {exc}") from None
        if rate != self.sample_rate:
            raise DataError(f"audio {path} has sample rate {rate} Hz, expected {self.sample_rate} Hz")
        return self(torch.from_numpy(wave.mean(axis=1)))

    def __call__(self, wave: torch.Tensor) -> torch.Tensor:
        """Spectrogram of a 1-D waveform."""
        wave = torch.nn.functional.pad(wave[: self.length], (0, max(0, self.length - wave.numel())))
        spec = torch.stft(wave, self.n_fft, self.hop, window=self.window, return_complex=True).abs().square()
        return torch.log(self.mel @ spec + 1e-6).unsqueeze(0)


class AudioFiles(Dataset):
    """WAV files with class labels, as standardised log-mel spectrograms."""

    def __init__(self, samples: Sequence[Sample], transform: LogMel, mean: float, std: float) -> None:
        """Create the dataset.

        Args:
            samples: ``(path, class index)`` pairs.
            transform: WAV reader and spectrogram.
            mean: Mean of the log-mel values, subtracted.
            std: Their standard deviation, divided by.

        """
        self.samples, self.transform, self.mean, self.std = list(samples), transform, mean, std

    def __len__(self) -> int:
        return len(self.samples)

    def verify(self) -> None:
        """Read every file's header with soundfile and check its sample rate.

        Raises:
            DataError: Naming the first file that is not a readable WAV at the transform's sample rate.
        """
        import soundfile

        for path, _ in self.samples:
            try:
                rate = soundfile.info(str(path)).samplerate
            except (soundfile.SoundFileError, OSError, RuntimeError) as exc:
                raise DataError(f"cannot read audio {path}: {exc}") from None
            if rate != self.transform.sample_rate:
                raise DataError(f"audio {path} has sample rate {rate} Hz, expected {self.transform.sample_rate} Hz")

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        path, label = self.samples[index]
        return (self.transform.read(path) - self.mean) / self.std, label
