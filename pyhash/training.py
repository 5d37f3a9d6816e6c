"""Training: the paper's three stages, each switchable for ablation.

1. ``classify``: classification pre-training of the trunk (softmax on trunk features).
2. ``bottleneck``: pre-training of the B-unit hash layer with a softmax on tanh(z).
3. ``hash``: fine-tuning with the fused exponentiated pairwise loss (in-batch pairs, optionally
   against a memory bank of the training set's relaxed codes).

Batches come from a torch DataLoader with torchvision augmentation. Each stage starts a fresh
optimizer (AdamW or SGD) whose learning rate follows the stage's schedule. Every epoch writes
``checkpoint.pt`` and then ``log.jsonl`` (one line per epoch) atomically, so ``resume=True``
continues a killed run losing at most the current epoch. Checkpoints load with ``weights_only=True``.

With validation images, each epoch also reports a validation score (accuracy in the pre-training
stages, mAP against the training codes in the hash stage); ``select="best-val"`` keeps the
hash-stage epoch with the best validation mAP. The test queries are never used.

With ``ema > 0``, an exponential moving average of the weights (and batch-norm statistics) is
kept over the last stage's steps; it is what validation scores, what ``best-val`` keeps and what
the returned model holds.
"""

import copy
import json
import math
import numbers
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import nn

from pyhash._atomic import atomic_write, write_json_atomic, write_text_atomic
from pyhash.models import HashNet, eval_mode, make_trunk
from pyhash.nn import ExpHashLoss
from pyhash.reference.loss import SURROGATES, WEIGHTINGS

STAGES = ("classify", "bottleneck", "hash")
OPTIMIZERS = ("adamw", "sgd")
SCHEDULES = ("cosine", "constant")
SELECTIONS = ("last", "best-val")
WARMUP_FRACTION = 0.1  # of each stage's steps, for the cosine schedule


@dataclass
class TrainConfig:
    nbits: int = 12
    trunk: str = "lenet"
    num_classes: int = 10
    epochs: dict = field(default_factory=lambda: {"classify": 4, "bottleneck": 2, "hash": 4})
    batch_size: int = 128
    optimizer: str = "adamw"
    lr: float = 1e-3
    momentum: float = 0.9  # SGD only
    weight_decay: float = 5e-4
    schedule: str = "cosine"
    label_smoothing: float = 0.0  # pre-training stages
    lam: float = 2.0
    beta: float = 1.0
    surrogate: str = "tanh"
    weighting: str = "balanced"
    quantization: float = 0.0
    memory_bank: bool = True
    augment: bool = True
    val_fraction: float = 0.0
    select: str = "last"
    ema: float = 0.0  # decay of the weight average over the last stage; 0 = off
    amp: bool = False
    channels_last: bool = False
    compile: bool = False
    num_workers: int = 0
    seed: int = 0
    device: str = "cpu"
    progress: bool = True

    def __post_init__(self):
        unknown = set(self.epochs) - set(STAGES)
        if unknown:
            raise ValueError(f"unknown stage(s) {sorted(unknown)} in epochs; the stages are {', '.join(STAGES)}")
        if any(not isinstance(e, int) or e < 0 for e in self.epochs.values()):
            raise ValueError(f"epochs must be integers >= 0, got {self.epochs}")
        if self.total_epochs() == 0:
            raise ValueError("every stage has 0 epochs: nothing to train")
        for name, value, allowed in (("optimizer", self.optimizer, OPTIMIZERS), ("schedule", self.schedule, SCHEDULES),
                                     ("select", self.select, SELECTIONS), ("surrogate", self.surrogate, SURROGATES),
                                     ("weighting", self.weighting, WEIGHTINGS)):
            if value not in allowed:
                raise ValueError(f"{name} must be one of {', '.join(allowed)}, got {value!r}")
        self.nbits = _integer("nbits", self.nbits, 8, 4096)
        self.num_classes = _integer("num_classes", self.num_classes, 2)
        self.batch_size = _integer("batch_size", self.batch_size, 2, why=" (the loss needs pairs)")
        self.num_workers = _integer("num_workers", self.num_workers, 0)
        self.seed = _integer("seed", self.seed, 0, 2**63 - 1)
        self.lr = _real("lr", self.lr, 0.0, math.inf, low_open=True)
        self.lam = _real("lam", self.lam, 0.0, math.inf, low_open=True)
        self.beta = _real("beta", self.beta, 0.0, math.inf, low_open=True)
        self.weight_decay = _real("weight_decay", self.weight_decay, 0.0, math.inf)
        self.momentum = _real("momentum", self.momentum, 0.0, 1.0, high_open=True)
        self.label_smoothing = _real("label_smoothing", self.label_smoothing, 0.0, 1.0, high_open=True)
        self.quantization = _real("quantization", self.quantization, 0.0, math.inf)
        self.val_fraction = _real("val_fraction", self.val_fraction, 0.0, 1.0, high_open=True)
        self.ema = _real("ema", self.ema, 0.0, 1.0, high_open=True, why=" (0 turns the weight average off)")
        try:
            device_type = torch.device(self.device).type
        except (RuntimeError, TypeError):
            device_type = None
        if device_type not in ("cpu", "cuda"):
            raise ValueError(f"device must be 'cpu' or 'cuda' (e.g. 'cuda:1'), got {self.device!r}")
        if self.select == "best-val" and self.val_fraction == 0.0:
            raise ValueError("select='best-val' needs a validation split (val_fraction > 0)")

    def total_epochs(self) -> int:
        return sum(self.epochs.get(s, 0) for s in STAGES)

    def last_stage(self) -> str:
        return [s for s in STAGES if self.epochs.get(s, 0) > 0][-1]


RESUME_MAY_CHANGE = ("progress", "num_workers", "device", "compile")  # options that leave the results as they are


def check_resume_config(out_dir, config: TrainConfig) -> None:
    """ValueError if ``out_dir/config.json`` (the interrupted run's options) differs from
    ``config`` in an option that changes the results; resuming with those would mix two runs."""
    path = Path(out_dir) / "config.json"
    if not path.exists():
        return
    saved = json.loads(path.read_text())
    current = json.loads(json.dumps(asdict(config)))
    changed = sorted(k for k in set(saved) | set(current) if k not in RESUME_MAY_CHANGE and saved.get(k) != current.get(k))
    if changed:
        listed = ", ".join(f"{k}={saved.get(k)!r} (now {current.get(k)!r})" for k in changed)
        raise ValueError(f"cannot resume {out_dir}: it was started with other options: {listed}. "
                         "Resume with the original options, or train into a new folder.")


def _integer(name: str, value, low: int, high: int = None, why: str = "") -> int:
    """``value`` as an int (numpy integers too) from low to high, or a ValueError."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise ValueError(f"{name} must be an integer, got {value!r}")
    value = int(value)
    if value < low or (high is not None and value > high):
        bounds = f">= {low}" if high is None else f"from {low} to {high}"
        raise ValueError(f"{name} must be {bounds}{why}, got {value}")
    return value


def _real(name: str, value, low: float, high: float, low_open: bool = False, high_open: bool = False,
          why: str = "") -> float:
    """``value`` as a float, finite and in the interval from low to high (open at an end when
    asked), or a ValueError."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise ValueError(f"{name} must be a number, got {value!r}")
    value = float(value)
    inside = (value > low if low_open else value >= low) and (value < high if high_open else value <= high)
    if not (math.isfinite(value) and inside):
        interval = f"{'(' if low_open else '['}{low:g}, {high:g}{')' if high_open or math.isinf(high) else ']'}"
        raise ValueError(f"{name} must be a finite number in {interval}{why}, got {value}")
    return value


def _atomic_save(obj, path: Path) -> None:
    with atomic_write(path) as f:
        torch.save(obj, f)


class _IndexedImages(torch.utils.data.Dataset):
    """(image, label, position) triples; the position updates the memory bank."""

    def __init__(self, images, labels, transform=None):
        self.images, self.labels, self.transform = images, labels, transform

    def __len__(self):
        return len(self.labels)

    def __getitem__(self, i):
        x = self.images[i]
        return (self.transform(x) if self.transform is not None else x), self.labels[i], i


def augmentation(images: torch.Tensor):
    """The torchvision augmentation for normalised images float[N, C, H, W].

    Greyscale: random affine (+-10 degrees, +-10 % scale and shift), filled with the background
    (the darkest value). Colour: 4-pixel reflect-padded random crop and horizontal flip.
    """
    from torchvision.transforms import v2

    if images.shape[1] == 1:
        return v2.RandomAffine(degrees=10, translate=(0.1, 0.1), scale=(0.9, 1.1), fill=float(images.amin()))
    return v2.Compose([v2.RandomCrop(images.shape[-1], padding=4, padding_mode="reflect"), v2.RandomHorizontalFlip()])


def _learning_rate(config: TrainConfig, step: int, total_steps: int) -> float:
    if config.schedule == "constant":
        return config.lr
    warmup = max(1, int(WARMUP_FRACTION * total_steps))
    if step < warmup:
        return config.lr * (step + 1) / warmup
    progress = (step - warmup) / max(1, total_steps - warmup)
    return config.lr * 0.5 * (1.0 + math.cos(math.pi * progress))


def _weight_average(config: TrainConfig, model: nn.Module):
    """An exponential moving average of model's weights and buffers (torch.optim.swa_utils).

    Update t (from 0) uses the decay min(ema, (1 + t) / (10 + t)), so the first steps, far from
    the final weights, fade out quickly.
    """
    from torch.optim.swa_utils import AveragedModel

    @torch.no_grad()
    def average(averaged: list, current: list, updates: torch.Tensor) -> None:
        if not torch.is_floating_point(averaged[0]):  # counters such as num_batches_tracked
            torch._foreach_copy_(averaged, current)
            return
        decay = min(config.ema, (1.0 + int(updates)) / (10.0 + int(updates)))
        torch._foreach_lerp_(averaged, current, 1.0 - decay)

    return AveragedModel(model, multi_avg_fn=average, use_buffers=True)


def _make_optimizer(config: TrainConfig, model: nn.Module):
    if config.optimizer == "sgd":
        return torch.optim.SGD(model.parameters(), lr=config.lr, momentum=config.momentum,
                               weight_decay=config.weight_decay, nesterov=True)
    return torch.optim.AdamW(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)


def train(config: TrainConfig, images: torch.Tensor, labels: torch.Tensor, out_dir=None, resume: bool = False,
          val_images=None, val_labels=None):
    """Train a HashNet on float images [N, C, H, W] (normalised) and int64 labels [N].

    val_images / val_labels (optional, same kinds) give a validation score every epoch and are
    needed by ``select="best-val"``. Returns (model, history). With out_dir, writes config.json,
    log.jsonl and checkpoint.pt there.
    """
    if images.dim() != 4 or labels.shape != (len(images),):
        raise ValueError(f"images must be [N, C, H, W] and labels [N], got {tuple(images.shape)} and {tuple(labels.shape)}")
    if len(images) < 2:
        raise ValueError(f"need at least 2 training images, got {len(images)}")
    if not images.is_floating_point():
        raise ValueError(f"images must be float, normalised as by normalise_images, got {images.dtype}")
    if labels.is_floating_point() or labels.dtype == torch.bool:
        raise ValueError(f"labels must be integer class ids, got {labels.dtype}")
    softmax_stages = [s for s in ("classify", "bottleneck") if config.epochs.get(s, 0) > 0]
    if softmax_stages and (int(labels.min()) < 0 or int(labels.max()) >= config.num_classes):
        raise ValueError(f"the {' and '.join(softmax_stages)} stage(s) need class ids in 0..{config.num_classes - 1} "
                         f"(num_classes), got {int(labels.min())}..{int(labels.max())}")
    validating = val_images is not None and len(val_images) > 0
    if config.select == "best-val" and not validating:
        raise ValueError("select='best-val' needs validation images")
    device = torch.device(config.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("device='cuda' but torch sees no CUDA GPU")
    torch.manual_seed(config.seed)
    model = HashNet(make_trunk(config.trunk), config.nbits, config.num_classes).to(device)
    memory_format = torch.channels_last if config.channels_last else torch.contiguous_format
    model = model.to(memory_format=memory_format)
    trunk = torch.compile(model.trunk) if config.compile else model.trunk
    out = Path(out_dir) if out_dir is not None else None
    start_epoch, history, best = 0, [], None
    optimizer_state, shuffle_state, average_state = None, None, None
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
        checkpoint = out / "checkpoint.pt"
        if resume and checkpoint.exists():
            check_resume_config(out, config)
        write_json_atomic(out / "config.json", asdict(config))
        if resume and checkpoint.exists():
            state = torch.load(checkpoint, map_location=device, weights_only=True)
            model.load_state_dict(state["model"])
            start_epoch, history = state["epoch"], json.loads(state["history"])
            optimizer_state, shuffle_state = state["optimizer"], state["shuffle_rng"]
            best = state.get("best")
            average_state = state.get("average")
            torch.set_rng_state(state["torch_rng"])

    generator = torch.Generator().manual_seed(config.seed)
    if shuffle_state is not None:
        generator.set_state(shuffle_state)
    loader = torch.utils.data.DataLoader(
        _IndexedImages(images, labels, augmentation(images) if config.augment else None),
        batch_size=config.batch_size, shuffle=True, generator=generator, num_workers=config.num_workers,
        drop_last=len(images) % config.batch_size == 1,  # a batch of 1 has no pairs and upsets batch norm
        pin_memory=device.type == "cuda",
    )
    device_labels = labels.to(device)
    # The memory bank and the validation encode all training images each epoch: move them once.
    device_images = images.to(device) if config.memory_bank or validating else None
    if validating:
        val_images = val_images.to(device)
    schedule = [s for s in STAGES for _ in range(config.epochs.get(s, 0))]
    ce = nn.CrossEntropyLoss(label_smoothing=config.label_smoothing)
    hash_loss = ExpHashLoss(lam=config.lam, beta=config.beta, surrogate=config.surrogate,
                            weighting=config.weighting, quantization=config.quantization)
    autocast = torch.autocast(device.type, dtype=torch.bfloat16, enabled=config.amp)
    optimizer, bank, average = None, None, None
    if config.ema > 0 and average_state is not None:  # the checkpoint was written in the last stage
        average = _weight_average(config, model)
        average.load_state_dict(average_state)
    for epoch in range(start_epoch, len(schedule)):
        stage = schedule[epoch]
        stage_start = schedule.index(stage)
        if optimizer is None or schedule[epoch - 1] != stage:
            optimizer = _make_optimizer(config, model)
            # Resuming in the middle of a stage continues its optimizer; a new stage starts afresh.
            if optimizer_state is not None and epoch == start_epoch and epoch > stage_start:
                optimizer.load_state_dict(optimizer_state)
        if config.ema > 0 and stage == config.last_stage() and average is None:
            average = _weight_average(config, model)
        stage_steps = config.epochs[stage] * len(loader)
        if stage == "hash" and config.memory_bank:
            bank = relaxed_codes(model, device_images, memory_format)
        model.train()
        started, total, count = time.perf_counter(), 0.0, 0
        progress = None
        if config.progress:
            from tqdm import tqdm

            progress = tqdm(total=len(loader.dataset), unit="img", unit_scale=True, leave=False,
                            desc=f"{stage} epoch {epoch + 1}/{len(schedule)}")
        for step, (x, y, idx) in enumerate(loader, start=(epoch - stage_start) * len(loader)):
            for group in optimizer.param_groups:
                group["lr"] = _learning_rate(config, step, stage_steps)
            x = x.to(device, non_blocking=True).contiguous(memory_format=memory_format)
            y = y.to(device, non_blocking=True)
            with autocast:
                features = trunk(x)
                if stage == "classify":
                    loss = ce(model.trunk_classifier(features).float(), y)
                elif stage == "bottleneck":
                    loss = ce(model.classifier(torch.tanh(config.beta * model.hash(features))).float(), y)
                else:
                    z = model.hash(features)
            if stage == "hash":
                z = z.float()
                loss = hash_loss(z, y)
                if bank is not None:
                    loss = loss + hash_loss(z, y, bank, device_labels, y_is_codes=False)
                    with torch.no_grad():
                        bank[idx.to(device)] = z.detach()
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            if average is not None:
                average.update_parameters(model)
            total += float(loss.detach()) * len(y)
            count += len(y)
            if progress is not None:
                progress.set_postfix(loss=f"{total / count:.4f}", refresh=False)
                progress.update(len(y))
        if progress is not None:
            progress.close()
        seconds = time.perf_counter() - started
        entry = {"epoch": epoch + 1, "stage": stage, "loss": total / max(count, 1), "seconds": seconds,
                 "images_per_second": count / seconds, "lr": optimizer.param_groups[0]["lr"]}
        scored = average.module if average is not None else model
        if validating:
            entry.update(validation_score(scored, stage, device_images, labels, val_images, val_labels, device, memory_format))
            if config.select == "best-val" and stage == "hash" and (best is None or entry["val_mAP"] > best["score"]):
                best = {"score": entry["val_mAP"], "epoch": epoch + 1, "model": copy.deepcopy(scored.state_dict())}
        history.append(entry)
        if out is not None:
            _atomic_save({"model": model.state_dict(), "optimizer": optimizer.state_dict(), "epoch": epoch + 1,
                          "history": json.dumps(history), "torch_rng": torch.get_rng_state(),
                          "shuffle_rng": generator.get_state(), "best": best,
                          "average": average.state_dict() if average is not None else None}, out / "checkpoint.pt")
            # The log is rewritten from the history after the checkpoint, so a killed run's log
            # never holds a partial line or an epoch that resume will repeat.
            write_text_atomic(out / "log.jsonl", "".join(json.dumps(h) + "\n" for h in history))
    if config.select == "best-val" and best is not None:
        model.load_state_dict(best["model"])
        history[best["epoch"] - 1]["selected"] = True
    elif average is not None:
        model.load_state_dict(average.module.state_dict())
    model.eval()
    return model, history


@torch.no_grad()
def validation_score(model: HashNet, stage: str, images, labels, val_images, val_labels, device,
                     memory_format=torch.contiguous_format) -> dict:
    """Validation accuracy (pre-training stages) or mAP@ALL of the validation images against the
    training images' codes (hash stage)."""
    from pyhash import metrics

    with eval_mode(model):
        if stage == "hash":
            query, database = model.encode(val_images.to(device)), model.encode(images.to(device))
            return {"val_mAP": metrics.mean_average_precision(query.cpu(), database.cpu(), val_labels.cpu(), labels.cpu())}
        correct = 0
        for s in range(0, len(val_images), 1024):
            x = val_images[s : s + 1024].to(device).contiguous(memory_format=memory_format)
            features = model.trunk(x)
            logits = model.trunk_classifier(features) if stage == "classify" else model.classifier(torch.tanh(model.hash(features)))
            correct += int((logits.argmax(1).cpu() == val_labels[s : s + 1024].cpu()).sum())
        return {"val_accuracy": correct / len(val_images)}


@torch.no_grad()
def relaxed_codes(model: HashNet, images: torch.Tensor, memory_format=torch.contiguous_format,
                  batch_size: int = 1024) -> torch.Tensor:
    """float32[N, B] relaxed codes z of images, computed in eval mode."""
    with eval_mode(model):
        return torch.cat([model(images[s : s + batch_size].contiguous(memory_format=memory_format)).float()
                          for s in range(0, len(images), batch_size)])


def _unit_scale_nchw(images: np.ndarray) -> torch.Tensor:
    """uint8 [N, H, W] or [N, H, W, C] -> float32 [N, C, H, W] on the 0..1 scale (a view for C > 1)."""
    x = torch.from_numpy(np.ascontiguousarray(images)).float().div_(255.0)
    return x.unsqueeze(1) if x.dim() == 3 else x.permute(0, 3, 1, 2)


def _channel_stats(x: torch.Tensor) -> dict:
    return {"mean": x.mean(dim=(0, 2, 3)).tolist(), "std": x.std(dim=(0, 2, 3)).tolist()}


def image_stats(images: np.ndarray) -> dict:
    """Per-channel mean and std of uint8 images [N, H, W] or [N, H, W, C], on the 0..1 scale."""
    return _channel_stats(_unit_scale_nchw(images))


def normalise_images(images: np.ndarray, stats: dict = None) -> torch.Tensor:
    """uint8 [N, H, W] or [N, H, W, C] -> float32 [N, C, H, W], standardised per channel with
    ``stats`` (from :func:`image_stats`; by default the images' own)."""
    if images.dtype != np.uint8 or images.ndim not in (3, 4):
        raise ValueError(f"images must be uint8 [N, H, W] or [N, H, W, C], got {images.dtype} {images.shape}")
    x = _unit_scale_nchw(images)
    stats = stats or _channel_stats(x)
    if len(stats["mean"]) != x.shape[1]:
        raise ValueError(f"the images have {x.shape[1]} channel(s) but the normalisation has {len(stats['mean'])}")
    mean = torch.tensor(stats["mean"]).view(1, -1, 1, 1)
    std = torch.tensor(stats["std"]).view(1, -1, 1, 1)
    return ((x - mean) / std).contiguous()
