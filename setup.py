"""Build pyhash and its C++/CUDA extension ``pyhash._C``.

CPU kernels are always built. CUDA kernels are added when torch was built with CUDA and a CUDA
toolkit is found (or ``FORCE_CUDA=1``), never based on whether a GPU is visible.

Environment switches:
  PYHASH_CPU_ONLY=1        build the CPU kernels only
  FORCE_CUDA=1             build the CUDA kernels (fails loudly if no toolkit is found)
  CUDA_HOME                CUDA toolkit root (found from ``nvcc`` on PATH otherwise)
  TORCH_CUDA_ARCH_LIST     e.g. "9.0" or "8.0;9.0+PTX"; default: the visible GPUs, else "9.0"
  MAX_JOBS                 parallel compile jobs (ninja)
  NVCC_FLAGS               extra nvcc flags
  DEBUG=1                  -O0 -g
"""

import os
import re
import shutil
import sys
from pathlib import Path

from setuptools import find_packages, setup

ROOT = Path(__file__).resolve().parent
VERSION = "0.1.0"


def _env_flag(name):
    return os.environ.get(name, "").strip().lower() in ("1", "true", "yes", "on")


def _find_cuda_home():
    """Return the CUDA toolkit root, following an ``nvcc`` wrapper script if needed."""
    for var in ("CUDA_HOME", "CUDA_PATH"):
        value = os.environ.get(var)
        if value and Path(value, "bin", "nvcc").exists():
            return value
    nvcc = shutil.which("nvcc")
    if nvcc:
        real = Path(nvcc).resolve()
        candidate = real.parent.parent
        if (candidate / "include" / "cuda_runtime.h").exists():
            return str(candidate)
        try:  # a small wrapper script that execs the real nvcc
            text = real.read_text(errors="ignore")[:4096]
        except OSError:
            text = ""
        for match in re.finditer(r"(/[^\s\"']+)/bin/nvcc", text):
            if Path(match.group(1), "include", "cuda_runtime.h").exists():
                return match.group(1)
    if Path("/usr/local/cuda/bin/nvcc").exists():
        return "/usr/local/cuda"
    return None


CPU_ONLY = _env_flag("PYHASH_CPU_ONLY")
FORCE_CUDA = _env_flag("FORCE_CUDA")
DEBUG = _env_flag("DEBUG")
CUDA_HOME = None if CPU_ONLY else _find_cuda_home()
if CUDA_HOME:
    # torch.utils.cpp_extension reads CUDA_HOME when it is imported.
    os.environ["CUDA_HOME"] = CUDA_HOME

import torch  # noqa: E402
from torch.utils.cpp_extension import BuildExtension, CppExtension, CUDAExtension  # noqa: E402

WITH_CUDA = (not CPU_ONLY) and (FORCE_CUDA or (torch.version.cuda is not None and CUDA_HOME is not None))
if WITH_CUDA and CUDA_HOME is None:
    sys.exit("pyhash setup: FORCE_CUDA=1 but no CUDA toolkit was found; set CUDA_HOME.")
if WITH_CUDA and torch.version.cuda is None:
    sys.exit("pyhash setup: FORCE_CUDA=1 but the installed torch has no CUDA support.")
if WITH_CUDA and not os.environ.get("TORCH_CUDA_ARCH_LIST") and not torch.cuda.is_available():
    os.environ["TORCH_CUDA_ARCH_LIST"] = "9.0"


def _sources():
    cpp = sorted(str(p.relative_to(ROOT)) for p in (ROOT / "csrc").glob("*.cpp"))
    cpp += sorted(str(p.relative_to(ROOT)) for p in (ROOT / "csrc" / "cpu").glob("*.cpp"))
    cuda = sorted(str(p.relative_to(ROOT)) for p in (ROOT / "csrc" / "cuda").glob("*.cpp"))
    cuda += sorted(str(p.relative_to(ROOT)) for p in (ROOT / "csrc" / "cuda").glob("*.cu"))
    return cpp, cuda


def _extension():
    cpp, cuda = _sources()
    arch_list = os.environ.get("TORCH_CUDA_ARCH_LIST", "") if WITH_CUDA else ""
    macros = [
        ("PYHASH_VERSION", f'"{VERSION}"'),
        ("PYHASH_TORCH_VERSION", f'"{torch.__version__}"'),
        ("PYHASH_CUDA_ARCH_LIST", f'"{arch_list}"'),
        ("PYHASH_BUILT_CUDA_VERSION", f'"{torch.version.cuda if WITH_CUDA else ""}"'),
    ]
    opt = ["-O0", "-g"] if DEBUG else ["-O3"]
    # at::parallel_for is inline OpenMP: without -fopenmp it silently runs on one thread.
    cxx_flags = opt + ["-Wall", "-fopenmp"]
    link_flags = ["-fopenmp"]
    if WITH_CUDA:
        macros.append(("PYHASH_WITH_CUDA", "1"))
        nvcc_flags = opt + ["-lineinfo", "--expt-relaxed-constexpr"]
        nvcc_flags += os.environ.get("NVCC_FLAGS", "").split()
        return CUDAExtension(
            "pyhash._C",
            cpp + cuda,
            include_dirs=[str(ROOT / "csrc")],
            define_macros=macros,
            extra_compile_args={"cxx": cxx_flags, "nvcc": nvcc_flags},
            extra_link_args=link_flags,
        )
    return CppExtension(
        "pyhash._C",
        cpp,
        include_dirs=[str(ROOT / "csrc")],
        define_macros=macros,
        extra_compile_args={"cxx": cxx_flags},
        extra_link_args=link_flags,
    )


print(
    "pyhash build configuration:\n"
    f"  torch               {torch.__version__} (CUDA {torch.version.cuda})\n"
    f"  CUDA kernels        {'yes' if WITH_CUDA else 'no'}"
    f"{' (PYHASH_CPU_ONLY=1)' if CPU_ONLY else ''}{' (FORCE_CUDA=1)' if FORCE_CUDA else ''}\n"
    f"  CUDA_HOME           {CUDA_HOME}\n"
    f"  TORCH_CUDA_ARCH_LIST {os.environ.get('TORCH_CUDA_ARCH_LIST', '') if WITH_CUDA else '-'}\n"
    f"  MAX_JOBS            {os.environ.get('MAX_JOBS', '(ninja default)')}\n"
    f"  DEBUG               {DEBUG}",
    flush=True,
)

setup(
    name="pyhash",
    version=VERSION,
    description="Deep hashing (Mu & Liu, AAAI 2017) with fused CPU/CUDA kernels and fast Hamming search",
    long_description=(ROOT / "README.md").read_text(encoding="utf-8"),
    long_description_content_type="text/markdown",
    packages=find_packages(include=["pyhash", "pyhash.*"]),
    package_data={"pyhash": ["data/*.npz"]},
    python_requires=">=3.9",
    install_requires=["torch>=2.4,<=2.14.1", "torchvision", "numpy", "tqdm", "matplotlib"],
    extras_require={
        "test": ["pytest", "pytest-benchmark", "hypothesis", "faiss-cpu"],
    },
    ext_modules=[_extension()],
    cmdclass={"build_ext": BuildExtension},
    entry_points={"console_scripts": ["pyhash = pyhash.cli:main"]},
)
