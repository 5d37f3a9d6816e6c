"""The GPU session's scripts (tools/gpu_check.sh, tools/cuda_smoke.py) stay runnable: a GPU session
has minutes, not time to debug them."""

import importlib.util
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

TOOLS = Path(__file__).resolve().parents[1] / "tools"


@pytest.fixture
def smoke():
    spec = importlib.util.spec_from_file_location("cuda_smoke", TOOLS / "cuda_smoke.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_smoke_script_runs_every_case_on_the_cpu():
    done = subprocess.run([sys.executable, str(TOOLS / "cuda_smoke.py"), "--device", "cpu"],
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    lines = done.stdout.splitlines()
    assert lines[-1] == "0 failures"
    names = [line[5:] for line in lines if line.startswith("ok   ")]
    assert len(names) == len(lines) - 1
    for path in ("candidate route", "threshold route", "overflow fallback", "range", "retrieval stats",
                 "loss simt", "loss tensor"):
        assert any(path in name for name in names), path


def test_smoke_checker_counts_mismatches(smoke, capsys):
    checker = smoke.Checker("cpu")
    a = torch.arange(6).reshape(2, 3)
    checker.same("equal", (a, a.float()), (a.clone(), a.float()))
    assert checker.failures == 0
    checker.same("one element differs", a, torch.tensor([[0, 1, 2], [3, 4, 6]]))
    checker.same("shapes differ", a, a.reshape(3, 2))
    checker.same("outside the tolerance", a.float() * 1.01, a.float(), rtol=1e-3)
    assert checker.failures == 3
    checker.same("inside the tolerance", a.float() * 1.0001, a.float(), rtol=1e-3)
    assert checker.failures == 3
    out = capsys.readouterr().out.splitlines()
    assert [line[:4] for line in out] == ["ok  ", "FAIL", "FAIL", "FAIL", "ok  "]


@pytest.mark.skipif(shutil.which("bash") is None, reason="no bash")
def test_gpu_check_script_parses():
    for script in ("gpu_check.sh", "gpu_image_rehearsal.sh"):
        subprocess.run(["bash", "-n", str(TOOLS / script)], check=True)
