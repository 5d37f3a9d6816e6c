"""Brute-force retrieval metrics: full stable argsort per query (numpy). The oracle for
pyhash.metrics with ties="id"; see docs/metrics.md for the definitions.
"""

import numpy as np


def _relevance(query_labels: np.ndarray, database_labels: np.ndarray) -> np.ndarray:
    """bool[Q, N]: equal class ids (1-D) or at least one shared label (multi-hot 2-D)."""
    if query_labels.ndim == 1:
        return query_labels[:, None] == database_labels[None, :]
    return (query_labels.astype(np.int64) @ database_labels.astype(np.int64).T) > 0


def hamming_distances_np(query_codes: np.ndarray, database_codes: np.ndarray) -> np.ndarray:
    """int[Q, N] Hamming distances by unpacking bits."""
    qb = np.unpackbits(query_codes, axis=1, bitorder="little").astype(np.int32)
    db = np.unpackbits(database_codes, axis=1, bitorder="little").astype(np.int32)
    return qb @ (1 - db).T + (1 - qb) @ db.T


def average_precision_ref(
    query_codes, database_codes, query_labels, database_labels, topk=None, normalize="retrieved"
) -> np.ndarray:
    """float64[Q] AP with ties broken by database position (stable argsort of the distances).

    normalize="retrieved": divide by the relevant items within topk (0 if none);
    normalize="relevant": divide by all relevant items in the database (NaN if none).
    """
    dist = hamming_distances_np(query_codes, database_codes)
    rel = _relevance(query_labels, database_labels)
    n = dist.shape[1]
    k = n if topk is None else min(topk, n)
    out = np.zeros(dist.shape[0])
    for q in range(dist.shape[0]):
        order = np.argsort(dist[q], kind="stable")[:k]
        hit = rel[q, order]
        ranks = np.arange(1, k + 1)
        precisions = np.cumsum(hit)[hit] / ranks[hit]
        denominator = hit.sum() if normalize == "retrieved" else rel[q].sum()
        out[q] = precisions.sum() / denominator if denominator else (0.0 if normalize == "retrieved" else np.nan)
    return out
