"""pyhash.data: the three sources, and clear errors for missing or corrupt data."""

import struct

import numpy as np
import pytest

from pyhash.data import DataNotFoundError, bundled_mnist_test, load_dataset


def test_bundled_sample():
    ds = load_dataset("mnist-sample")
    assert ds.images.shape == (10_000, 28, 28) and ds.num_train == 0
    assert np.bincount(ds.labels).min() > 800
    x, y = bundled_mnist_test()
    assert np.array_equal(x, ds.images)


def test_npz_folder_mnist(data_dir):
    ds = load_dataset("mnist", data_dir)
    assert ds.images.shape == (70_000, 28, 28) and ds.num_train == 60_000
    sample, labels = bundled_mnist_test()
    assert np.array_equal(ds.images[60_000:], sample) and np.array_equal(ds.labels[60_000:], labels)


def test_npz_folder_cifar10(data_dir):
    if not (data_dir / "cifar10_test.npz").exists():
        pytest.skip("CIFAR-10 archives not present")
    ds = load_dataset("cifar10", data_dir)
    assert ds.images.shape == (60_000, 32, 32, 3) and ds.num_train == 50_000


def _write_idx(path, array):
    """The IDX format of the official MNIST files (uncompressed, as torchvision keeps them)."""
    header = struct.pack(">HBB", 0, 0x08, array.ndim) + b"".join(struct.pack(">I", n) for n in array.shape)
    path.write_bytes(header + array.astype(np.uint8).tobytes())


def test_torchvision_layout_mnist(tmp_path):
    """The standard MNIST/raw IDX files, written here from the bundled images."""
    pytest.importorskip("torchvision")
    x, y = bundled_mnist_test()
    raw = tmp_path / "MNIST" / "raw"
    raw.mkdir(parents=True)
    train_x = np.concatenate([x] * 6)
    train_y = np.concatenate([y] * 6)
    for stem, arr in [("train-images-idx3-ubyte", train_x), ("train-labels-idx1-ubyte", train_y),
                      ("t10k-images-idx3-ubyte", x), ("t10k-labels-idx1-ubyte", y)]:
        _write_idx(raw / stem, arr)
    ds = load_dataset("mnist", tmp_path)
    assert ds.num_train == 60_000 and np.array_equal(ds.images[60_000:], x)
    assert "MNIST" in ds.source


def test_missing_data_says_where_it_looked(tmp_path):
    with pytest.raises(DataNotFoundError, match="mnist.npz.*MNIST/raw.*To get it"):
        load_dataset("mnist", tmp_path)
    with pytest.raises(DataNotFoundError, match="cifar10_train1..5.npz"):
        load_dataset("cifar10", tmp_path)


def test_corrupt_archive_is_reported(tmp_path):
    np.savez(tmp_path / "mnist.npz", x_train=np.zeros((10, 28, 28), np.uint8), y_train=np.zeros(10),
             x_test=np.zeros((10, 28, 28), np.uint8), y_test=np.zeros(10))
    with pytest.raises(ValueError, match="corrupted or incomplete.*expected uint8\\[60000, 28, 28\\]"):
        load_dataset("mnist", tmp_path)


def _valid_mnist_archive(path):
    np.savez(path, x_train=np.zeros((60_000, 28, 28), np.uint8), y_train=np.zeros(60_000, np.int64),
             x_test=np.zeros((10_000, 28, 28), np.uint8), y_test=np.zeros(10_000, np.int64))


def test_unreadable_archives_are_reported(tmp_path):
    good = tmp_path / "good.npz"
    _valid_mnist_archive(good)
    assert load_dataset("mnist", _folder_with(tmp_path, "good", good.read_bytes())).images.shape == (70_000, 28, 28)
    raw = good.read_bytes()
    member = raw.index(b"x_test.npy") + 200  # inside the stored bytes of one array
    cases = {
        "text": (b"not an archive", "not a .npz \\(zip\\) archive"),
        "truncated": (raw[: len(raw) // 2], "not a .npz \\(zip\\) archive"),
        "damaged": (raw[:member] + bytes([raw[member] ^ 0xFF]) + raw[member + 1 :], "unreadable"),
    }
    for name, (content, message) in cases.items():
        with pytest.raises(ValueError, match=f"mnist archive .*{name}.*mnist.npz is unusable: {message}.*To get it"):
            load_dataset("mnist", _folder_with(tmp_path, name, content))
    missing = tmp_path / "missing"
    missing.mkdir()
    np.savez(missing / "mnist.npz", x_train=np.zeros((3, 28, 28), np.uint8))
    with pytest.raises(ValueError, match="no array y_train, x_test, y_test \\(it holds: x_train\\)"):
        load_dataset("mnist", missing)
    pickled = tmp_path / "pickled"
    pickled.mkdir()
    np.savez(pickled / "mnist.npz", x_train=np.array([None, 1], dtype=object), y_train=np.zeros(2),
             x_test=np.zeros(2), y_test=np.zeros(2))
    with pytest.raises(ValueError, match="unusable: unreadable.*allow_pickle"):
        load_dataset("mnist", pickled)


def _folder_with(tmp_path, name, content):
    folder = tmp_path / name
    folder.mkdir()
    (folder / "mnist.npz").write_bytes(content)
    return folder


def test_unknown_dataset():
    with pytest.raises(ValueError, match="unknown dataset"):
        load_dataset("imagenet")
