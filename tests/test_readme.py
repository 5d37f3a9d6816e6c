"""The README's commands are the ones CI runs, and the CLI works."""

import subprocess
import sys
from pathlib import Path

import pytest

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
    assert "demo" in out.stdout
    out = _cli("info", cwd=tmp_path, check=True)
    assert "CPU popcount ISA" in out.stdout


def test_cli_demo_runs_and_is_exact(tmp_path):
    out = _cli("demo", "--queries", "200", cwd=tmp_path, timeout=600)
    assert out.returncode == 0, out.stderr
    assert "identical results: True" in out.stdout
    precision = float(out.stdout.split("precision@10 (same digit)")[1].split()[0])
    assert precision > 0.5  # chance is 0.1


def test_cli_bad_argument_is_a_clear_error(tmp_path):
    out = _cli("demo", "--bits", "12", cwd=tmp_path)
    assert out.returncode == 2 and "multiple of 8" in out.stderr


def test_bundled_data_loads():
    from pyhash.data import bundled_mnist_test

    x, y = bundled_mnist_test()
    assert x.shape == (10000, 28, 28) and y.shape == (10000,)


@pytest.mark.parametrize("module", ["pyhash.info"])
def test_module_entry_points(module, tmp_path):
    subprocess.run([sys.executable, "-m", module], check=True, capture_output=True, cwd=tmp_path)
