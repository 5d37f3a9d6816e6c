"""pytest plugin: run the GPU benchmarks' Python code on a CPU-only machine, at small sizes.

It finds Python-level mistakes in benchmarks/ (names, shapes, the ratio tables) before a GPU
session spends device time on them. It times the CPU kernels under GPU labels, so its figures
mean nothing; never write them to docs/performance.md. From the repo root, with pyhash built:

    PYTHONPATH=.:tools pytest -p fake_cuda_bench benchmarks/ --benchmark-only -k gpu -s
"""

import torch

# CUDA calls the GPU benchmarks make, turned into CPU no-ops.
torch.cuda.is_available = lambda: True
torch.Tensor.cuda = lambda self, *args, **kwargs: self
torch.cuda.synchronize = lambda *args, **kwargs: None
torch.cuda.reset_peak_memory_stats = lambda *args, **kwargs: None
torch.cuda.memory_allocated = lambda *args, **kwargs: 0
torch.cuda.max_memory_allocated = lambda *args, **kwargs: 0
torch.cuda.get_device_name = lambda *args, **kwargs: "no GPU (fake_cuda_bench: CPU kernels, small sizes)"

import pyhash  # noqa: E402


class _CpuHammingSearch(pyhash.HammingSearch):
    def __init__(self, nbits, device="cpu"):
        super().__init__(nbits, device="cpu")


def pytest_collection_modifyitems(session, config, items):
    import types

    import bench_loss
    import bench_search

    bench_search.N_GPU, bench_search.Q_GPU = 200_000, 500
    bench_search.pyhash = types.SimpleNamespace(**{**vars(pyhash), "HammingSearch": _CpuHammingSearch})
    full_size_inputs = bench_loss._inputs

    def small_inputs(n, m, nbits, device, seed=0):
        if device == "cuda":
            n, m, device = min(n, 1024), min(m, 3000), "cpu"
        return full_size_inputs(n, m, nbits, device, seed)

    bench_loss._inputs = small_inputs
