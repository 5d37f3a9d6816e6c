"""Pure-PyTorch reference implementations (the oracles the kernels are tested against)."""

from pyhash.reference.hamming import hamming_distance_ref, hamming_knn_ref, hamming_range_ref

__all__ = ["hamming_distance_ref", "hamming_knn_ref", "hamming_range_ref"]
