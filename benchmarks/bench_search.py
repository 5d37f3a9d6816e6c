"""HammingSearch vs faiss.IndexBinaryFlat (CPU) and vs eager PyTorch (GPU), same run, same data.

CPU: N = 1,000,000 codes, Q = 1000 queries, nbits 64 and 256, k = 1, 10, 100, on 1 thread and on
all threads. GPU: N = 10,000,000, Q = 10,000, 64 bits, k = 10. Results are checked for equality
before timing.
"""

import os

import numpy as np
import pytest
import torch
from conftest import median_seconds, record
from helpers import random_codes

import pyhash

N_CPU, Q_CPU = 1_000_000, 1000
N_GPU, Q_GPU = 10_000_000, 10_000
_CACHE = {}


def _data(n, q, nbytes, seed=0):
    key = (n, q, nbytes, seed)
    if key not in _CACHE:
        _CACHE.clear()
        _CACHE[key] = (random_codes(n, nbytes, seed=seed), random_codes(q, nbytes, seed=seed + 1))
    return _CACHE[key]


@pytest.mark.parametrize("nthreads", [1, os.cpu_count()], ids=["1thread", "allthreads"])
@pytest.mark.parametrize("k", [1, 10, 100])
@pytest.mark.parametrize("nbits", [64, 256])
@pytest.mark.parametrize("impl", ["pyhash", "faiss"])
def test_knn_cpu(benchmark, threads, impl, nbits, k, nthreads):
    faiss = pytest.importorskip("faiss")
    db, q = _data(N_CPU, Q_CPU, nbits // 8)
    torch.set_num_threads(nthreads)
    faiss.omp_set_num_threads(nthreads)
    if impl == "pyhash":
        index = pyhash.HammingSearch(nbits)
        index.add(db)
        run = lambda: index.search(q, k)  # noqa: E731
    else:
        index = faiss.IndexBinaryFlat(nbits)
        index.add(db.numpy())
        qn = q.numpy()
        run = lambda: index.search(qn, k)  # noqa: E731
    D, I = run()
    Dr, _ = faiss_reference(db, q, k)
    np.testing.assert_array_equal(np.asarray(D), Dr)
    benchmark.group = f"knn-cpu-{nbits}bit-k{k}-{nthreads}t"
    benchmark.pedantic(run, rounds=3, iterations=1, warmup_rounds=0)
    case = f"{nbits} bits, k={k}, {nthreads} thread{'s' if nthreads > 1 else ''}"
    record("HammingSearch k-NN on CPU (N=1M, Q=1000)", case, impl, median_seconds(benchmark), N_CPU * Q_CPU, " dist")


_FAISS_REF = {}


def faiss_reference(db, q, k):
    """FAISS's distances for the same inputs (computed once per case)."""
    import faiss

    key = (db.shape, q.shape, k)
    if key not in _FAISS_REF:
        index = faiss.IndexBinaryFlat(db.shape[1] * 8)
        index.add(db.numpy())
        _FAISS_REF.clear()
        _FAISS_REF[key] = index.search(q.numpy(), k)
    return _FAISS_REF[key]


def _eager_knn(q_signs: torch.Tensor, db_signs: torch.Tensor, nbits: int, k: int, chunk: int = 256):
    """Strongest eager PyTorch Hamming k-NN: ±1 bf16 matmul + topk, query chunks."""
    out_d, out_i = [], []
    for s in range(0, q_signs.shape[0], chunk):
        dots = q_signs[s : s + chunk] @ db_signs.T
        top = torch.topk(dots, k, dim=1)  # bf16 holds these small integers exactly
        out_d.append(((nbits - top.values.float()) / 2).round().to(torch.int32))
        out_i.append(top.indices)
    return torch.cat(out_d), torch.cat(out_i)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("impl", ["pyhash", "eager"])
def test_knn_gpu(benchmark, impl):
    nbits, k = 64, 10
    db, q = _data(N_GPU, Q_GPU, nbits // 8, seed=3)
    db, q = db.cuda(), q.cuda()
    if impl == "pyhash":
        index = pyhash.HammingSearch(nbits, device="cuda")
        index.add(db)
        run = lambda: index.search(q, k)  # noqa: E731
    else:
        qs = pyhash.unpack_codes(q, signed=True).to(torch.bfloat16)
        ds = pyhash.unpack_codes(db, signed=True).to(torch.bfloat16)
        run = lambda: _eager_knn(qs, ds, nbits, k)  # noqa: E731
    D, _ = run()
    Dc, _ = pyhash.hamming_knn(q[:200].cpu(), db.cpu(), k)
    assert torch.equal(D[:200].cpu(), Dc)

    def timed():
        out = run()
        torch.cuda.synchronize()
        return out

    benchmark.group = "knn-gpu-64bit-k10"
    benchmark.pedantic(timed, rounds=3, iterations=1, warmup_rounds=1)
    record("HammingSearch k-NN on GPU (N=10M, Q=10k)", "64 bits, k=10", impl, median_seconds(benchmark), N_GPU * Q_GPU, " dist")
