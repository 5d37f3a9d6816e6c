"""The README's commands are the ones CI runs, and the CLI works."""

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]


def _readme_commands():
    text = (ROOT / "README.md").read_text()
    blocks = text.split("```bash\n")[1:3]
    return [b.split("```")[0].strip() for b in blocks]


def test_ci_runs_the_readme_test_command():
    main_job, test_command = _readme_commands()
    assert "pyhash demo" in main_job
    ci = (ROOT / ".ci" / "run").read_text().strip().splitlines()
    assert ci[-1].strip() == test_command


def _cli(*args, cwd, **kwargs):
    # Run outside the source tree, which would shadow the installed package.
    return subprocess.run([sys.executable, "-m", "pyhash.cli", *args], capture_output=True, text=True, cwd=cwd, **kwargs)


def test_cli_help_and_info(tmp_path):
    out = _cli("--help", cwd=tmp_path, check=True)
    for command in ("demo", "train", "eval", "encode", "index", "search", "search-demo", "info"):
        assert command in out.stdout
        assert _cli(command, "--help", cwd=tmp_path).returncode == 0
    out = _cli("info", cwd=tmp_path, check=True)
    assert "CPU instruction set" in out.stdout


def test_cli_every_argument_has_help():
    import argparse

    from pyhash.cli import build_parser

    commands = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    for name, sub in commands.choices.items():
        assert sub.description, f"pyhash {name} has no description"
        for action in sub._actions:
            assert action.help and action.help != argparse.SUPPRESS, f"pyhash {name} {action.dest} has no help"


def test_cli_search_demo_runs_and_is_exact(tmp_path):
    out = _cli("search-demo", "--queries", "200", cwd=tmp_path, timeout=600)
    assert out.returncode == 0, out.stderr
    assert "identical results: True" in out.stdout
    precision = float(out.stdout.split("precision@10 (same digit)")[1].split()[0])
    assert precision > 0.5  # chance is 0.1


def test_cli_bad_argument_is_a_clear_error(tmp_path):
    out = _cli("search-demo", "--bits", "12", cwd=tmp_path)
    assert out.returncode == 2 and "multiple of 8" in out.stderr
    for queries in ("0", "10000"):
        out = _cli("search-demo", "--queries", queries, cwd=tmp_path)
        assert out.returncode == 2 and "queries must" in out.stderr, out.stderr
    out = _cli("eval", str(tmp_path / "missing-run"), cwd=tmp_path)
    assert out.returncode == 2 and "not a finished pyhash run" in out.stderr
    out = _cli("train", "--dataset", "mnist", "--protocol", "mnist-1k", "--out", "r", "--data-dir", str(tmp_path), cwd=tmp_path)
    assert out.returncode == 2 and "was not found" in out.stderr


def test_cli_train_eval_encode_index_search(tmp_path):
    """Every training command end to end on the bundled sample, with a few quick epochs."""
    import numpy as np

    quick = ["--epochs-classify", "1", "--epochs-bottleneck", "0", "--epochs-hash", "1", "--quiet"]
    out = _cli("demo", "--out", "demo", *quick, cwd=tmp_path, timeout=900)
    assert out.returncode == 0, out.stderr
    assert "mAP@ALL" in out.stdout and (tmp_path / "demo" / "pr_curve.png").exists()
    out = _cli("train", "--dataset", "mnist-sample", "--protocol", "sample", "--bits", "12", "--out", "run", *quick,
               "--epochs-hash", "2", "--val-fraction", "0.1", "--select", "best-val", "--optimizer", "sgd", "--lr", "0.05",
               cwd=tmp_path, timeout=900)
    assert out.returncode == 0, out.stderr
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert metrics["mAP@ALL"] > 0.5 and metrics["bits"] == 12
    assert metrics["training images"] == 2700 and metrics["epoch reported"] in (2, 3)
    from pyhash.protocols import Split

    split = Split.load(tmp_path / "run" / "split.npz")
    assert len(split.validation) == 300 and not set(split.validation) & set(split.train)
    assert _cli("eval", "run", cwd=tmp_path).returncode == 0
    from pyhash.data import bundled_mnist_test

    np.save(tmp_path / "images.npy", bundled_mnist_test()[0][:5])
    out = _cli("encode", "run", "--input", "images.npy", "--output", "codes.npy", cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    codes = np.load(tmp_path / "codes.npy")
    assert codes.shape == (5, 2)
    assert _cli("index", "run", cwd=tmp_path).returncode == 0
    import pyhash

    index = pyhash.HammingSearch.load(tmp_path / "run" / "database.phx")
    in_database = [i for i in range(5) if i in set(split.database.tolist())]
    assert in_database  # encode normalises new images exactly as training did
    for i in in_database:
        assert np.array_equal(np.asarray(index.reconstruct(i)), codes[i])
    out = _cli("search", "run/database.phx", "--query", "codes.npy", "--k", "3", cwd=tmp_path)
    assert out.returncode == 0 and out.stdout.count("query") == 5

    # Bad files and images: a clear message naming the problem, exit status 2, nothing written.
    np.save(tmp_path / "colour.npy", np.zeros((2, 32, 32, 3), np.uint8))
    (tmp_path / "text.npy").write_text("not an array")
    bad = {
        ("encode", "run", "--input", "colour.npy", "--output", "x.npy"): "trained on mnist-sample images of shape [28, 28]",
        ("encode", "run", "--input", "text.npy", "--output", "x.npy"): "--input text.npy is not a .npy file",
        ("encode", "run", "--input", "images.npy", "--output", "no/such/x.npy"): "the folder",
        ("search", "run/database.phx", "--query", "text.npy"): "--query text.npy is not a .npy file",
        ("search", "run/database.phx", "--query", "images.npy"): "queries must be 2-D",
        ("encode", "run", "--input", "images.npy", "--output", "run"): "it is a folder",
        ("search", "run", "--query", "codes.npy"): "Is a directory",
    }
    for args, message in bad.items():
        out = _cli(*args, cwd=tmp_path)
        assert out.returncode == 2 and message in out.stderr, (args, out.stderr)
    assert not (tmp_path / "x.npy").exists() and not (tmp_path / "no").exists()


def test_bundled_data_loads():
    from pyhash.data import bundled_mnist_test

    x, y = bundled_mnist_test()
    assert x.shape == (10000, 28, 28) and y.shape == (10000,)


def test_info_lists_every_op_with_its_backends():
    from pyhash.info import OPS, collect

    ops = collect()["ops"]
    registered = {n for n in torch._C._dispatch_get_registrations_for_dispatch_key("CPU") if n.startswith("pyhash::")}
    assert {f"pyhash::{name}" for name in OPS} == registered
    for name in OPS:
        assert f"{name} [CPU" in ops, ops


@pytest.mark.parametrize("module", ["pyhash.info"])
def test_module_entry_points(module, tmp_path):
    subprocess.run([sys.executable, "-m", module], check=True, capture_output=True, cwd=tmp_path)
