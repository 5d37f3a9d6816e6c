"""Datasets: MNIST and CIFAR-10 from a folder of .npz archives, from torchvision's on-disk layouts,
or (MNIST test set only) from the sample bundled with pyhash.

Every loader returns ``Dataset(images, labels, num_train)``: images ``uint8[N, H, W]`` (MNIST) or
``uint8[N, H, W, 3]`` (CIFAR-10), labels ``int64[N]``, official training images first
(``images[:num_train]``), then the official test images, in official order. That is the index
space of :mod:`pyhash.protocols`.
"""

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from pyhash._npz import NpzError, read_npz

BUNDLED_MNIST = Path(__file__).with_name("mnist_test.npz")
BUNDLED_MNIST_SHA256 = "b8d30bd15bf8aec9eb69ca5b88ee72078b29f27777d7b2a2d53a588f90a19fec"
SHAPES = {"mnist": ((60_000, 10_000), (28, 28)), "cifar10": ((50_000, 10_000), (32, 32, 3))}
HOW_TO_GET = {
    "mnist": "put mnist.npz (x_train, y_train, x_test, y_test) in the folder, or the torchvision "
    "layout MNIST/raw/*-ubyte, or pass download=True when online",
    "cifar10": "put cifar10_train1..5.npz and cifar10_test.npz in the folder, or the torchvision "
    "layout cifar-10-batches-py/, or pass download=True when online",
}


class DataNotFoundError(FileNotFoundError):
    """No usable copy of a dataset was found; the message lists where pyhash looked."""


@dataclass(frozen=True)
class Dataset:
    images: np.ndarray
    labels: np.ndarray
    num_train: int
    name: str
    source: str

    def __len__(self) -> int:
        return len(self.labels)


def bundled_mnist_test():
    """The bundled MNIST test set: images ``uint8[10000, 28, 28]`` and labels ``int64[10000]``."""
    if not BUNDLED_MNIST.exists():
        raise DataNotFoundError(f"the bundled MNIST sample is missing: looked for {BUNDLED_MNIST}. Reinstall pyhash.")
    digest = hashlib.sha256(BUNDLED_MNIST.read_bytes()).hexdigest()
    if digest != BUNDLED_MNIST_SHA256:
        raise ValueError(f"the bundled MNIST sample {BUNDLED_MNIST} is corrupted (sha256 {digest}). Reinstall pyhash.")
    with np.load(BUNDLED_MNIST) as archive:
        return archive["x_test"], archive["y_test"].astype(np.int64)


def default_data_dir():
    """$PYHASH_DATA if set, else ~/.cache/pyhash."""
    return Path(os.environ.get("PYHASH_DATA") or Path.home() / ".cache" / "pyhash")


def _checked(name, x_train, y_train, x_test, y_test, source) -> Dataset:
    (n_train, n_test), shape = SHAPES[name]
    problems = []
    for part, x, y, n in (("train", x_train, y_train, n_train), ("test", x_test, y_test, n_test)):
        if x.shape != (n,) + shape or x.dtype != np.uint8:
            problems.append(f"{part} images are {x.dtype}{list(x.shape)}, expected uint8{[n, *shape]}")
        if y.shape != (n,) or y.dtype.kind not in "iu" or y.min() < 0 or y.max() > 9:
            span = f"{y.min()}..{y.max()}" if y.size else "empty"
            problems.append(f"{part} labels are {y.dtype}{list(y.shape)} with values {span}, expected integers [{n}] in 0..9")
    if problems:
        raise ValueError(f"{name} at {source} is corrupted or incomplete: " + "; ".join(problems))
    images = np.concatenate([x_train, x_test])
    labels = np.concatenate([y_train, y_test]).astype(np.int64)
    return Dataset(images, labels, n_train, name, str(source))


def _read_npz(name, path: Path, keys):
    """The arrays ``keys`` of one .npz archive, or a ValueError naming the file, the problem and
    how to get the data."""
    try:
        arrays = read_npz(path, keys)
    except NpzError as exc:
        raise ValueError(f"{name} archive {path} is unusable: {exc}. To get it: {HOW_TO_GET[name]}") from None
    return [arrays[k] for k in keys]


def _from_npz(name, folder: Path):
    if name == "mnist":
        path = folder / "mnist.npz"
        if not path.exists():
            return None
        return _checked(name, *_read_npz(name, path, ("x_train", "y_train", "x_test", "y_test")), path)
    parts = [folder / f"cifar10_train{k}.npz" for k in range(1, 6)] + [folder / "cifar10_test.npz"]
    if not all(p.exists() for p in parts):
        return None
    train = [_read_npz(name, p, ("x_train", "y_train")) for p in parts[:5]]
    x_test, y_test = _read_npz(name, parts[5], ("x_test", "y_test"))
    return _checked(name, np.concatenate([x for x, _ in train]), np.concatenate([y for _, y in train]), x_test, y_test, folder)


def _from_torchvision(name, folder: Path, download: bool):
    import torchvision

    cls = torchvision.datasets.MNIST if name == "mnist" else torchvision.datasets.CIFAR10
    marker = folder / ("MNIST" if name == "mnist" else "cifar-10-batches-py")
    if not marker.exists() and not download:
        return None
    try:
        train = cls(str(folder), train=True, download=download)
        test = cls(str(folder), train=False, download=download)
    except RuntimeError as exc:  # torchvision: "Dataset not found or corrupted"
        raise ValueError(f"{name} in torchvision's layout under {folder} is unusable: {exc}") from exc

    def arrays(ds):
        x = ds.data.numpy() if hasattr(ds.data, "numpy") else np.asarray(ds.data)
        y = ds.targets.numpy() if hasattr(ds.targets, "numpy") else np.asarray(ds.targets)
        return x.astype(np.uint8), y.astype(np.int64)

    return _checked(name, *arrays(train), *arrays(test), marker)


def load_dataset(name: str, data_dir=None, download: bool = False) -> Dataset:
    """MNIST or CIFAR-10, all images (train then test), from ``data_dir`` (default
    :func:`default_data_dir`): first the .npz archives, then torchvision's layout, then (with
    download=True) torchvision's download. ``name="mnist-sample"`` is the bundled MNIST test set
    (10,000 images, num_train = 0), which needs no files.
    """
    if name == "mnist-sample":
        x, y = bundled_mnist_test()
        return Dataset(x, y, 0, name, str(BUNDLED_MNIST))
    if name not in SHAPES:
        raise ValueError(f"unknown dataset {name!r}; choose 'mnist', 'cifar10' or 'mnist-sample'")
    folder = Path(data_dir) if data_dir is not None else default_data_dir()
    found = _from_npz(name, folder)
    if found is None:
        found = _from_torchvision(name, folder, download)
    if found is None:
        looked = [str(folder / ("mnist.npz" if name == "mnist" else "cifar10_train1..5.npz, cifar10_test.npz")),
                  str(folder / ("MNIST/raw" if name == "mnist" else "cifar-10-batches-py"))]
        raise DataNotFoundError(
            f"{name} was not found. pyhash looked for: {'; '.join(looked)}. To get it: {HOW_TO_GET[name]} "
            f"(the folder is data_dir, else $PYHASH_DATA, else ~/.cache/pyhash)."
        )
    return found
