"""The HammingSearch demo: real MNIST images -> 64-bit codes -> exact Hamming search.

Codes here come from a seeded random projection of the pixels (sign of Gaussian projections, i.e.
SimHash/LSH); trained deep hashing codes replace them once the training pipeline exists.
"""

import tempfile
import time
from pathlib import Path

import numpy as np
import torch

import pyhash
from pyhash._inputs import check_count
from pyhash.data import bundled_mnist_test
from pyhash.reference import hamming_knn_ref


def lsh_codes(images: np.ndarray, nbits: int, seed: int) -> np.ndarray:
    """Packed ``uint8[N, nbits/8]`` codes: signs of seeded Gaussian projections of centred pixels."""
    x = images.reshape(len(images), -1).astype(np.float32) / 255.0
    x -= x.mean(axis=0, keepdims=True)
    projection = np.random.default_rng(seed).standard_normal((x.shape[1], nbits)).astype(np.float32)
    return pyhash.pack_codes(x @ projection)


def run(nbits: int = 64, k: int = 10, queries: int = 1000, device: str = "cpu", seed: int = 0, echo=print) -> dict:
    """Encode the bundled MNIST test set, search it, and report accuracy and speed."""
    images, labels = bundled_mnist_test()
    if check_count(queries, "queries", 1) >= len(images):
        raise ValueError(f"queries must leave a database: from 1 to {len(images) - 1} of the {len(images)} images, got {queries}")
    codes = lsh_codes(images, nbits, seed)
    q_codes, db_codes = codes[:queries], codes[queries:]
    q_labels, db_labels = labels[:queries], labels[queries:]
    db_ids = np.arange(queries, len(codes), dtype=np.int64)
    echo(f"MNIST test images: {len(codes)} -> {nbits}-bit codes; {len(db_codes)} in the index, {queries} queries")

    index = pyhash.HammingSearch(nbits, device=device)
    index.add(torch.from_numpy(db_codes).to(device), ids=db_ids)
    q = torch.from_numpy(q_codes).to(device)
    index.search(q[:8], k)  # warm-up
    start = time.perf_counter()
    D, I = index.search(q, k)
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    search_s = time.perf_counter() - start
    I = I.cpu().numpy()
    precision = float((labels[I] == q_labels[:, None]).mean())

    start = time.perf_counter()
    Dr, Ir = hamming_knn_ref(torch.from_numpy(q_codes), torch.from_numpy(db_codes), k)
    reference_s = time.perf_counter() - start
    exact = bool(np.array_equal(D.cpu().numpy(), Dr.numpy()) and np.array_equal(I, db_ids[Ir.numpy()]))

    radius = nbits // 8
    lims, Dr_, Ir_ = index.range_search(q, radius)
    lims, Ir_ = lims.cpu().numpy(), Ir_.cpu().numpy()
    found = np.diff(lims)
    hit = labels[Ir_] == np.repeat(q_labels, found)
    within_precision = float(hit.mean()) if hit.size else 0.0

    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "mnist.phx"
        index.save(path)
        reloaded = pyhash.HammingSearch.load(path, device=device)
        roundtrip = all(torch.equal(a, b) for a, b in zip(index.search(q, k), reloaded.search(q, k)))

    chance = float(np.mean([(db_labels == c).mean() ** 2 for c in range(10)]) * 10)
    results = {
        "precision_at_k": precision,
        "chance_precision": chance,
        "search_seconds": search_s,
        "reference_seconds": reference_s,
        "exact_vs_reference": exact,
        "mean_results_within_radius": float(found.mean()),
        "precision_within_radius": within_precision,
        "save_load_roundtrip": roundtrip,
    }
    echo(f"precision@{k} (same digit)        {precision:.3f}   (chance {chance:.3f})")
    echo(f"search {queries} queries, k={k}      {search_s * 1e3:.1f} ms on {device} ({pyhash._C.cpu_isa()} CPU kernels)")
    echo(f"pure-PyTorch reference           {reference_s * 1e3:.1f} ms  -> identical results: {exact}")
    echo(f"range search, distance <= {radius:<3}     {found.mean():.1f} results per query, precision {within_precision:.3f}")
    echo(f"save -> load round trip          {'identical' if roundtrip else 'DIFFERENT'}")
    return results
