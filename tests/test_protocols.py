"""Named split protocols: sizes, balance, disjointness, seeding, persistence."""

import numpy as np
import pytest

from pyhash.protocols import PROTOCOLS, Split, make_split


def _labels(dataset):
    n = {"cifar10": 60_000, "mnist": 70_000}[dataset]
    return np.random.default_rng(1).permutation(np.arange(n) % 10)


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_sizes_balance_and_disjointness(protocol):
    dataset = protocol.split("-")[0]
    labels = _labels(dataset)
    split = make_split(protocol, labels, seed=3)
    n = len(labels)
    n_test = 10_000
    assert len(np.intersect1d(split.query, split.database)) == 0
    if protocol.endswith("10k"):
        assert len(split.query) == n_test and split.query[0] == n - n_test
        assert len(split.database) == n - n_test and np.array_equal(split.train, split.database)
        return
    assert len(split.query) == 1000 and len(split.train) == 5000
    assert np.all(np.bincount(labels[split.query]) == 100)
    assert np.all(np.bincount(labels[split.train]) == 500)
    if protocol.endswith("disjoint"):
        assert len(split.database) == n - 6000
        assert len(np.intersect1d(split.train, split.database)) == 0
    else:
        assert len(split.database) == n - 1000
        assert np.all(np.isin(split.train, split.database))


def test_seeded_and_deterministic():
    labels = _labels("cifar10")
    a, b = make_split("cifar10-1k", labels, seed=0), make_split("cifar10-1k", labels, seed=0)
    c = make_split("cifar10-1k", labels, seed=1)
    assert np.array_equal(a.query, b.query) and np.array_equal(a.train, b.train)
    assert not np.array_equal(a.query, c.query)


def test_save_load_roundtrip(tmp_path):
    split = make_split("mnist-1k-disjoint", _labels("mnist"), seed=7)
    path = tmp_path / "split.npz"
    split.save(path)
    loaded = Split.load(path)
    assert loaded.protocol == split.protocol and loaded.seed == 7
    for name in ("query", "database", "train", "validation"):
        assert np.array_equal(getattr(loaded, name), getattr(split, name))
    assert [p.name for p in tmp_path.iterdir()] == ["split.npz"]


@pytest.mark.parametrize("protocol", ["mnist-1k", "cifar10-10k"])
def test_validation_is_carved_from_training_per_class(protocol, tmp_path):
    labels = _labels(protocol.split("-")[0])
    split = make_split(protocol, labels, seed=2)
    carved = split.with_validation(labels, 0.1)
    per_class = np.bincount(labels[split.train])
    assert np.array_equal(np.bincount(labels[carved.validation]), np.round(0.1 * per_class).astype(int))
    assert np.array_equal(np.union1d(carved.train, carved.validation), split.train)
    assert len(np.intersect1d(carved.train, carved.validation)) == 0
    assert len(np.intersect1d(carved.validation, split.query)) == 0
    assert np.array_equal(carved.validation, split.with_validation(labels, 0.1).validation)  # seeded
    carved.save(tmp_path / "s.npz")
    assert np.array_equal(Split.load(tmp_path / "s.npz").validation, carved.validation)
    for bad in (0.0, 1.0, -0.5):
        with pytest.raises(ValueError, match="validation fraction"):
            split.with_validation(labels, bad)


def test_real_mnist_labels(data_dir):
    with np.load(data_dir / "mnist.npz") as f:
        labels = np.concatenate([f["y_train"], f["y_test"]])
    split = make_split("mnist-1k", labels)
    assert np.all(np.bincount(labels[split.query]) == 100)


def _with_small_class(labels, c, keep):
    """labels with all but ``keep`` images of class c relabelled 0."""
    labels = labels.copy()
    labels[np.nonzero(labels == c)[0][keep:]] = 0
    return labels


@pytest.mark.parametrize(
    "protocol, labels, match",
    [
        ("cifar100-1k", np.zeros(60_000), "unknown protocol"),
        ("cifar10-1k", np.zeros(100), "labels of all 60000"),
        ("mnist-1k", _with_small_class(np.arange(70_000) % 10, 1, 500), "class 1 has only 500"),
        ("mnist-1k", np.arange(70_000) % 10 + 0.0, "integer class labels 0..9"),
        ("mnist-1k", np.arange(70_000) % 11, "integer class labels 0..9"),
    ],
)
def test_errors(protocol, labels, match):
    with pytest.raises(ValueError, match=match):
        make_split(protocol, labels)


def test_bad_seed():
    labels = np.arange(70_000) % 10
    with pytest.raises(ValueError, match="seed must be >= 0"):
        make_split("mnist-1k", labels, seed=-1)
    with pytest.raises(TypeError, match="seed must be an integer"):
        make_split("mnist-1k", labels, seed=1.5)


def test_loading_something_else_is_a_clear_error(tmp_path):
    (tmp_path / "text.npz").write_text("not a split")
    np.savez(tmp_path / "partial.npz", query=np.arange(3))
    np.savez(tmp_path / "float.npz", protocol="mnist-1k", seed=0, query=np.zeros(3), database=np.arange(3), train=np.arange(3))
    for name, match in (("text", "not a .npz"), ("partial", "it has no array protocol, seed, database, train"),
                        ("float", "its index lists are not 1-D integer arrays")):
        with pytest.raises(ValueError, match=f"{name}.npz is not a saved pyhash split: {match}"):
            Split.load(tmp_path / f"{name}.npz")
