"""Input builders shared by tests and benchmarks."""

import numpy as np
import torch


def random_codes(n: int, nbytes: int, seed: int, low_entropy: bool = False) -> torch.Tensor:
    """uint8[n, nbytes] codes; low_entropy draws from 8 distinct codes plus 1-bit noise (many ties)."""
    rng = np.random.default_rng(seed)
    if not low_entropy:
        return torch.from_numpy(rng.integers(0, 256, (n, nbytes), dtype=np.uint8))
    base = rng.integers(0, 256, (8, nbytes), dtype=np.uint8)
    codes = base[rng.integers(0, 8, n)]
    flip = rng.random(n) < 0.3
    bit = rng.integers(0, nbytes * 8, n)
    rows = np.nonzero(flip)[0]
    codes[rows, bit[rows] // 8] ^= (1 << (bit[rows] % 8)).astype(np.uint8)
    return torch.from_numpy(codes)
