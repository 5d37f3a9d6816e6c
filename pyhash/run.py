"""A training run folder: config, split lists, log, checkpoint, model, metrics.json and plots.

    RUN/config.json      the TrainConfig and the dataset/protocol/seed
    RUN/split.npz        query / database / train index lists (pyhash.protocols.Split)
    RUN/log.jsonl        one line per epoch
    RUN/checkpoint.pt    written atomically after every epoch (resume continues from it)
    RUN/model.pt         the final weights (state_dict, loads with weights_only=True)
    RUN/metrics.json     evaluation on the protocol's queries and database
    RUN/*.png            PR curve, precision@k, distance histograms, training curves
"""

import json
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch

import pyhash
from pyhash import metrics
from pyhash._atomic import atomic_write
from pyhash.data import load_dataset
from pyhash.models import HashNet, make_trunk
from pyhash.protocols import Split, make_split
from pyhash.train import TrainConfig, normalise_images, train

SAMPLE_PROTOCOL = "sample"  # the bundled 10,000 MNIST test images: 1,000 queries, the rest database


def _write_json(path: Path, data) -> None:
    with atomic_write(path) as f:
        f.write(json.dumps(data, indent=2).encode())


def _sample_split(labels: np.ndarray, seed: int) -> Split:
    """Bundled sample: 100 queries per class; database = the rest; training = 300 per class of it."""
    rng = np.random.default_rng(seed)
    query, train_idx = [], []
    for c in np.unique(labels):
        members = rng.permutation(np.nonzero(labels == c)[0])
        query.append(members[:100])
        train_idx.append(members[100:400])
    query = np.sort(np.concatenate(query))
    return Split(SAMPLE_PROTOCOL, seed, query, np.setdiff1d(np.arange(len(labels)), query), np.sort(np.concatenate(train_idx)))


def prepare(dataset: str, protocol: str, data_dir=None, seed: int = 0):
    """(images float[N, C, H, W], labels int64[N], split) for a dataset and protocol."""
    ds = load_dataset(dataset, data_dir)
    split = _sample_split(ds.labels, seed) if protocol == SAMPLE_PROTOCOL else make_split(protocol, ds.labels, seed)
    return normalise_images(ds.images), torch.from_numpy(ds.labels), split


@dataclass
class Codes:
    """Packed codes of a split's queries and database, with their labels."""

    query: torch.Tensor
    database: torch.Tensor
    query_labels: torch.Tensor
    database_labels: torch.Tensor
    nbits: int


def encode_split(model: HashNet, images, labels, split: Split) -> Codes:
    return Codes(model.encode(images[split.query]), model.encode(images[split.database]),
                 labels[split.query], labels[split.database], model.nbits)


def evaluate(codes: Codes) -> dict:
    """Metrics of a split's codes (never used to select checkpoints)."""
    q, d, ql, dl = codes.query, codes.database, codes.query_labels, codes.database_labels
    return {
        "mAP@ALL": metrics.mean_average_precision(q, d, ql, dl),
        "mAP@ALL (ties averaged)": metrics.mean_average_precision(q, d, ql, dl, ties="average"),
        "precision within radius 2": metrics.precision_within_radius(q, d, ql, dl, 2),
        "precision@100": metrics.precision_at_k(q, d, ql, dl, 100),
        "queries": len(q),
        "database": len(d),
        "bits": codes.nbits,
    }


def plot(codes: Codes, history, out: Path) -> list:
    """Write the PNG plots of a run; returns their paths."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    q, d, ql, dl = codes.query, codes.database, codes.query_labels, codes.database_labels
    written = []

    def save(fig, name):
        path = out / name
        fig.tight_layout()
        fig.savefig(path, dpi=110)
        plt.close(fig)
        written.append(path)

    _, precision, recall = metrics.pr_curve(q, d, ql, dl, by="radius")
    fig, ax = plt.subplots(figsize=(4.5, 4))
    ax.plot(recall, precision, marker=".")
    ax.set(xlabel="recall", ylabel="precision", title="PR curve (Hamming radius 0..B)", xlim=(0, 1.02), ylim=(0, 1.02))
    save(fig, "pr_curve.png")

    ks, p_at_k, _ = metrics.pr_curve(q, d, ql, dl, by="rank")
    fig, ax = plt.subplots(figsize=(4.5, 4))
    ax.semilogx(ks, p_at_k, marker=".")
    ax.set(xlabel="k", ylabel="precision@k", title="precision@k", ylim=(0, 1.02))
    save(fig, "precision_at_k.png")

    sample = torch.arange(min(500, len(q)))
    dist = pyhash.hamming_distance(q[sample], d[:5000]).flatten().numpy()
    same = (ql[sample][:, None] == dl[:5000][None, :]).flatten().numpy()
    fig, ax = plt.subplots(figsize=(4.5, 4))
    bins = np.arange(codes.nbits + 2) - 0.5
    ax.hist(dist[same], bins=bins, alpha=0.6, density=True, label="similar pairs")
    ax.hist(dist[~same], bins=bins, alpha=0.6, density=True, label="dissimilar pairs")
    ax.set(xlabel="Hamming distance", ylabel="density", title="distances of query-database pairs")
    ax.legend()
    save(fig, "distance_histogram.png")

    fig, ax = plt.subplots(figsize=(4.5, 4))
    for stage in ("classify", "bottleneck", "hash"):
        rows = [h for h in history if h["stage"] == stage]
        if rows:
            ax.plot([h["epoch"] for h in rows], [h["loss"] for h in rows], marker="o", label=stage)
    ax.set(xlabel="epoch", ylabel="training loss", title="training curves")
    ax.legend()
    save(fig, "training_curves.png")
    return written


def save_index(codes: Codes, split: Split, path) -> "pyhash.HammingSearch":
    """A HammingSearch of the database codes (ids = dataset positions), saved to path."""
    index = pyhash.HammingSearch(codes.database.shape[1] * 8)
    index.add(codes.database, ids=split.database)
    index.save(path)
    return index


def run_training(dataset, protocol, config: TrainConfig, out, data_dir=None, resume=False, plots=True):
    """Train, evaluate and write a complete run folder; returns (metrics, codes of the split)."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    images, labels, split = prepare(dataset, protocol, data_dir, config.seed)
    split.save(out / "split.npz")
    _write_json(out / "run.json", {"dataset": dataset, "protocol": protocol, "data_dir": str(data_dir) if data_dir else None,
                                   "config": asdict(config), "pyhash": pyhash.__version__})
    model, history = train(config, images[split.train], labels[split.train], out_dir=out, resume=resume)
    with atomic_write(out / "model.pt") as f:
        torch.save(model.state_dict(), f)
    codes = encode_split(model, images, labels, split)
    result = evaluate(codes)
    result["training seconds"] = sum(h["seconds"] for h in history)
    _write_json(out / "metrics.json", result)
    if plots:
        plot(codes, history, out)
    return result, codes


def load_run(run_dir):
    """(model, run info, split) of a finished run folder."""
    run_dir = Path(run_dir)
    if not (run_dir / "model.pt").exists():
        raise FileNotFoundError(f"{run_dir} is not a finished pyhash run (no model.pt); train it with `pyhash train`")
    info = json.loads((run_dir / "run.json").read_text())
    config = TrainConfig(**info["config"])
    model = HashNet(make_trunk(config.trunk), config.nbits, config.num_classes)
    model.load_state_dict(torch.load(run_dir / "model.pt", map_location="cpu", weights_only=True))
    model.eval()
    return model, info, Split.load(run_dir / "split.npz")
