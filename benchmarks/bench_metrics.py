"""mAP@ALL, 10,000 queries x 50,000 database items, 64 bits, 10 classes: pyhash.metrics vs the
numpy argsort reference in the same run (the reference is timed on a query subset and scaled,
since it takes about a minute for all queries)."""

import time

import numpy as np
import pytest
import torch
from conftest import median_seconds, record

import pyhash.metrics as M
from pyhash.reference.metrics import average_precision_ref

NQ, ND, NBITS, CLASSES = 10_000, 50_000, 64, 10
REFERENCE_QUERIES = 500


def _data(seed=0):
    """Codes near one random centre per class (20 % of bits flipped): a realistic mAP (~0.89)."""
    rng = np.random.default_rng(seed)
    centers = rng.integers(0, 256, (CLASSES, NBITS // 8), dtype=np.uint8)
    ql, dl = rng.integers(0, CLASSES, NQ), rng.integers(0, CLASSES, ND)

    def noise(n):
        return np.packbits(rng.random((n, NBITS)) < 0.2, axis=1, bitorder="little")

    return centers[ql] ^ noise(NQ), centers[dl] ^ noise(ND), ql, dl


@pytest.mark.parametrize("ties", ["id", "average"])
def test_map_cpu(benchmark, threads, ties):
    q, d, ql, dl = _data()
    sub = slice(0, REFERENCE_QUERIES)
    ours = M.average_precision(q[sub], d, ql[sub], dl)
    if ties == "id":
        np.testing.assert_allclose(ours, average_precision_ref(q[sub], d, ql[sub], dl), rtol=1e-12)
    benchmark.group = "map-cpu"
    result = benchmark.pedantic(lambda: M.mean_average_precision(q, d, ql, dl, ties=ties), rounds=3, iterations=1)
    record("mAP@ALL on CPU (10k queries x 50k database, 64 bits, all threads)", f"ties={ties}", "pyhash", median_seconds(benchmark))
    if ties == "id":
        start = time.perf_counter()
        average_precision_ref(q[sub], d, ql[sub], dl)
        scaled = (time.perf_counter() - start) * NQ / REFERENCE_QUERIES
        record("mAP@ALL on CPU (10k queries x 50k database, 64 bits, all threads)", f"ties={ties}", "numpy argsort", scaled)
    print(f"\nmAP ties={ties}: {result:.4f}")


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_map_gpu(benchmark):
    q, d, ql, dl = (torch.from_numpy(x).cuda() for x in _data())
    cpu_value = M.mean_average_precision(*(x.cpu() for x in (q[:300], d, ql[:300], dl)))
    assert M.mean_average_precision(q[:300], d, ql[:300], dl) == pytest.approx(cpu_value, abs=1e-12)

    def timed():
        return M.mean_average_precision(q, d, ql, dl)

    benchmark.group = "map-gpu"
    benchmark.pedantic(timed, rounds=3, iterations=1, warmup_rounds=1)
    record("mAP@ALL on GPU (10k queries x 50k database, 64 bits)", "ties=id", "pyhash", median_seconds(benchmark))
