"""Report how pyhash was built and which kernels are available: ``python -m pyhash.info``."""

import os
import platform

import torch


OPS = ("hamming_distance", "hamming_knn", "hamming_range", "hamming_retrieval_stats", "exp_pair_loss")


def collect() -> dict:
    """Versions, compiled CUDA archs, CPU ISA and the backends each op has kernels for."""
    import pyhash

    build = pyhash._C.build_info()
    ops = {}
    for name in OPS:
        op = getattr(torch.ops.pyhash, name).default
        ops[name] = [key for key in ("CPU", "CUDA") if torch._C._dispatch_has_kernel_for_dispatch_key(op.name(), key)]
    return {
        "pyhash": pyhash.__version__,
        "python": platform.python_version(),
        "torch (running)": torch.__version__,
        "torch (built against)": build["torch_version"],
        "CUDA kernels compiled": build["with_cuda"],
        "CUDA version (build)": build["cuda_version"] or "-",
        "CUDA archs compiled": build["cuda_arch_list"] or "-",
        "CUDA available now": torch.cuda.is_available(),
        "GPU": torch.cuda.get_device_name() if torch.cuda.is_available() else "-",
        "CPU instruction set": f"{pyhash._C.cpu_isa()} (best supported: {build['cpu_isa_best']})",
        "CPU threads": torch.get_num_threads(),
        "ops": ", ".join(f"{k} [{'/'.join(v)}]" for k, v in ops.items()),
        "CUDA loss kernel": os.environ.get("PYHASH_CUDA_LOSS") or "simt (default; PYHASH_CUDA_LOSS=tensor for tensor cores)",
    }


def main() -> None:
    for key, value in collect().items():
        print(f"{key:24} {value}")


if __name__ == "__main__":
    main()
