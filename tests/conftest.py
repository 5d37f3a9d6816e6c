"""Shared test matrix: devices (CUDA cases marked and skipped without a GPU) and CPU ISAs."""

import os
from pathlib import Path

import pytest
import torch

import pyhash

DEVICES = ["cpu", pytest.param("cuda", marks=pytest.mark.cuda)]


def pytest_collection_modifyitems(config, items):
    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA device")
    for item in items:
        if "cuda" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(params=DEVICES)
def device(request):
    return request.param


def supported_isas():
    """Every CPU instruction set the kernels can use here, best first."""
    order = ["amx_int8", "avx512_vpopcntdq", "avx2", "scalar"]
    best = pyhash._C.build_info()["cpu_isa_best"]
    return order[order.index(best):]


@pytest.fixture(params=supported_isas())
def cpu_isa(request):
    """Runs a test once per CPU popcount implementation, restoring the best one afterwards."""
    previous = pyhash._C.cpu_isa()
    pyhash._C.set_cpu_isa(request.param)
    yield request.param
    pyhash._C.set_cpu_isa(previous)


@pytest.fixture(params=[f"cpu-{isa}" for isa in supported_isas()] + [pytest.param("cuda", marks=pytest.mark.cuda)])
def backend(request):
    """A device string; CPU cases run once per CPU instruction set (restored afterwards)."""
    if request.param == "cuda":
        yield "cuda"
        return
    previous = pyhash._C.cpu_isa()
    pyhash._C.set_cpu_isa(request.param[len("cpu-"):])
    yield "cpu"
    pyhash._C.set_cpu_isa(previous)


@pytest.fixture(scope="session")
def data_dir():
    """The folder of MNIST/CIFAR-10 .npz archives (PYHASH_DATA, else ../shared/data), or skip."""
    candidates = [os.environ.get("PYHASH_DATA"), Path(__file__).resolve().parents[2] / "shared" / "data"]
    for c in candidates:
        if c and Path(c, "mnist.npz").exists():
            return Path(c)
    pytest.skip("real data not found: set PYHASH_DATA to the folder holding mnist.npz")
