"""Hamming kernels (distance, k-NN, range) against the pure-PyTorch reference, on every backend."""

import os
import subprocess
import sys

import numpy as np
import pytest
import torch
from helpers import random_codes
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import pyhash
from pyhash.reference import hamming_distance_ref, hamming_knn_ref, hamming_range_ref

WIDTHS_BITS = [8, 24, 64, 72, 128, 200, 256, 520, 1024, 4096]


def _check_knn(q, db, k):
    D, I = pyhash.hamming_knn(q, db, k)
    Dr, Ir = hamming_knn_ref(q.cpu(), db.cpu(), k)
    assert D.dtype == torch.int32 and I.dtype == torch.int64
    assert D.shape == (q.shape[0], k) and I.shape == (q.shape[0], k)
    torch.testing.assert_close(D.cpu(), Dr, rtol=0, atol=0)
    torch.testing.assert_close(I.cpu(), Ir, rtol=0, atol=0)


def _check_knn_for_each_k(q, db, ks):
    """_check_knn for several k, with one reference computation (for large databases)."""
    Dr, Ir = hamming_knn_ref(q, db, max(ks))
    for k in ks:
        D, I = pyhash.hamming_knn(q, db, k)
        assert torch.equal(D, Dr[:, :k]) and torch.equal(I, Ir[:, :k])


def _check_range(q, db, r):
    lims, D, I = pyhash.hamming_range(q, db, r)
    lr, Dr, Ir = hamming_range_ref(q.cpu(), db.cpu(), r)
    torch.testing.assert_close(lims.cpu(), lr, rtol=0, atol=0)
    torch.testing.assert_close(D.cpu(), Dr.to(torch.int32), rtol=0, atol=0)
    torch.testing.assert_close(I.cpu(), Ir, rtol=0, atol=0)


@pytest.mark.parametrize("nbits", WIDTHS_BITS)
def test_distance_matches_reference(backend, nbits):
    a = random_codes(37, nbits // 8, seed=nbits).to(backend)
    b = random_codes(203, nbits // 8, seed=nbits + 1).to(backend)
    out = pyhash.hamming_distance(a, b)
    assert out.dtype == torch.int32 and out.device.type == backend
    torch.testing.assert_close(out.cpu(), hamming_distance_ref(a.cpu(), b.cpu()), rtol=0, atol=0)


def test_distance_matches_numpy_bit_count():
    """An independent oracle: numpy's unpackbits, little bit order."""
    rng = np.random.default_rng(5)
    a = rng.integers(0, 256, (9, 9), dtype=np.uint8)
    b = rng.integers(0, 256, (11, 9), dtype=np.uint8)
    ua = np.unpackbits(a, axis=1, bitorder="little")
    ub = np.unpackbits(b, axis=1, bitorder="little")
    expected = (ua[:, None, :] != ub[None, :, :]).sum(-1)
    out = pyhash.hamming_distance(a, b)
    assert isinstance(out, np.ndarray)
    np.testing.assert_array_equal(out, expected)


@pytest.mark.parametrize("nbits", WIDTHS_BITS)
@pytest.mark.parametrize("low_entropy", [False, True])
def test_knn_matches_reference(backend, nbits, low_entropy):
    q = random_codes(41, nbits // 8, seed=3, low_entropy=low_entropy).to(backend)
    db = random_codes(1500, nbits // 8, seed=4, low_entropy=low_entropy).to(backend)
    for k in (1, 7, 100, 1500, 1600):
        _check_knn(q, db, k)


@pytest.mark.parametrize("nbits", [8, 64, 72, 256, 520])
@pytest.mark.parametrize("low_entropy", [False, True])
def test_range_matches_reference(backend, nbits, low_entropy):
    q = random_codes(23, nbits // 8, seed=7, low_entropy=low_entropy).to(backend)
    db = random_codes(900, nbits // 8, seed=8, low_entropy=low_entropy).to(backend)
    for r in (0, 1, nbits // 4, nbits // 2, nbits, nbits + 5):
        _check_range(q, db, r)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    nbytes=st.integers(1, 70),
    nq=st.integers(0, 40),
    nd=st.integers(0, 3000),
    k=st.integers(1, 3100),
    radius=st.integers(0, 40),
    low_entropy=st.booleans(),
    seed=st.integers(0, 2**31),
)
def test_random_shapes_match_reference(device, nbytes, nq, nd, k, radius, low_entropy, seed):
    q = random_codes(nq, nbytes, seed=seed, low_entropy=low_entropy).to(device)
    db = random_codes(nd, nbytes, seed=seed + 1, low_entropy=low_entropy).to(device)
    _check_knn(q, db, k)
    _check_range(q, db, radius)


def test_knn_large_database_splits_across_threads(cpu_isa):
    """Few queries and a large database exercise the database-chunked parallel path and merge."""
    q = random_codes(3, 8, seed=11, low_entropy=True)
    db = random_codes(120_000, 8, seed=12, low_entropy=True)
    _check_knn(q, db, 50)
    _check_knn(q, db, 5000)


@pytest.mark.parametrize("nbits", [72, 128, 200, 520, 4096])
@pytest.mark.parametrize("low_entropy", [False, True])
def test_many_blocks_with_partial_tiles(cpu_isa, nbits, low_entropy):
    """Databases of several scan blocks, with code and query counts that fill no tile evenly.

    Covers the candidate search after the first block, which for two or more 64-bit words per
    code is the AMX kernel where the CPU has it (16 x 16 tiles, queries 32 at a time).
    """
    nd = {72: 4133, 128: 4133, 200: 2085, 520: 1049, 4096: 301}[nbits]
    q = random_codes(45, nbits // 8, seed=31, low_entropy=low_entropy)
    db = random_codes(nd, nbits // 8, seed=32, low_entropy=low_entropy)
    for k in (1, 10, 300):
        _check_knn(q, db, k)
    for r in (nbits // 4, nbits * 2 // 5):
        _check_range(q, db, r)


def _best_isa(tmp_path, **env):
    # A fresh process (the AMX permission is decided once per process), outside the source tree.
    code = "import pyhash; print(pyhash._C.build_info()['cpu_isa_best'])"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=tmp_path,
                         env=dict(os.environ, **env), check=True)
    return out.stdout.strip()


def _cpu_flags():
    try:
        with open("/proc/cpuinfo") as f:
            return next((line.split(":", 1)[1].split() for line in f if line.startswith("flags")), [])
    except OSError:
        return []


@pytest.mark.skipif("amx_int8" not in _cpu_flags(), reason="the CPU (or its kernel) has no AMX-INT8")
def test_amx_is_chosen_where_the_cpu_has_it(tmp_path):
    assert _best_isa(tmp_path, PYHASH_NO_AMX="0") == "amx_int8"


def test_no_amx_switch_keeps_amx_off(tmp_path):
    default = _best_isa(tmp_path, PYHASH_NO_AMX="0")
    without = _best_isa(tmp_path, PYHASH_NO_AMX="1")
    assert without != "amx_int8"
    if default == "amx_int8":
        assert without == "avx512_vpopcntdq"
    else:
        assert without == default


@pytest.mark.parametrize("low_entropy", [False, True])
@pytest.mark.parametrize("nbytes", [8, 32])
def test_knn_on_a_large_database_keeps_exact_ties(nbytes, low_entropy):
    """A database far larger than k: ties at the final threshold go to the smallest positions."""
    q = random_codes(12, nbytes, seed=21, low_entropy=low_entropy)
    db = random_codes(210_000, nbytes, seed=22, low_entropy=low_entropy)
    _check_knn_for_each_k(q, db, (1, 10, 100))


@pytest.fixture
def one_thread():
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


@pytest.mark.parametrize("low_entropy", [False, True])
@pytest.mark.parametrize("nbytes", [8, 32])
def test_knn_with_a_sampled_threshold_matches_reference(cpu_isa, one_thread, nbytes, low_entropy):
    """k >= 64 on chunks of >= 65,536 codes: the CPU caps each query's threshold from a strided
    sample first (docs/search.md). On one thread, 200,000 codes make two such chunks."""
    q = random_codes(8, nbytes, seed=41, low_entropy=low_entropy)
    db = random_codes(200_000, nbytes, seed=42, low_entropy=low_entropy)
    _check_knn_for_each_k(q, db, (64, 100, 300))


def test_knn_rescans_when_the_sample_misleads(one_thread):
    """Only the sampled positions (every 32nd) of the first ten are near query 0, so its sampled
    cap admits just those ten: fewer than k, and the query must be scanned again uncapped."""
    q = random_codes(3, 8, seed=43)
    db = (~q[0:1]).repeat(200_000, 1)
    db[torch.arange(10) * 32] = q[0]
    db[5000:5200] = q[1]
    D, I = pyhash.hamming_knn(q, db, 100)
    Dr, Ir = hamming_knn_ref(q, db, 100)
    assert torch.equal(D, Dr) and torch.equal(I, Ir)
    assert torch.equal(I[0, 10:], torch.arange(5000, 5090))


def test_ties_break_by_ascending_position(device):
    db = torch.zeros((10, 4), dtype=torch.uint8, device=device)
    db[::2, 0] = 1  # even positions at distance 1 from the zero query, odd at 0
    q = torch.zeros((1, 4), dtype=torch.uint8, device=device)
    D, I = pyhash.hamming_knn(q, db, 7)
    assert D.cpu().tolist() == [[0, 0, 0, 0, 0, 1, 1]]
    assert I.cpu().tolist() == [[1, 3, 5, 7, 9, 0, 2]]


def test_padding_when_k_exceeds_database(device):
    db = random_codes(3, 8, seed=1).to(device)
    D, I = pyhash.hamming_knn(db, db, 5)
    assert (I[:, 3:] == -1).all() and (D[:, 3:] == 2**31 - 1).all()
    assert (D[:, 0] == 0).all()


def test_empty_inputs(device):
    q = random_codes(4, 8, seed=1).to(device)
    empty = q[:0]
    D, I = pyhash.hamming_knn(q, empty, 3)
    assert (I == -1).all() and (D == 2**31 - 1).all()
    D, I = pyhash.hamming_knn(empty, q, 3)
    assert D.shape == (0, 3)
    lims, D, I = pyhash.hamming_range(q, empty, 3)
    assert lims.tolist() == [0] * 5 and D.numel() == 0
    assert pyhash.hamming_distance(empty, q).shape == (0, 4)


def test_non_contiguous_inputs(device):
    base = random_codes(60, 16, seed=2).to(device)
    q = base[::3, :8]  # strided rows and columns
    db = base.t().contiguous().t()[:, 8:]  # column-major
    assert not q.is_contiguous() and not db.is_contiguous()
    _check_knn(q, db, 9)
    _check_range(q, db, 20)


def test_results_are_deterministic(device):
    q = random_codes(16, 8, seed=1, low_entropy=True).to(device)
    db = random_codes(5000, 8, seed=2, low_entropy=True).to(device)
    first = pyhash.hamming_knn(q, db, 300)
    for _ in range(3):
        again = pyhash.hamming_knn(q, db, 300)
        assert torch.equal(first[0], again[0]) and torch.equal(first[1], again[1])


@pytest.mark.cuda
def test_cpu_and_cuda_agree_bit_for_bit():
    q = random_codes(50, 12, seed=1, low_entropy=True)
    db = random_codes(20_000, 12, seed=2, low_entropy=True)
    for k in (1, 10, 1000):
        Dc, Ic = pyhash.hamming_knn(q, db, k)
        Dg, Ig = pyhash.hamming_knn(q.cuda(), db.cuda(), k)
        assert torch.equal(Dc, Dg.cpu()) and torch.equal(Ic, Ig.cpu())
    lc = pyhash.hamming_range(q, db, 30)
    lg = pyhash.hamming_range(q.cuda(), db.cuda(), 30)
    for a, b in zip(lc, lg):
        assert torch.equal(a, b.cpu())


@pytest.mark.cuda
@pytest.mark.parametrize("nbytes", [8, 16, 24, 32, 65])
@pytest.mark.parametrize("k", [1, 10, 128, 129])
def test_cuda_knn_on_a_large_database_matches_cpu(nbytes, k):
    """Databases of >= 2^18 codes and k <= 128 take the CUDA candidate route; k = 129 does not."""
    q = random_codes(40, nbytes, seed=nbytes)
    db = random_codes(300_000, nbytes, seed=k)
    Dc, Ic = pyhash.hamming_knn(q, db, k)
    Dg, Ig = pyhash.hamming_knn(q.cuda(), db.cuda(), k)
    assert torch.equal(Dc, Dg.cpu()) and torch.equal(Ic, Ig.cpu())


@pytest.mark.cuda
def test_cuda_candidate_overflow_falls_back_exactly():
    """Queries whose candidates overflow (heavy ties) are recomputed; the others are not affected."""
    clustered = random_codes(300_000, 8, seed=3, low_entropy=True)
    spread = random_codes(300_000, 8, seed=4)
    db = torch.cat([clustered, spread])
    q = torch.cat([clustered[:20], spread[:20]])[torch.randperm(40, generator=torch.Generator().manual_seed(0))]
    for k in (1, 10, 100):
        Dc, Ic = pyhash.hamming_knn(q, db, k)
        Dg, Ig = pyhash.hamming_knn(q.cuda(), db.cuda(), k)
        assert torch.equal(Dc, Dg.cpu()) and torch.equal(Ic, Ig.cpu())


def test_numpy_in_numpy_out():
    q = random_codes(5, 8, seed=1).numpy()
    D, I = pyhash.hamming_knn(q, q, 2)
    assert isinstance(D, np.ndarray) and isinstance(I, np.ndarray)
    lims, D, I = pyhash.hamming_range(q, q, 3)
    assert all(isinstance(x, np.ndarray) for x in (lims, D, I))


@pytest.mark.parametrize(
    "make, error, match",
    [
        (lambda q: (q.float(), q, 1), TypeError, "uint8"),
        (lambda q: (q[0], q, 1), ValueError, "2-D"),
        (lambda q: (q, q[:, :4], 1), ValueError, "bits per code"),
        (lambda q: (q, q, 0), ValueError, "k must be >= 1"),
        (lambda q: (q, q, -3), ValueError, "k must be >= 1"),
        (lambda q: (q, q, 2.5), TypeError, "k must be an integer"),
        (lambda q: (q, q, True), TypeError, "k must be an integer"),
        (lambda q: ([[1, 2]], q, 1), TypeError, "torch.Tensor or numpy"),
        (lambda q: (torch.zeros((2, 513), dtype=torch.uint8), torch.zeros((2, 513), dtype=torch.uint8), 1),
         ValueError, "1 to 512 bytes"),
    ],
)
def test_bad_input_raises_clear_errors(make, error, match):
    q = random_codes(4, 8, seed=1)
    with pytest.raises(error, match=match):
        pyhash.hamming_knn(*make(q))


def test_bad_input_to_raw_ops_raises_not_crashes():
    q = random_codes(4, 8, seed=1)
    with pytest.raises(RuntimeError, match="uint8"):
        torch.ops.pyhash.hamming_knn(q.float(), q, 1)
    with pytest.raises(RuntimeError, match="k must be >= 1"):
        torch.ops.pyhash.hamming_knn(q, q, 0)
    with pytest.raises(RuntimeError, match="bits per code"):
        torch.ops.pyhash.hamming_distance(q, q[:, :2])
    with pytest.raises(RuntimeError, match="max_distance"):
        torch.ops.pyhash.hamming_range(q, q, -1)


@pytest.mark.cuda
def test_mismatched_devices_raise():
    q = random_codes(4, 8, seed=1)
    with pytest.raises(ValueError, match="cuda"):
        pyhash.hamming_knn(q, q.cuda(), 1)


def test_negative_radius_raises():
    q = random_codes(4, 8, seed=1)
    with pytest.raises(ValueError, match="max_distance must be >= 0"):
        pyhash.hamming_range(q, q, -1)


def test_opcheck(device):
    q = random_codes(6, 9, seed=1).to(device)
    db = random_codes(40, 9, seed=2).to(device)
    torch.library.opcheck(torch.ops.pyhash.hamming_distance.default, (q, db))
    torch.library.opcheck(torch.ops.pyhash.hamming_knn.default, (q, db, 5))
    # hamming_range has a data-dependent output size; opcheck's fake-tensor checks cover it too.
    torch.library.opcheck(torch.ops.pyhash.hamming_range.default, (q, db, 30))
