"""Named, seeded evaluation protocols: which images are queries, database and training set.

Indices refer to a dataset's images in official order, training images first, then test images
(CIFAR-10: 50,000 + 10,000; MNIST: 60,000 + 10,000). A split is a pure function of
(protocol, labels, seed) and is saved as index lists next to every result.

=====================  =========================  ==========================  ==================
protocol               queries                    database                    training
=====================  =========================  ==========================  ==================
``<data>-1k``          1,000 (100 per class)      all other images            5,000 (500 per
                       from all images                                        class) from the
                                                                              database
``<data>-1k-disjoint`` as ``-1k``                 the other images minus the  as ``-1k``
                                                  training set
``<data>-10k``         the 10,000 official test   the official training       the official
                       images                     images                      training images
=====================  =========================  ==========================  ==================
"""

from dataclasses import dataclass, field, replace

import numpy as np

from pyhash._atomic import atomic_write
from pyhash._inputs import check_count
from pyhash._npz import read_npz

DATASETS = {"cifar10": (50_000, 10_000), "mnist": (60_000, 10_000)}
PROTOCOLS = tuple(f"{d}-{p}" for d in DATASETS for p in ("1k", "1k-disjoint", "10k"))
QUERIES_PER_CLASS = 100
TRAIN_PER_CLASS = 500


@dataclass(frozen=True)
class Split:
    """Index lists (int64, ascending) into the dataset's images, train then test order.

    ``validation`` (empty unless carved by :meth:`with_validation`) is held out of ``train`` for
    model selection; it never overlaps the queries.
    """

    protocol: str
    seed: int
    query: np.ndarray
    database: np.ndarray
    train: np.ndarray
    validation: np.ndarray = field(default_factory=lambda: np.empty(0, dtype=np.int64))

    def with_validation(self, labels, fraction: float) -> "Split":
        """This split with ``fraction`` of each class of the training set moved to ``validation``
        (seeded by the split's seed)."""
        if not 0.0 < fraction < 1.0:
            raise ValueError(f"the validation fraction must be in (0, 1), got {fraction}")
        labels = np.asarray(labels)
        rng = np.random.default_rng([self.seed, 1])
        held = []
        for c in np.unique(labels[self.train]):
            members = rng.permutation(self.train[labels[self.train] == c])
            held.append(members[: int(round(fraction * len(members)))])
        held = np.sort(np.concatenate(held)).astype(np.int64)
        if len(held) == 0 or len(held) == len(self.train):
            raise ValueError(f"a validation fraction of {fraction} of {len(self.train)} training images leaves no validation or no training images")
        return replace(self, train=np.setdiff1d(self.train, held), validation=held)

    def save(self, path) -> None:
        """Write the split to ``path`` (.npz) atomically."""
        with atomic_write(path) as f:
            np.savez(f, protocol=self.protocol, seed=self.seed, query=self.query, database=self.database, train=self.train,
                     validation=self.validation)

    @classmethod
    def load(cls, path) -> "Split":
        """Read a split written by :meth:`save`; ValueError naming the file if it is not one."""
        try:
            f = read_npz(path, ("protocol", "seed", "query", "database", "train"), optional=("validation",))
            protocol, seed = str(f["protocol"]), int(f["seed"])
        except (ValueError, TypeError) as exc:  # NpzError, or a protocol or seed of the wrong kind
            raise ValueError(f"{path} is not a saved pyhash split: {exc}") from None
        validation = f.get("validation", np.empty(0, dtype=np.int64))
        lists = [f["query"], f["database"], f["train"], validation]
        if any(a.ndim != 1 or a.dtype.kind not in "iu" for a in lists):
            raise ValueError(f"{path} is not a saved pyhash split: its index lists are not 1-D integer arrays")
        return cls(protocol, seed, *[a.astype(np.int64) for a in lists])


def make_split(protocol: str, labels, seed: int = 0) -> Split:
    """The split of ``protocol`` for a dataset with these labels (int[N], train then test).

    Raises ValueError for an unknown protocol, labels of the wrong length, or a class too small
    for the per-class quotas.
    """
    if protocol not in PROTOCOLS:
        raise ValueError(f"unknown protocol {protocol!r}; choose one of {', '.join(PROTOCOLS)}")
    dataset, _, shape = protocol.partition("-")
    n_train, n_test = DATASETS[dataset]
    seed = check_count(seed, "seed", 0)
    labels = np.asarray(labels)
    if labels.shape != (n_train + n_test,):
        raise ValueError(
            f"{protocol} needs the labels of all {n_train + n_test} {dataset} images (train then test), got shape {labels.shape}"
        )
    if labels.dtype.kind not in "iu" or not np.array_equal(np.unique(labels), np.arange(10)):
        raise ValueError(f"{protocol} needs integer class labels 0..9, got {labels.dtype} values {np.unique(labels)[:12]}")
    everything = np.arange(n_train + n_test, dtype=np.int64)
    if shape == "10k":
        train = everything[:n_train]
        return Split(protocol, seed, everything[n_train:], train.copy(), train)
    rng = np.random.default_rng(seed)
    query, train = [], []
    for c in np.unique(labels):
        members = rng.permutation(np.nonzero(labels == c)[0])
        if len(members) < QUERIES_PER_CLASS + TRAIN_PER_CLASS:
            raise ValueError(f"class {c} has only {len(members)} images")
        query.append(members[:QUERIES_PER_CLASS])
        train.append(members[QUERIES_PER_CLASS : QUERIES_PER_CLASS + TRAIN_PER_CLASS])
    query = np.sort(np.concatenate(query))
    train = np.sort(np.concatenate(train))
    database = np.setdiff1d(everything, query)
    if shape == "1k-disjoint":
        database = np.setdiff1d(database, train)
    return Split(protocol, seed, query, database, train)
