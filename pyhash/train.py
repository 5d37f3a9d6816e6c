"""Training: the paper's three stages, each switchable for ablation.

1. ``classify``: classification pre-training of the trunk (softmax on trunk features).
2. ``bottleneck``: pre-training of the B-unit hash layer with a softmax on tanh(z).
3. ``hash``: fine-tuning with the fused exponentiated pairwise loss (in-batch pairs, optionally
   against a memory bank of the training set's relaxed codes).

Every epoch appends a line to ``log.jsonl`` and writes ``checkpoint.pt`` atomically, so
``resume=True`` continues a killed run losing at most the current epoch. Checkpoints load with
``weights_only=True``.
"""

import json
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import nn

from pyhash._atomic import atomic_write
from pyhash.models import HashNet, make_trunk
from pyhash.nn import ExpHashLoss

STAGES = ("classify", "bottleneck", "hash")


@dataclass
class TrainConfig:
    nbits: int = 12
    trunk: str = "lenet"
    num_classes: int = 10
    epochs: dict = field(default_factory=lambda: {"classify": 4, "bottleneck": 2, "hash": 4})
    batch_size: int = 128
    lr: float = 1e-3
    weight_decay: float = 5e-4
    lam: float = 2.0
    beta: float = 1.0
    surrogate: str = "tanh"
    weighting: str = "balanced"
    quantization: float = 0.0
    memory_bank: bool = True
    augment: bool = True
    seed: int = 0
    device: str = "cpu"
    progress: bool = True

    def total_epochs(self) -> int:
        return sum(self.epochs.get(s, 0) for s in STAGES)


def _atomic_save(obj, path: Path) -> None:
    with atomic_write(path) as f:
        torch.save(obj, f)


def _batches(n, batch_size, generator):
    order = torch.randperm(n, generator=generator)
    return [order[s : s + batch_size] for s in range(0, n, batch_size)]


def train(config: TrainConfig, images: torch.Tensor, labels: torch.Tensor, out_dir=None, resume: bool = False):
    """Train a HashNet on float images [N, C, H, W] (normalised) and int64 labels [N].

    Returns (model, history). With out_dir, writes config.json, log.jsonl and checkpoint.pt there.
    """
    device = torch.device(config.device)
    torch.manual_seed(config.seed)
    model = HashNet(make_trunk(config.trunk), config.nbits, config.num_classes).to(device)
    images, labels = images.to(device), labels.to(device)
    out = Path(out_dir) if out_dir is not None else None
    start_epoch, history = 0, []
    optimizer, optimizer_state, shuffle_state = None, None, None
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
        (out / "config.json").write_text(json.dumps(asdict(config), indent=2))
        checkpoint = out / "checkpoint.pt"
        if resume and checkpoint.exists():
            state = torch.load(checkpoint, map_location=device, weights_only=True)
            model.load_state_dict(state["model"])
            start_epoch, history = state["epoch"], json.loads(state["history"])
            optimizer_state, shuffle_state = state["optimizer"], state["shuffle_rng"]
            torch.set_rng_state(state["torch_rng"])

    schedule = [s for s in STAGES for _ in range(config.epochs.get(s, 0))]
    ce = nn.CrossEntropyLoss()
    hash_loss = ExpHashLoss(lam=config.lam, beta=config.beta, surrogate=config.surrogate,
                            weighting=config.weighting, quantization=config.quantization)
    bank = None
    generator = torch.Generator().manual_seed(config.seed)
    if shuffle_state is not None:
        generator.set_state(shuffle_state)
    current_stage = None
    for epoch in range(start_epoch, len(schedule)):
        stage = schedule[epoch]
        if stage != current_stage or optimizer is None:
            optimizer = torch.optim.AdamW(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
            # Resuming in the middle of a stage continues its optimizer; a new stage starts afresh.
            if optimizer_state is not None and epoch == start_epoch and schedule[epoch - 1] == stage:
                optimizer.load_state_dict(optimizer_state)
            current_stage = stage
        if stage == "hash" and config.memory_bank:
            bank = _relaxed_codes(model, images)
        model.train()
        started, total, count = time.perf_counter(), 0.0, 0
        batches = _batches(len(labels), config.batch_size, generator)
        if config.progress:
            from tqdm import tqdm

            batches = tqdm(batches, desc=f"{stage} epoch {epoch + 1}/{len(schedule)}", leave=False)
        for idx in batches:
            x, y = images[idx], labels[idx]
            if config.augment:
                x = random_affine(x)
            if stage == "classify":
                loss = ce(model.trunk_classifier(model.trunk(x)), y)
            elif stage == "bottleneck":
                loss = ce(model.classifier(torch.tanh(config.beta * model(x))), y)
            else:
                z = model(x)
                loss = hash_loss(z, y)
                if bank is not None:
                    loss = loss + hash_loss(z, y, bank, labels, y_is_codes=False)
                    with torch.no_grad():
                        bank[idx] = z.detach()
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            total += float(loss.detach()) * len(idx)
            count += len(idx)
            if config.progress:
                batches.set_postfix(loss=f"{total / count:.4f}")
        entry = {"epoch": epoch + 1, "stage": stage, "loss": total / max(count, 1),
                 "seconds": time.perf_counter() - started, "images_per_second": count / (time.perf_counter() - started)}
        history.append(entry)
        if out is not None:
            with open(out / "log.jsonl", "a") as f:
                f.write(json.dumps(entry) + "\n")
            _atomic_save({"model": model.state_dict(), "optimizer": optimizer.state_dict(), "epoch": epoch + 1,
                          "history": json.dumps(history), "torch_rng": torch.get_rng_state(),
                          "shuffle_rng": generator.get_state()}, out / "checkpoint.pt")
    model.eval()
    return model, history


def random_affine(x: torch.Tensor, degrees: float = 10.0, scale: float = 0.1, shift: float = 0.1) -> torch.Tensor:
    """Per-image random rotation, scaling and translation of float[N, C, H, W] (same shape out)."""
    n = x.shape[0]
    angle = (torch.rand(n, device=x.device) * 2 - 1) * degrees * torch.pi / 180
    factor = 1 + (torch.rand(n, device=x.device) * 2 - 1) * scale
    move = (torch.rand(n, 2, device=x.device) * 2 - 1) * shift * 2  # grid units span [-1, 1]
    cos, sin = torch.cos(angle) / factor, torch.sin(angle) / factor
    theta = torch.stack([torch.stack([cos, -sin, move[:, 0]], 1), torch.stack([sin, cos, move[:, 1]], 1)], 1)
    grid = torch.nn.functional.affine_grid(theta, list(x.shape), align_corners=False)
    background = x.amin(dim=(1, 2, 3), keepdim=True)
    return torch.nn.functional.grid_sample(x - background, grid, align_corners=False) + background


@torch.no_grad()
def _relaxed_codes(model: HashNet, images: torch.Tensor, batch_size: int = 1024) -> torch.Tensor:
    was_training = model.training
    model.eval()
    z = torch.cat([model(images[s : s + batch_size]) for s in range(0, len(images), batch_size)])
    model.train(was_training)
    return z


def normalise_images(images: np.ndarray) -> torch.Tensor:
    """uint8 [N, H, W] or [N, H, W, C] -> float32 [N, C, H, W], per-dataset standardised."""
    x = torch.from_numpy(np.ascontiguousarray(images)).float().div_(255.0)
    x = x.unsqueeze(1) if x.dim() == 3 else x.permute(0, 3, 1, 2)
    mean = x.mean(dim=(0, 2, 3), keepdim=True)
    std = x.std(dim=(0, 2, 3), keepdim=True)
    return ((x - mean) / std).contiguous()
