"""pyhash.metrics: hand-computed cases, brute-force agreement, exact tie averaging, errors."""

import itertools

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import pyhash.metrics as M
from pyhash.reference.metrics import average_precision_ref, hamming_distances_np


def _codes_at(distances, nbytes=1):
    """Database codes at the given Hamming distances from the all-zero query."""
    codes = np.zeros((len(distances), nbytes), dtype=np.uint8)
    for i, d in enumerate(distances):
        bits = np.zeros(nbytes * 8, dtype=np.uint8)
        bits[:d] = 1
        codes[i] = np.packbits(bits, bitorder="little")
    return np.zeros((1, nbytes), dtype=np.uint8), codes


def test_hand_computed_average_precision():
    # distances 0, 1, 1, 2 with relevance 1, 0, 1, 1 (query label 7)
    q, db = _codes_at([0, 1, 1, 2])
    ql, dl = np.array([7]), np.array([7, 3, 7, 7])
    # ties by id: ranking 0,1,2,3 -> precisions 1/1, 2/3, 3/4
    expected_id = (1 + 2 / 3 + 3 / 4) / 3
    assert M.mean_average_precision(q, db, ql, dl) == pytest.approx(expected_id)
    # ties averaged: items 1 (irrelevant) and 2 (relevant) swap with probability 1/2
    expected_avg = (1 + 0.5 * (2 / 2 + 3 / 4) + 0.5 * (2 / 3 + 3 / 4)) / 3
    assert M.mean_average_precision(q, db, ql, dl, ties="average") == pytest.approx(expected_avg)
    # topk = 2, normalised by hits within topk (id order: items 0, 1 -> one hit, precision 1)
    assert M.mean_average_precision(q, db, ql, dl, topk=2) == pytest.approx(1.0)
    # normalised by all 3 relevant items instead
    assert M.mean_average_precision(q, db, ql, dl, topk=2, normalize="relevant") == pytest.approx(1 / 3)
    assert M.precision_at_k(q, db, ql, dl, 2) == pytest.approx(0.5)
    assert M.precision_at_k(q, db, ql, dl, 2, ties="average") == pytest.approx(0.75)
    assert M.recall_at_k(q, db, ql, dl, 3) == pytest.approx(2 / 3)
    assert M.precision_within_radius(q, db, ql, dl, max_distance=1) == pytest.approx(2 / 3)
    radius, precision, recall = M.pr_curve(q, db, ql, dl)
    assert radius.tolist() == list(range(9))
    np.testing.assert_allclose(precision[:3], [1, 2 / 3, 3 / 4])
    np.testing.assert_allclose(recall[:3], [1 / 3, 2 / 3, 1])


def test_query_without_relevant_items():
    q, db = _codes_at([0, 1, 2])
    q = np.repeat(q, 2, 0)
    ql, dl = np.array([1, 5]), np.array([1, 2, 1])  # query 2's label 5 is nowhere
    ap = M.average_precision(q, db, ql, dl)
    assert ap[0] == pytest.approx((1 + 2 / 3) / 2) and np.isnan(ap[1])
    assert M.mean_average_precision(q, db, ql, dl) == pytest.approx(ap[0] / 2)
    assert M.mean_average_precision(q, db, ql, dl, empty="exclude") == pytest.approx(ap[0])
    assert M.recall_at_k(q, db, ql, dl, 2, empty="exclude") == pytest.approx(0.5)
    # a query retrieving nothing within the radius scores 0, or is excluded
    assert M.precision_within_radius(q, db, ql, dl, max_distance=0) == pytest.approx(0.5)


def _random_case(seed, nq=12, nd=200, nbytes=1, classes=3, multilabel=False):
    rng = np.random.default_rng(seed)
    base = rng.integers(0, 256, (4, nbytes), dtype=np.uint8)  # few distinct codes: heavy ties
    q = base[rng.integers(0, 4, nq)]
    db = base[rng.integers(0, 4, nd)] ^ (rng.random((nd, nbytes)) < 0.05).astype(np.uint8)
    if multilabel:
        ql = (rng.random((nq, classes)) < 0.4).astype(np.uint8)
        dl = (rng.random((nd, classes)) < 0.4).astype(np.uint8)
    else:
        ql, dl = rng.integers(0, classes, nq), rng.integers(0, classes, nd)
    return q, db, ql, dl


@settings(max_examples=40, deadline=None)
@given(
    seed=st.integers(0, 2**31),
    nd=st.integers(1, 300),
    nbytes=st.integers(1, 9),
    topk=st.one_of(st.none(), st.integers(1, 320)),
    normalize=st.sampled_from(["retrieved", "relevant"]),
    multilabel=st.booleans(),
)
def test_ties_by_id_match_bruteforce(seed, nd, nbytes, topk, normalize, multilabel):
    q, db, ql, dl = _random_case(seed, nd=nd, nbytes=nbytes, multilabel=multilabel)
    _assert_ap_matches_bruteforce(q, db, ql, dl, topk, normalize)


def _assert_ap_matches_bruteforce(q, db, ql, dl, topk, normalize):
    """Id-order AP equals the argsort reference on every query with a relevant item; returns how
    many queries have one (the others are NaN)."""
    ours = M.average_precision(q, db, ql, dl, topk=topk, normalize=normalize)
    ref = average_precision_ref(q, db, ql, dl, topk=topk, normalize=normalize)
    has_relevant = ~np.isnan(M.average_precision(q, db, ql, dl))
    np.testing.assert_allclose(ours[has_relevant], np.nan_to_num(ref[has_relevant]), rtol=1e-12, atol=1e-12)
    return int(has_relevant.sum())


@pytest.mark.parametrize("nd, topk, multilabel", [(2500, None, False), (3073, 1500, True), (1025, 1024, False)])
def test_ties_by_id_match_bruteforce_over_several_blocks(nd, topk, multilabel):
    """Databases longer than the CPU kernel's 1,024-code block, where ranks carry across blocks."""
    q, db, ql, dl = _random_case(nd, nq=30, nd=nd, nbytes=2, multilabel=multilabel)
    for normalize in ("retrieved", "relevant"):
        assert _assert_ap_matches_bruteforce(q, db, ql, dl, topk, normalize) >= 20


def _mean_over_permutations(q, db, ql, dl, permutations, **kw):
    """Mean of id-order AP over database orders: each order is one tie ordering."""
    values = []
    for perm in permutations:
        perm = np.asarray(perm)
        values.append(M.average_precision(q, db[perm], ql, dl[perm], ties="id", **kw))
    return np.mean(values, axis=0)


@pytest.mark.parametrize("topk, normalize", [(None, "retrieved"), (3, "retrieved"), (4, "relevant"), (2, "retrieved")])
def test_average_ties_equal_enumeration_of_all_orders(topk, normalize):
    q, db = _codes_at([1, 0, 1, 1, 2, 1, 2])
    ql, dl = np.array([1]), np.array([1, 0, 0, 1, 1, 1, 0])
    expected = _mean_over_permutations(q, db, ql, dl, itertools.permutations(range(7)), topk=topk, normalize=normalize)
    ours = M.average_precision(q, db, ql, dl, ties="average", topk=topk, normalize=normalize)
    np.testing.assert_allclose(ours, expected, rtol=1e-12)


def test_average_ties_match_sampled_orders():
    q, db, ql, dl = _random_case(3, nq=5, nd=120)
    rng = np.random.default_rng(0)
    perms = [rng.permutation(len(db)) for _ in range(400)]
    for topk in (None, 30):
        sampled = _mean_over_permutations(q, db, ql, dl, perms, topk=topk)
        ours = M.average_precision(q, db, ql, dl, ties="average", topk=topk)
        # standard error of a mean of 400 APs in [0, 1] is below 0.025
        np.testing.assert_allclose(ours, sampled, atol=0.03)


def test_precision_and_recall_at_k_match_bruteforce():
    q, db, ql, dl = _random_case(5, nd=150)
    dist = hamming_distances_np(q, db)
    rel = ql[:, None] == dl[None, :]
    for k in (1, 10, 150, 400):
        order = np.argsort(dist, axis=1, kind="stable")[:, :k]
        hits = np.take_along_axis(rel, order, 1).sum(1)
        assert M.precision_at_k(q, db, ql, dl, k) == pytest.approx((hits / min(k, 150)).mean())
        assert M.recall_at_k(q, db, ql, dl, k) == pytest.approx((hits / rel.sum(1)).mean())


def test_pr_curve_by_rank_and_radius_are_consistent():
    q, db, ql, dl = _random_case(9, nd=100)
    ks, precision, recall = M.pr_curve(q, db, ql, dl, by="rank", points=[1, 5, 100])
    assert ks.tolist() == [1, 5, 100] and recall[-1] == pytest.approx(1.0)
    radius, precision_r, recall_r = M.pr_curve(q, db, ql, dl, by="radius")
    assert np.all(np.diff(recall_r) >= -1e-12) and recall_r[-1] == pytest.approx(1.0)
    for ties in ("id", "average"):
        ks, precision, recall = M.pr_curve(q, db, ql, dl, by="rank", points=[3, 1, 40], ties=ties)
        assert ks.tolist() == [3, 1, 40]
        for k, p, r in zip(ks, precision, recall):
            assert p == M.precision_at_k(q, db, ql, dl, int(k), ties=ties)
            assert r == M.recall_at_k(q, db, ql, dl, int(k), ties=ties)


@pytest.mark.parametrize("points, error", [(5, ValueError), ([], ValueError), ("10", ValueError),
                                           ([[1, 2]], ValueError), ([0, 5], ValueError), ([2.5], TypeError)])
def test_pr_curve_by_rank_rejects_bad_points(points, error):
    q, db, ql, dl = _random_case(9, nd=50)
    with pytest.raises(error, match="points"):
        M.pr_curve(q, db, ql, dl, by="rank", points=points)


def test_torch_inputs_and_multilabel():
    q, db, ql, dl = _random_case(11, multilabel=True, classes=70)  # > 64 classes: two mask words
    a = M.mean_average_precision(torch.from_numpy(q), torch.from_numpy(db), torch.from_numpy(ql), torch.from_numpy(dl))
    b = float(np.nan_to_num(average_precision_ref(q, db, ql, dl)).mean())
    assert a == pytest.approx(b)


@pytest.mark.parametrize(
    "call, error, match",
    [
        (lambda q, db, ql, dl: M.mean_average_precision(q, db[:0], ql, dl[:0]), ValueError, "empty"),
        (lambda q, db, ql, dl: M.mean_average_precision(q, db, ql, dl, ties="random"), ValueError, "ties"),
        (lambda q, db, ql, dl: M.mean_average_precision(q, db, ql, dl, normalize="k"), ValueError, "normalize"),
        (lambda q, db, ql, dl: M.mean_average_precision(q, db, ql, dl, empty="nan"), ValueError, "empty"),
        (lambda q, db, ql, dl: M.mean_average_precision(q, db, ql[:2], dl), ValueError, "query_labels"),
        (lambda q, db, ql, dl: M.mean_average_precision(q, db, ql, np.ones((len(dl), 3))), ValueError, "same kind"),
        (lambda q, db, ql, dl: M.mean_average_precision(q, db, ql, dl, topk=0), ValueError, "topk"),
        (lambda q, db, ql, dl: M.precision_at_k(q, db, ql, dl, 1.5), TypeError, "k must be an integer"),
        (lambda q, db, ql, dl: M.mean_average_precision(q, db[:, :0], ql, dl), ValueError, "bytes per code"),
        (lambda q, db, ql, dl: M.mean_average_precision(q, db, np.full((len(ql), 3), 2), np.ones((len(dl), 3), int)),
         ValueError, "query_labels .multi-hot. must hold only 0 and 1"),
        (lambda q, db, ql, dl: M.mean_average_precision(q, db, np.ones((len(ql), 3)), np.full((len(dl), 3), 0.5)),
         ValueError, "database_labels .multi-hot. must hold only 0 and 1"),
    ],
)
def test_bad_arguments(call, error, match):
    q, db, ql, dl = _random_case(1)
    with pytest.raises(error, match=match):
        call(q, db, ql, dl)


@pytest.mark.cuda
def test_cpu_and_cuda_agree():
    q, db, ql, dl = _random_case(2, nq=40, nd=3000, nbytes=8)
    cpu = M.retrieval_stats(q, db, ql, dl, topk=100)
    gpu = M.retrieval_stats(torch.from_numpy(q).cuda(), torch.from_numpy(db).cuda(), torch.from_numpy(ql).cuda(), torch.from_numpy(dl).cuda(), topk=100)
    for a, b in [(cpu.total, gpu.total), (cpu.relevant, gpu.relevant), (cpu.hits, gpu.hits)]:
        np.testing.assert_array_equal(a, b)
    np.testing.assert_allclose(cpu.precision_sum, gpu.precision_sum, rtol=1e-12)


def test_opcheck(device):
    q, db, ql, dl = _random_case(4, nq=6, nd=50, nbytes=3)
    args = [torch.from_numpy(x).to(device) for x in (q, db, ql, dl)]
    torch.library.opcheck(torch.ops.pyhash.hamming_retrieval_stats.default, (*args, 20))
