"""A training run folder: config, split lists, log, checkpoint, model, metrics.json and plots.

    RUN/run.json         dataset, protocol, data folder, TrainConfig, normalisation, pyhash version
    RUN/config.json      the TrainConfig
    RUN/split.npz        query / database / train / validation index lists (pyhash.protocols.Split)
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
from pyhash._atomic import atomic_write, write_json_atomic
from pyhash.data import SHAPES, load_dataset
from pyhash.models import HashNet, make_trunk
from pyhash.protocols import Split, make_split
from pyhash.training import TrainConfig, check_resume_config, image_stats, normalise_images, train as train_model

SAMPLE_PROTOCOL = "sample"  # the bundled 10,000 MNIST test images: 1,000 queries, the rest database


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


def prepare(dataset: str, protocol: str, data_dir=None, seed: int = 0, stats: dict = None, download: bool = False):
    """(images float[N, C, H, W], labels int64[N], split, stats) for a dataset and protocol.

    Images are standardised with ``stats`` (per-channel mean/std; by default the dataset's own,
    which are returned so that a run can encode new images the same way).
    """
    ds = load_dataset(dataset, data_dir, download=download)
    split = _sample_split(ds.labels, seed) if protocol == SAMPLE_PROTOCOL else make_split(protocol, ds.labels, seed)
    stats = stats or image_stats(ds.images)
    return normalise_images(ds.images, stats), torch.from_numpy(ds.labels), split, stats


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
        with atomic_write(path) as f:
            fig.savefig(f, format="png", dpi=110)
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


@dataclass
class TrainedRun:
    """A finished run: the model (eval mode), its metrics, the split's codes and the run folder."""

    model: HashNet
    metrics: dict
    codes: Codes
    split: Split
    stats: dict
    out: Path
    dataset: str

    def encode(self, images: np.ndarray) -> torch.Tensor:
        """Packed codes uint8[N, ceil(B/8)] of uint8 images [N, H, W] or [N, H, W, C] of the
        training images' size, normalised as in training."""
        return encode_images(self.model, images, self.dataset, self.stats)


def encode_images(model: HashNet, images, dataset: str, stats: dict) -> torch.Tensor:
    """Packed codes of new uint8 images [N, H, W(, C)] by a trained model: checked against the
    size of ``dataset``'s images and normalised with the training ``stats``."""
    images = np.asarray(images)
    if images.dtype != np.uint8 or images.ndim not in (3, 4):
        raise ValueError(f"images must be uint8 [N, H, W] or [N, H, W, C], got {images.dtype} {images.shape}")
    _check_image_shape(images, dataset)
    return model.encode(normalise_images(images, stats))


def run_training(dataset, protocol, config: TrainConfig, out, data_dir=None, resume=False, plots=True,
                 download=False) -> TrainedRun:
    """Train, evaluate and write a complete run folder (see the module docstring). ``download``
    lets torchvision fetch a missing dataset into ``data_dir``."""
    out = Path(out)
    if resume and (out / "checkpoint.pt").exists():
        _check_resume(out, dataset, protocol, config)
    out.mkdir(parents=True, exist_ok=True)
    images, labels, split, stats = prepare(dataset, protocol, data_dir, config.seed, download=download)
    if config.val_fraction > 0:
        split = split.with_validation(labels.numpy(), config.val_fraction)
    split.save(out / "split.npz")
    write_json_atomic(out / "run.json", {"dataset": dataset, "protocol": protocol, "data_dir": str(data_dir) if data_dir else None,
                                   "config": asdict(config), "stats": stats, "pyhash": pyhash.__version__})
    validation = split.validation if len(split.validation) else None
    model, history = train_model(config, images[split.train], labels[split.train], out_dir=out, resume=resume,
                                 val_images=None if validation is None else images[validation],
                                 val_labels=None if validation is None else labels[validation])
    model = model.cpu()
    with atomic_write(out / "model.pt") as f:
        torch.save(model.state_dict(), f)
    codes = encode_split(model, images, labels, split)
    result = evaluate(codes)
    result["training seconds"] = sum(h["seconds"] for h in history)
    result["training images"] = len(split.train)
    result["epoch reported"] = next((h["epoch"] for h in history if h.get("selected")), len(history))
    write_json_atomic(out / "metrics.json", result)
    if plots:
        plot(codes, history, out)
    return TrainedRun(model, result, codes, split, stats, out, dataset)


def _check_resume(out: Path, dataset: str, protocol: str, config: TrainConfig) -> None:
    """Before anything in ``out`` is rewritten: the interrupted run had this dataset, protocol
    and options (a changed seed, say, would draw another split under the trained weights)."""
    if (out / "run.json").exists():
        info = json.loads((out / "run.json").read_text())
        for name, value in (("dataset", dataset), ("protocol", protocol)):
            if info.get(name) != value:
                raise ValueError(f"cannot resume {out}: it was started with {name} {info.get(name)!r}, not {value!r}")
    check_resume_config(out, config)


def train(dataset: str, protocol: str, out, *, data_dir=None, resume: bool = False, plots: bool = True,
          download: bool = False, **options) -> TrainedRun:
    """Train a hash network on a named dataset and protocol and write a run folder.

    ``options`` are :class:`pyhash.training.TrainConfig` fields (``nbits=12``, ``epochs=...``,
    ``lr=...``). Example::

        run = pyhash.train("mnist", "mnist-1k", "runs/mnist12", data_dir="data", nbits=12)
        print(run.metrics["mAP@ALL"])
        codes = run.encode(uint8_images)            # packed uint8[N, 2]
    """
    return run_training(dataset, protocol, TrainConfig(**options), out, data_dir=data_dir, resume=resume, plots=plots,
                        download=download)


def load_run(run_dir):
    """(model, run info, split) of a finished run folder."""
    run_dir = Path(run_dir)
    if not (run_dir / "model.pt").exists():
        raise FileNotFoundError(f"{run_dir} is not a finished pyhash run (no model.pt); train it with `pyhash train`")
    try:
        info = json.loads((run_dir / "run.json").read_text())
        config = TrainConfig(**info["config"])
    except (OSError, ValueError, TypeError, KeyError) as exc:
        raise ValueError(f"{run_dir / 'run.json'} is missing or damaged ({type(exc).__name__}: {exc})") from None
    model = HashNet(make_trunk(config.trunk), config.nbits, config.num_classes)
    try:
        model.load_state_dict(torch.load(run_dir / "model.pt", map_location="cpu", weights_only=True))
    except (RuntimeError, OSError, EOFError, ValueError) as exc:  # torch: a damaged archive, or other weights
        detail = " ".join(str(exc).split())
        detail = detail if len(detail) <= 300 else detail[:297] + "..."
        raise ValueError(f"{run_dir / 'model.pt'} is damaged or does not match the run's config: {detail}") from None
    model.eval()
    return model, info, Split.load(run_dir / "split.npz")


def _check_image_shape(images: np.ndarray, dataset: str) -> None:
    """ValueError unless images [N, H, W(, C)] have the size of ``dataset``'s images."""
    expected = SHAPES["mnist" if dataset.startswith("mnist") else dataset][1]
    got = images.shape[1:]
    if len(expected) == 2 and len(got) == 3 and got[2] == 1:
        got = got[:2]
    if tuple(got) != tuple(expected):
        raise ValueError(f"the run was trained on {dataset} images of shape {list(expected)}, "
                         f"but the input images have shape {list(images.shape[1:])}")


def run_images(info: dict, split: Split, data_dir=None):
    """(images, labels) of a finished run's dataset, normalised as in its training."""
    images, labels, _, _ = prepare(info["dataset"], info["protocol"], data_dir or info["data_dir"], split.seed, info.get("stats"))
    return images, labels
