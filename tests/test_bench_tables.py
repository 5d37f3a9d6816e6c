"""The ratio tables that benchmarks/conftest.py prints and writes into docs/performance.md."""

import importlib.util
from pathlib import Path

import pytest

BENCH_CONFTEST = Path(__file__).resolve().parents[1] / "benchmarks" / "conftest.py"


@pytest.fixture
def bench():
    spec = importlib.util.spec_from_file_location("bench_conftest", BENCH_CONFTEST)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def cells(line):
    assert line.startswith("| ") and line.endswith(" |"), line
    return [c.strip() for c in line[1:-1].split("|")]


def test_table_with_an_anchor(bench):
    bench.record("S", "64 bits", "pyhash", 0.002, 1e9, " dist")
    bench.record("S", "64 bits", "faiss", 0.010, 1e9, " dist")
    lines = bench._table("S").splitlines()
    assert cells(lines[0]) == ["case", "pyhash", "faiss", "speed-up vs faiss"]
    assert lines[1] == "| --- | --- | --- | --- |"
    assert cells(lines[2]) == ["64 bits", "2.0 ms (500.00 G dist/s)", "10.0 ms (100.00 G dist/s)", "5.0x"]


def test_table_without_an_anchor_has_two_columns(bench):
    bench.record("GPU only", "ties=id", "pyhash", 0.25)
    lines = bench._table("GPU only").splitlines()
    assert lines == ["| case | pyhash |", "| --- | --- |", "| ties=id | 250.0 ms |"]


def test_memory_table_and_missing_figures(bench):
    bench.record_memory("M", "n = 4096", "pyhash", 2 * 2**20)
    bench.record_memory("M", "n = 4096", "eager", 6 * 2**20)
    bench.record_memory("M", "n = 8192", "eager", 8 * 2**20)
    lines = bench._table("M").splitlines()
    assert cells(lines[0]) == ["case", "pyhash", "eager", "ratio (anchor / pyhash) vs eager"]
    assert cells(lines[2]) == ["n = 4096", "2.0 MiB", "6.0 MiB", "3.0x"]
    assert cells(lines[3]) == ["n = 8192", "-", "8.0 MiB", "-"]
    assert all(len(cells(line)) == 4 for line in lines)
