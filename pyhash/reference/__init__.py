"""Pure-PyTorch reference implementations (the oracles the kernels are tested against)."""

from pyhash.reference.hamming import hamming_distance_ref, hamming_knn_ref, hamming_range_ref
from pyhash.reference.loss import exp_pair_loss_ref

__all__ = ["exp_pair_loss_ref", "hamming_distance_ref", "hamming_knn_ref", "hamming_range_ref"]
