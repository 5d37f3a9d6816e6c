"""Hamming distance, k-NN and range search over packed codes (ops ``pyhash::hamming_*``).

All functions take packed codes ``uint8[N, nbits/8]`` as torch tensors (CPU or CUDA) or numpy
arrays and return the same kind. Ties are broken by ascending database position on every backend.
"""

import torch

import pyhash._extension  # noqa: F401  (registers the ops)
from pyhash._inputs import check_count, codes_tensor, is_numpy, like_input, same_device


def checked_pair(queries, database, qname="queries", dname="database"):
    """Two packed-code inputs as tensors of the same width and device (clear errors otherwise)."""
    q = codes_tensor(queries, qname)
    d = codes_tensor(database, dname)
    if q.shape[1] != d.shape[1]:
        raise ValueError(f"{qname} have {q.shape[1] * 8} bits per code but {dname} have {d.shape[1] * 8}")
    same_device(q, d, qname, dname)
    return q, d


def hamming_distance(a, b):
    """Distance matrix ``int32[Na, Nb]``: ``out[i, j] = popcount(a[i] ^ b[j])``.

    a: uint8[Na, nbits/8], b: uint8[Nb, nbits/8], same device.
    """
    ta, tb = checked_pair(a, b, "a", "b")
    out = torch.ops.pyhash.hamming_distance(ta, tb)
    return like_input(out, is_numpy(a))


def hamming_knn(queries, database, k):
    """Exact k nearest database codes of each query.

    Returns ``(D int32[Q, k], I int64[Q, k])`` sorted by (distance, position) ascending; I holds
    database positions. Rows are padded with distance INT32_MAX and position -1 when the database
    has fewer than k codes.
    """
    q, d = checked_pair(queries, database)
    k = check_count(k, "k", 1)
    D, I = torch.ops.pyhash.hamming_knn(q, d, k)
    as_numpy = is_numpy(queries)
    return like_input(D, as_numpy), like_input(I, as_numpy)


def hamming_range(queries, database, max_distance):
    """All database codes within ``max_distance`` (inclusive) of each query.

    Returns ``(lims int64[Q+1], D int32[M], I int64[M])``: query i's results are
    ``D[lims[i]:lims[i+1]]`` and positions ``I[lims[i]:lims[i+1]]``, sorted by (distance, position).
    Unlike FAISS, whose radius is strict (``d < radius``), pyhash includes ``d == max_distance``.
    """
    q, d = checked_pair(queries, database)
    max_distance = check_count(max_distance, "max_distance", 0)
    lims, D, I = torch.ops.pyhash.hamming_range(q, d, max_distance)
    as_numpy = is_numpy(queries)
    return like_input(lims, as_numpy), like_input(D, as_numpy), like_input(I, as_numpy)


@torch.library.register_fake("pyhash::hamming_distance")
def _hamming_distance_fake(a, b):
    return a.new_empty((a.shape[0], b.shape[0]), dtype=torch.int32)


@torch.library.register_fake("pyhash::hamming_knn")
def _hamming_knn_fake(queries, database, k):
    return (
        queries.new_empty((queries.shape[0], k), dtype=torch.int32),
        queries.new_empty((queries.shape[0], k), dtype=torch.int64),
    )


@torch.library.register_fake("pyhash::hamming_range")
def _hamming_range_fake(queries, database, max_distance):
    total = torch.library.get_ctx().new_dynamic_size()
    return (
        queries.new_empty((queries.shape[0] + 1,), dtype=torch.int64),
        queries.new_empty((total,), dtype=torch.int32),
        queries.new_empty((total,), dtype=torch.int64),
    )
