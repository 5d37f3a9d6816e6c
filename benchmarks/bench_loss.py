"""Fused exponentiated pairwise loss vs the eager two-GEMM reference: forward + backward, same run.

CPU: n = m = 4096, B = 64, one thread (and a scaling row n = m = 16384). GPU: n = 8192,
m = 50,000, B = 64. Peak extra memory is measured in a fresh process per implementation.
"""

import subprocess
import sys

import pytest
import torch
from conftest import median_seconds, record, record_memory

import pyhash
from pyhash.reference import exp_pair_loss_ref

IMPLS = {"pyhash": pyhash.exp_pair_loss, "eager": exp_pair_loss_ref}


def _inputs(n, m, nbits, device, seed=0):
    g = torch.Generator().manual_seed(seed)
    z = torch.randn(n, nbits, generator=g).to(device).requires_grad_()
    y = torch.randn(m, nbits, generator=g).to(device).requires_grad_()
    labels = torch.randint(0, 10, (n,), generator=g).to(device)
    y_labels = torch.randint(0, 10, (m,), generator=g).to(device)
    return z, labels, y, y_labels


def _step(fn, z, labels, y, y_labels):
    z.grad = y.grad = None
    loss = fn(z, labels, y, y_labels, weighting="balanced")
    loss.backward()
    return loss


def _check_same(n, m, nbits, device):
    z, labels, y, y_labels = _inputs(n, m, nbits, device)
    a = _step(pyhash.exp_pair_loss, z, labels, y, y_labels)
    ga = z.grad.clone()
    b = _step(exp_pair_loss_ref, z, labels, y, y_labels)
    torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-6)
    torch.testing.assert_close(ga, z.grad, rtol=1e-3, atol=1e-7)


@pytest.mark.parametrize("size", [4096, 16384])
@pytest.mark.parametrize("impl", ["pyhash", "eager"])
def test_loss_cpu(benchmark, threads, impl, size):
    torch.set_num_threads(1)
    if impl == "pyhash":
        _check_same(512, 700, 64, "cpu")
    inputs = _inputs(size, size, 64, "cpu")
    benchmark.group = f"loss-cpu-{size}"
    benchmark.pedantic(lambda: _step(IMPLS[impl], *inputs), rounds=3 if size <= 4096 else 1, iterations=1, warmup_rounds=1 if size <= 4096 else 0)
    record("Fused loss, forward + backward, CPU, 1 thread (B=64)", f"n = m = {size}", impl, median_seconds(benchmark),
           3 * size * size * 64 * 2, "FLOP")


_MEMORY_SCRIPT = """
import sys, torch
sys.path.insert(0, {bench!r})
sys.path.insert(0, {package_root!r})  # the pyhash the benchmark run imported, not a source tree
from bench_loss import IMPLS, _inputs, _step
torch.set_num_threads(1)
inputs = _inputs({n}, {n}, 64, "cpu")
_step(IMPLS["pyhash"], *_inputs(8, 8, 64, "cpu"))  # load everything first

def rss(field):
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) * 1024 for line in f if line.startswith(field))

with open("/proc/self/clear_refs", "w") as f:
    f.write("5")  # reset the peak (VmHWM) to the current resident size
before = rss("VmRSS:")
_step(IMPLS[{impl!r}], *inputs)
print(rss("VmHWM:") - before)
"""


@pytest.mark.parametrize("impl", ["pyhash", "eager"])
def test_loss_cpu_peak_memory(benchmark, impl):
    """Peak resident memory added by one forward + backward at n = m = 4096, B = 64."""
    import os

    n = 4096
    package_root = os.path.dirname(os.path.dirname(pyhash.__file__))
    script = _MEMORY_SCRIPT.format(bench=os.path.dirname(__file__), package_root=package_root, n=n, impl=impl)
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert out.returncode == 0, f"the memory measurement process failed:\n{out.stderr}"
    extra = int(out.stdout.strip().splitlines()[-1])
    benchmark.extra_info["peak_extra_bytes"] = extra
    benchmark.pedantic(lambda: None, rounds=1, iterations=1)
    pair_matrix = n * n * 4
    print(f"\n{impl}: peak extra memory {extra / 2**20:.1f} MiB ({extra / pair_matrix:.2f} x one n x m float32 matrix)")
    record_memory("Fused loss, peak extra memory, CPU (B = 64; one n x m float32 matrix = 64 MiB)",
                  f"n = m = {n}, forward + backward", impl, extra)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("impl", ["pyhash", "pyhash-tensor", "eager"])
def test_loss_gpu(benchmark, monkeypatch, impl):
    """pyhash: the default CUDA row kernel (SIMT); pyhash-tensor: PYHASH_CUDA_LOSS=tensor."""
    n, m, nbits = 8192, 50_000, 64
    if impl == "pyhash-tensor":
        monkeypatch.setenv("PYHASH_CUDA_LOSS", "tensor")
    fn = IMPLS["eager" if impl == "eager" else "pyhash"]
    if impl != "eager":
        _check_same(1000, 3000, 64, "cuda")
    inputs = _inputs(n, m, nbits, "cuda")
    torch.cuda.reset_peak_memory_stats()
    base = torch.cuda.memory_allocated()

    def timed():
        out = _step(fn, *inputs)
        torch.cuda.synchronize()
        return out

    benchmark.group = "loss-gpu"
    benchmark.pedantic(timed, rounds=5, iterations=1, warmup_rounds=1)
    peak = torch.cuda.max_memory_allocated() - base
    print(f"\n{impl}: peak extra GPU memory {peak / 2**20:.0f} MiB")
    # One row per CUDA row kernel, each against the same eager run.
    cases = {"pyhash": ["SIMT kernel (default)"], "pyhash-tensor": ["tensor-core kernel"]}.get(
        impl, ["SIMT kernel (default)", "tensor-core kernel"])
    name = "eager" if impl == "eager" else "pyhash"
    for case in cases:
        record("Fused loss, forward + backward, GPU (n = 8192, m = 50,000, B = 64)", case, name, median_seconds(benchmark),
               3 * n * m * nbits * 2, "FLOP")
        record_memory("Fused loss, peak extra GPU memory (n = 8192, m = 50,000, B = 64)", case, name, peak)
