"""Exact retrieval metrics over Hamming rankings (definitions in docs/metrics.md).

All functions take packed codes (``uint8[Q, nbits/8]`` queries, ``uint8[N, nbits/8]`` database,
tensors on CPU/CUDA or numpy arrays) and labels: int64 class ids ``[Q]``/``[N]`` (relevant iff
equal) or multi-hot ``[Q, C]``/``[N, C]`` (relevant iff they share a label). Database position
is the item id.

Every convention that moves published numbers is a named argument:

- ``ties="id"``: equal distances are ranked by ascending database position (deterministic).
  ``ties="average"``: the expected value over all orderings of each tie group, exactly, in
  closed form.
- ``normalize="retrieved"`` (default): AP divides by the relevant items retrieved within topk
  (the common hashing convention). ``"relevant"``: by all relevant items in the database.
- ``empty="zero"`` (default): a query with no relevant item in the database scores 0.
  ``"exclude"``: it is left out of the mean.
"""

import math

import numpy as np
import torch

import pyhash._extension  # noqa: F401  (registers the ops)
from pyhash._inputs import check_count, codes_tensor, to_tensor
from pyhash.ops.hamming import checked_pair

_TIES = ("id", "average")
_NORMALIZE = ("retrieved", "relevant")
_EMPTY = ("zero", "exclude")


def _choice(value, name, allowed):
    if value not in allowed:
        raise ValueError(f"{name} must be one of {allowed}, got {value!r}")
    return value


def _labels(labels, name, rows, device) -> torch.Tensor:
    """int64 class ids [rows] or multi-hot rows packed to int64 bit masks [rows, words]."""
    t = to_tensor(labels, name).to(device)
    if t.dim() not in (1, 2) or t.shape[0] != rows:
        raise ValueError(f"{name} must be [{rows}] class ids or [{rows}, C] multi-hot rows, got shape {tuple(t.shape)}")
    if t.dim() == 1:
        if t.is_floating_point() or t.dtype == torch.bool:
            raise TypeError(f"{name} (class ids) must be integers, got {t.dtype}")
        return t.to(torch.int64).contiguous()
    if t.numel() and not bool(((t == 0) | (t == 1)).all()):
        raise ValueError(f"{name} (multi-hot) must hold only 0 and 1")
    hot = t.to(torch.int64)
    words = (hot.shape[1] + 63) // 64
    hot = torch.nn.functional.pad(hot, (0, words * 64 - hot.shape[1])).reshape(rows, words, 64)
    return (hot << torch.arange(64, device=device)).sum(2).contiguous()


class RetrievalStats:
    """Per-query histograms ``total``/``relevant`` (int64[Q, nbits+1], numpy) of the Hamming
    ranking, plus id-order sums for one topk. Built by :func:`retrieval_stats`."""

    def __init__(self, total, relevant, precision_sum, hits, topk):
        self.total, self.relevant = total, relevant
        self.precision_sum, self.hits, self.topk = precision_sum, hits, topk

    @property
    def num_relevant(self) -> np.ndarray:
        return self.relevant.sum(1)

    @property
    def database_size(self) -> int:
        return int(self.total[0].sum()) if len(self.total) else 0


def retrieval_stats(query_codes, database_codes, query_labels, database_labels, topk=None) -> RetrievalStats:
    """Run the retrieval-statistics kernel once (CPU or CUDA, chunked over queries)."""
    q, d = checked_pair(query_codes, database_codes, "query_codes", "database_codes")
    if d.shape[0] == 0:
        raise ValueError("the database is empty")
    ql = _labels(query_labels, "query_labels", q.shape[0], q.device)
    dl = _labels(database_labels, "database_labels", d.shape[0], q.device)
    if ql.dim() != dl.dim():
        raise ValueError("query_labels and database_labels must be the same kind (class ids or multi-hot)")
    if ql.dim() == 2 and ql.shape[1] != dl.shape[1]:
        raise ValueError("query_labels and database_labels have different numbers of classes")
    k = d.shape[0] if topk is None else min(check_count(topk, "topk", 1), d.shape[0])
    parts = []
    chunk = max(1, (1 << 28) // max(1, d.shape[0]))  # bounded memory for large databases
    for s in range(0, q.shape[0], chunk):
        parts.append([t.cpu().numpy() for t in torch.ops.pyhash.hamming_retrieval_stats(q[s : s + chunk], d, ql[s : s + chunk], dl, k)])
    if not parts:
        bins = q.shape[1] * 8 + 1
        z = np.zeros((0, bins), dtype=np.int64)
        return RetrievalStats(z, z.copy(), np.zeros(0), np.zeros(0, dtype=np.int64), k)
    return RetrievalStats(*[np.concatenate([p[i] for p in parts]) for i in range(4)], k)


def _harmonic(n: int) -> np.ndarray:
    """H[0..n] with H[0] = 0."""
    return np.concatenate([[0.0], np.cumsum(1.0 / np.arange(1, n + 1))])


def _expected_precision_sum(R, T, B, Rb, P, H):
    """E[sum over the relevant items among the first P of a tie group of their precision].

    Group of T items, R relevant, after B items of which Rb are relevant; positions uniformly
    random. Position p holds a relevant item with probability R/T and, given that, has
    1 + (p-1)(R-1)/(T-1) relevant items at or before it within the group, so the sum is
    (R/T) sum_{p<=P} (Rb + 1 + (p-1) a)/(B + p) with a = (R-1)/(T-1): harmonic numbers.
    """
    R, T, B, Rb, P = (np.asarray(x, dtype=np.float64) for x in (R, T, B, Rb, P))
    a = np.where(T > 1, (R - 1) / np.maximum(T - 1, 1), 0.0)
    Bi, Pi = B.astype(np.int64), P.astype(np.int64)
    harm = H[Bi + Pi] - H[Bi]
    value = (R / np.maximum(T, 1)) * ((Rb + 1 - a * (B + 1)) * harm + a * P)
    return np.where((R > 0) & (P > 0), value, 0.0)


def _average_ties(stats: RetrievalStats, normalize: str):
    """(precision sums, hit counts) expected over tie orders; for normalize='retrieved' with a
    tie group cut by topk, the exact expectation of the ratio, via the hypergeometric law of the
    number of relevant items that land inside topk."""
    T, R, k = stats.total.astype(np.float64), stats.relevant.astype(np.float64), stats.topk
    n = stats.database_size
    H = _harmonic(n)
    B = np.cumsum(T, 1) - T
    Rb = np.cumsum(R, 1) - R
    P = np.clip(k - B, 0, T)
    full = P == T
    sums_full = _expected_precision_sum(np.where(full, R, 0), T, B, Rb, np.where(full, P, 0), H).sum(1)
    hits_full = np.where(full, R, 0).sum(1)
    boundary = (P > 0) & (P < T)  # at most one group per query
    ap_num = sums_full.copy()
    expected_ratio = np.full(len(T), np.nan)
    for q in np.nonzero(boundary.any(1))[0]:
        g = int(np.argmax(boundary[q]))
        t, r, b, rb, p = T[q, g], R[q, g], B[q, g], Rb[q, g], P[q, g]
        if normalize == "relevant":
            ap_num[q] += _expected_precision_sum(r, t, b, rb, p, H)
            continue
        total = 0.0
        h_low, h_high = int(max(0, p - (t - r))), int(min(p, r))
        for h in range(h_low, h_high + 1):
            log_pmf = _log_comb(r, h) + _log_comb(t - r, p - h) - _log_comb(t, p)
            s = _expected_precision_sum(h, p, b, rb, p, H)  # h relevant spread over the p slots
            hits = hits_full[q] + h
            total += math.exp(log_pmf) * ((sums_full[q] + s) / hits if hits else 0.0)
        expected_ratio[q] = total
    return ap_num, hits_full, expected_ratio


def _log_comb(n, k):
    return math.lgamma(n + 1) - math.lgamma(k + 1) - math.lgamma(n - k + 1)


def average_precision(
    query_codes, database_codes, query_labels, database_labels, *, topk=None, ties="id", normalize="retrieved"
) -> np.ndarray:
    """float64[Q] average precision of each query over the Hamming ranking (NaN for a query
    with no relevant item in the database; see ``empty`` of :func:`mean_average_precision`)."""
    _choice(ties, "ties", _TIES)
    _choice(normalize, "normalize", _NORMALIZE)
    stats = retrieval_stats(query_codes, database_codes, query_labels, database_labels, topk)
    relevant_total = stats.num_relevant.astype(np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        if ties == "id":
            denominator = stats.hits if normalize == "retrieved" else relevant_total
            ap = np.where(denominator > 0, stats.precision_sum / np.maximum(denominator, 1), 0.0)
        else:
            num, hits_full, ratio = _average_ties(stats, normalize)
            if normalize == "relevant":
                ap = np.where(relevant_total > 0, num / np.maximum(relevant_total, 1), 0.0)
            else:
                ap = np.where(np.isnan(ratio), np.where(hits_full > 0, num / np.maximum(hits_full, 1), 0.0), ratio)
    return np.where(relevant_total > 0, ap, np.nan)


def mean_average_precision(
    query_codes,
    database_codes,
    query_labels,
    database_labels,
    *,
    topk=None,
    ties="id",
    normalize="retrieved",
    empty="zero",
) -> float:
    """mAP over the Hamming ranking; topk=None ranks the whole database (mAP@ALL)."""
    _choice(empty, "empty", _EMPTY)
    ap = average_precision(query_codes, database_codes, query_labels, database_labels, topk=topk, ties=ties, normalize=normalize)
    return _mean(ap, empty)


def _mean(values: np.ndarray, empty: str) -> float:
    if empty == "exclude":
        kept = values[~np.isnan(values)]
        return float(kept.mean()) if kept.size else 0.0
    return float(np.nan_to_num(values, nan=0.0).mean()) if values.size else 0.0


def _hits_at(stats: RetrievalStats, ties: str) -> np.ndarray:
    if ties == "id":
        return stats.hits.astype(np.float64)
    T, R = stats.total.astype(np.float64), stats.relevant.astype(np.float64)
    B = np.cumsum(T, 1) - T
    P = np.clip(stats.topk - B, 0, T)
    return (R * np.where(T > 0, P / np.maximum(T, 1), 0.0)).sum(1)


def precision_at_k(query_codes, database_codes, query_labels, database_labels, k, *, ties="id") -> float:
    """Mean over queries of (relevant items among the first k) / k (k capped at the database size)."""
    _choice(ties, "ties", _TIES)
    stats = retrieval_stats(query_codes, database_codes, query_labels, database_labels, check_count(k, "k", 1))
    return _precision_at(stats, ties)


def recall_at_k(query_codes, database_codes, query_labels, database_labels, k, *, ties="id", empty="zero") -> float:
    """Mean over queries of (relevant items among the first k) / (relevant items in the database)."""
    _choice(ties, "ties", _TIES)
    _choice(empty, "empty", _EMPTY)
    stats = retrieval_stats(query_codes, database_codes, query_labels, database_labels, check_count(k, "k", 1))
    return _recall_at(stats, ties, empty)


def _precision_at(stats: RetrievalStats, ties: str) -> float:
    return float((_hits_at(stats, ties) / stats.topk).mean()) if len(stats.total) else 0.0


def _recall_at(stats: RetrievalStats, ties: str, empty: str) -> float:
    relevant = stats.num_relevant.astype(np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        recall = np.where(relevant > 0, _hits_at(stats, ties) / relevant, np.nan)
    return _mean(recall, empty)


def precision_within_radius(
    query_codes, database_codes, query_labels, database_labels, max_distance=2, *, empty="zero"
) -> float:
    """Mean over queries of the precision of the items at distance <= max_distance. A query that
    retrieves nothing scores 0 (empty="zero") or is left out (empty="exclude")."""
    _choice(empty, "empty", _EMPTY)
    r = check_count(max_distance, "max_distance", 0)
    stats = retrieval_stats(query_codes, database_codes, query_labels, database_labels)
    retrieved = stats.total[:, : r + 1].sum(1).astype(np.float64)
    good = stats.relevant[:, : r + 1].sum(1)
    with np.errstate(invalid="ignore", divide="ignore"):
        precision = np.where(retrieved > 0, good / np.maximum(retrieved, 1), np.nan)
    return _mean(precision, empty)


def pr_curve(query_codes, database_codes, query_labels, database_labels, *, by="radius", points=None, ties="id"):
    """Precision-recall curve, averaged over queries.

    by="radius": one point per Hamming radius r = 0..nbits (items at distance <= r); returns
    (radius, precision, recall) numpy arrays. A query retrieving nothing at r has precision 0.
    by="rank": one point per rank k in ``points`` (default: 10 log-spaced ranks); returns
    (k, precision@k, recall@k).
    """
    _choice(by, "by", ("radius", "rank"))
    if by == "radius":
        stats = retrieval_stats(query_codes, database_codes, query_labels, database_labels)
        retrieved = np.cumsum(stats.total, 1).astype(np.float64)
        good = np.cumsum(stats.relevant, 1).astype(np.float64)
        relevant = stats.num_relevant.astype(np.float64)[:, None]
        with np.errstate(invalid="ignore", divide="ignore"):
            precision = np.where(retrieved > 0, good / np.maximum(retrieved, 1), 0.0).mean(0)
            recall = np.where(relevant > 0, good / np.maximum(relevant, 1), 0.0).mean(0)
        return np.arange(stats.total.shape[1]), precision, recall
    _choice(ties, "ties", _TIES)
    ks = _rank_points(points, codes_tensor(database_codes, "database_codes").shape[0])
    precision, recall = [], []
    for k in ks:  # one kernel pass per rank gives both precision@k and recall@k
        stats = retrieval_stats(query_codes, database_codes, query_labels, database_labels, int(k))
        precision.append(_precision_at(stats, ties))
        recall.append(_recall_at(stats, ties, "zero"))
    return ks, np.array(precision), np.array(recall)


def _rank_points(points, database_size: int) -> np.ndarray:
    """int64 ranks for pr_curve(by="rank"): the given ones, or 10 log-spaced ranks."""
    if points is None:
        return np.unique(np.geomspace(1, max(1, database_size), 10).astype(np.int64))
    if isinstance(points, (str, bytes)) or np.ndim(points) != 1 or len(points) == 0:
        raise ValueError(f"points must be a non-empty 1-D sequence of ranks k >= 1, got {points!r}")
    return np.array([check_count(k, "each rank in points", 1) for k in points], dtype=np.int64)


@torch.library.register_fake("pyhash::hamming_retrieval_stats")
def _retrieval_stats_fake(queries, database, query_labels, database_labels, topk):
    bins = queries.shape[1] * 8 + 1
    return (
        queries.new_empty((queries.shape[0], bins), dtype=torch.int64),
        queries.new_empty((queries.shape[0], bins), dtype=torch.int64),
        queries.new_empty((queries.shape[0],), dtype=torch.float64),
        queries.new_empty((queries.shape[0],), dtype=torch.int64),
    )
