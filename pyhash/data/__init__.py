"""Datasets. The package bundles the 10,000 MNIST test images so demos run with no download."""

import hashlib
from pathlib import Path

import numpy as np

BUNDLED_MNIST = Path(__file__).with_name("mnist_test.npz")
BUNDLED_MNIST_SHA256 = "b8d30bd15bf8aec9eb69ca5b88ee72078b29f27777d7b2a2d53a588f90a19fec"


def bundled_mnist_test():
    """The bundled MNIST test set: images ``uint8[10000, 28, 28]`` and labels ``int64[10000]``."""
    if not BUNDLED_MNIST.exists():
        raise FileNotFoundError(
            f"the bundled MNIST sample is missing: looked for {BUNDLED_MNIST}. Reinstall pyhash."
        )
    digest = hashlib.sha256(BUNDLED_MNIST.read_bytes()).hexdigest()
    if digest != BUNDLED_MNIST_SHA256:
        raise ValueError(f"the bundled MNIST sample {BUNDLED_MNIST} is corrupted (sha256 {digest}). Reinstall pyhash.")
    with np.load(BUNDLED_MNIST) as archive:
        return archive["x_test"], archive["y_test"].astype(np.int64)
