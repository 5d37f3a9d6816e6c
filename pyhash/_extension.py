"""Loads the compiled extension ``pyhash._C`` once, with actionable errors when it is unusable."""

import importlib
import os

import torch

_HOW_TO_BUILD = (
    "Build and install it with:\n"
    "    pip install --no-build-isolation .\n"
    "from the pyhash source folder (torch must already be installed), then import pyhash from "
    "another folder (a source checkout without the compiled module shadows the installed package)."
)


def _release(version: str) -> str:
    return version.split("+")[0]


def load_extension():
    """Import ``pyhash._C`` and check it was built against the running torch."""
    try:
        module = importlib.import_module("pyhash._C")
    except ImportError as exc:
        here = os.path.dirname(os.path.abspath(__file__))
        if "undefined symbol" in str(exc):
            raise ImportError(
                f"pyhash's compiled extension does not match the installed torch {torch.__version__} "
                f"({exc}). Rebuild it against this torch:\n"
                "    pip install --no-build-isolation --force-reinstall --no-deps .\n"
            ) from exc
        raise ImportError(
            f"pyhash's compiled extension pyhash._C was not found next to {here} ({exc}).\n" + _HOW_TO_BUILD
        ) from exc
    info = module.build_info()
    if _release(info["torch_version"]) != _release(torch.__version__):
        raise ImportError(
            f"pyhash was built against torch {info['torch_version']} but torch {torch.__version__} is "
            "running. Rebuild pyhash against the running torch:\n"
            "    pip install --no-build-isolation --force-reinstall --no-deps .\n"
            "(plain `pip install .` may build against a different torch in an isolated environment)."
        )
    return module
