"""Reference Hamming distance, k-NN and range search: obvious, slow, pure PyTorch.

Inputs are packed codes ``uint8[N, nbits/8]`` tensors on any device; outputs match the kernels'
contracts exactly, including the (distance, position) tie order and the padding.
"""

import torch

INT32_MAX = 2**31 - 1


def _bits(codes: torch.Tensor) -> torch.Tensor:
    shifts = torch.arange(8, dtype=torch.uint8, device=codes.device)
    return ((codes.unsqueeze(-1) >> shifts) & 1).reshape(codes.shape[0], -1).to(torch.int32)


def hamming_distance_ref(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """int32[Na, Nb] distances, by unpacking every bit (memory O(Na * Nb * nbits) per row block)."""
    bb = _bits(b)
    rows = [(_bits(a[i : i + 64]).unsqueeze(1) != bb.unsqueeze(0)).sum(-1) for i in range(0, a.shape[0], 64)]
    if not rows:
        return torch.empty((0, b.shape[0]), dtype=torch.int32, device=a.device)
    return torch.cat(rows).to(torch.int32)


def _sorted_by_distance_then_position(dist: torch.Tensor):
    """Per row: positions ordered by (distance, position), via a stable sort."""
    return torch.sort(dist, dim=1, stable=True)


def hamming_knn_ref(queries: torch.Tensor, database: torch.Tensor, k: int):
    """(D int32[Q, k], I int64[Q, k]) by full stable sort; padded with INT32_MAX / -1."""
    nq, nd = queries.shape[0], database.shape[0]
    D = torch.full((nq, k), INT32_MAX, dtype=torch.int32, device=queries.device)
    I = torch.full((nq, k), -1, dtype=torch.int64, device=queries.device)
    if nq == 0 or nd == 0:
        return D, I
    values, order = _sorted_by_distance_then_position(hamming_distance_ref(queries, database))
    kept = min(k, nd)
    D[:, :kept] = values[:, :kept]
    I[:, :kept] = order[:, :kept]
    return D, I


def hamming_range_ref(queries: torch.Tensor, database: torch.Tensor, max_distance: int):
    """(lims int64[Q+1], D int32[M], I int64[M]) of all d <= max_distance, by (distance, position)."""
    nq = queries.shape[0]
    lims = torch.zeros(nq + 1, dtype=torch.int64, device=queries.device)
    if nq == 0 or database.shape[0] == 0:
        empty = torch.empty(0, dtype=torch.int64, device=queries.device)
        return lims, empty.to(torch.int32), empty
    values, order = _sorted_by_distance_then_position(hamming_distance_ref(queries, database))
    within = values <= max_distance
    lims[1:] = torch.cumsum(within.sum(1), 0)
    return lims, values[within], order[within]
