"""Hash networks: a trunk (feature extractor) plus a hash head (Linear to B units).

Training uses the relaxed outputs z = head(trunk(x)); encoding uses sign(z) with 0 -> +1, packed
by :func:`pyhash.pack_codes`.
"""

import contextlib

import torch
from torch import nn

from pyhash.codes import pack_codes


class LeNetTrunk(nn.Module):
    """LeNet-style trunk for 28x28 greyscale images: float[N, 1, 28, 28] -> float[N, 500]."""

    out_features = 500

    def __init__(self):
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(1, 32, 5, padding=2),
            nn.BatchNorm2d(32),
            nn.ReLU(inplace=True),
            nn.MaxPool2d(2),
            nn.Conv2d(32, 64, 5, padding=2),
            nn.BatchNorm2d(64),
            nn.ReLU(inplace=True),
            nn.MaxPool2d(2),
            nn.Flatten(),
            nn.Linear(64 * 7 * 7, self.out_features),
            nn.ReLU(inplace=True),
            nn.Dropout(0.3),
        )

    def forward(self, x):
        return self.features(x)


class SmallVGGTrunk(nn.Module):
    """Small VGG-style trunk for 28x28 greyscale images (two 3x3 conv pairs with batch norm):
    float[N, 1, 28, 28] -> float[N, 256]. About 1.7x LeNet's compute, more accurate."""

    out_features = 256

    def __init__(self):
        super().__init__()
        self.features = nn.Sequential(
            _conv_bn(1, 32),
            _conv_bn(32, 32),
            nn.MaxPool2d(2),
            _conv_bn(32, 64),
            _conv_bn(64, 64),
            nn.MaxPool2d(2),
            nn.Flatten(),
            nn.Linear(64 * 7 * 7, self.out_features, bias=False),
            nn.BatchNorm1d(self.out_features),
            nn.ReLU(inplace=True),
            nn.Dropout(0.3),
        )

    def forward(self, x):
        return self.features(x)


def _conv_bn(cin, cout):
    return nn.Sequential(nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True))


class _Residual(nn.Module):
    def __init__(self, channels):
        super().__init__()
        self.body = nn.Sequential(_conv_bn(channels, channels), _conv_bn(channels, channels))

    def forward(self, x):
        return x + self.body(x)


class FastResNetTrunk(nn.Module):
    """Small residual net for 32x32 colour images (the fast CIFAR-10 family): float[N, 3, 32, 32]
    -> float[N, 512]."""

    out_features = 512

    def __init__(self):
        super().__init__()
        self.features = nn.Sequential(
            _conv_bn(3, 64),
            _conv_bn(64, 128),
            nn.MaxPool2d(2),
            _Residual(128),
            _conv_bn(128, 256),
            nn.MaxPool2d(2),
            _conv_bn(256, 512),
            nn.MaxPool2d(2),
            _Residual(512),
            nn.AdaptiveMaxPool2d(1),
            nn.Flatten(),
        )

    def forward(self, x):
        return self.features(x)


def torchvision_trunk(name: str, weights=None):
    """Any torchvision classification model by name, with its classifier removed."""
    import torchvision

    model = torchvision.models.get_model(name, weights=weights)
    for attr in ("fc", "classifier", "head", "heads"):
        layer = getattr(model, attr, None)
        if layer is None:
            continue
        last = layer[-1] if isinstance(layer, nn.Sequential) else layer
        if not isinstance(last, nn.Linear):
            continue
        out_features = last.in_features
        if isinstance(layer, nn.Sequential):
            layer[-1] = nn.Identity()
        else:
            setattr(model, attr, nn.Identity())
        model.out_features = out_features
        return model
    raise ValueError(f"cannot find the classifier of torchvision model {name!r}")


def make_trunk(name: str) -> nn.Module:
    """'lenet' or 'vggsmall' (28x28 greyscale), 'fastresnet' (32x32 colour) or a torchvision
    model name."""
    if name == "lenet":
        return LeNetTrunk()
    if name == "vggsmall":
        return SmallVGGTrunk()
    if name == "fastresnet":
        return FastResNetTrunk()
    return torchvision_trunk(name)


@contextlib.contextmanager
def eval_mode(model: nn.Module):
    """Puts ``model`` in eval mode for the block and restores its train/eval mode afterwards."""
    was_training = model.training
    model.eval()
    try:
        yield model
    finally:
        model.train(was_training)


class HashNet(nn.Module):
    """trunk -> Linear(B) hash head; ``classifier`` (num_classes) is used by the pre-training
    stages only."""

    def __init__(self, trunk: nn.Module, nbits: int, num_classes: int):
        super().__init__()
        if isinstance(nbits, bool) or not isinstance(nbits, int) or not 8 <= nbits <= 4096:
            raise ValueError(f"nbits must be an integer from 8 to 4096, got {nbits!r}")
        self.trunk = trunk
        self.nbits = nbits
        self.trunk_classifier = nn.Linear(trunk.out_features, num_classes)
        self.hash = nn.Linear(trunk.out_features, nbits)
        self.classifier = nn.Linear(nbits, num_classes)

    def forward(self, x):
        """float[N, B] relaxed codes z."""
        return self.hash(self.trunk(x))

    @property
    def code_bytes(self) -> int:
        """Bytes per packed code: B rounded up to whole bytes (padding bits are always 0)."""
        return (self.nbits + 7) // 8

    @torch.no_grad()
    def encode(self, x, batch_size: int = 512) -> torch.Tensor:
        """Packed codes uint8[N, ceil(B/8)] of images x (float, normalised), in eval mode.

        Bit j is sign(z_j) with 0 -> +1; when B is not a multiple of 8 the padding bits are 0 in
        every code, so Hamming distances are those of the B real bits.
        """
        pad = self.code_bytes * 8 - self.nbits
        codes = []
        with eval_mode(self):
            for s in range(0, len(x), batch_size):
                z = self(x[s : s + batch_size])
                if pad:
                    z = torch.nn.functional.pad(z, (0, pad), value=-1.0)
                codes.append(pack_codes(z))
        return torch.cat(codes) if codes else torch.empty((0, self.code_bytes), dtype=torch.uint8)
