"""Importing pyhash with a missing or mismatched compiled extension gives an actionable error."""

import os
import re
import shutil
import subprocess
import sys
import types
from pathlib import Path

import pytest
import torch

import pyhash
from pyhash import _extension


def _import_fails_with(monkeypatch, message):
    def fail(name):
        raise ImportError(message)

    monkeypatch.setattr(_extension.importlib, "import_module", fail)


def test_missing_extension_says_how_to_build(monkeypatch):
    _import_fails_with(monkeypatch, "No module named 'pyhash._C'")
    with pytest.raises(ImportError, match="(?s)was not found next to .*pip install --no-build-isolation"):
        _extension.load_extension()


def test_extension_with_unresolved_torch_symbols_says_to_rebuild(monkeypatch):
    _import_fails_with(monkeypatch, "_C.so: undefined symbol: _ZN3c104impl3cow11cow_deleterEPv")
    with pytest.raises(ImportError, match=f"(?s)does not match the installed torch {re.escape(torch.__version__)}.*--force-reinstall"):
        _extension.load_extension()


def test_extension_built_against_another_torch_says_to_rebuild(monkeypatch):
    stale = types.SimpleNamespace(build_info=lambda: {"torch_version": "1.13.0+cu117"})
    monkeypatch.setattr(_extension.importlib, "import_module", lambda name: stale)
    with pytest.raises(ImportError, match=f"built against torch 1.13.0\\+cu117 but torch {re.escape(torch.__version__)} is running"):
        _extension.load_extension()


def test_the_real_extension_loads():
    assert _extension.load_extension().build_info()["torch_version"].split("+")[0] == torch.__version__.split("+")[0]


def test_importing_a_copy_without_the_compiled_module(tmp_path):
    """The whole import path, as a user meets it: a pyhash folder that lacks _C."""
    shutil.copytree(Path(pyhash.__file__).parent, tmp_path / "pyhash", ignore=shutil.ignore_patterns("_C*", "__pycache__"))
    out = subprocess.run([sys.executable, "-c", "import pyhash"], capture_output=True, text=True, cwd=tmp_path,
                         env={**os.environ, "PYTHONPATH": str(tmp_path)})
    assert out.returncode != 0
    assert "pyhash._C was not found" in out.stderr and "pip install --no-build-isolation ." in out.stderr
