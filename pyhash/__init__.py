"""pyhash: deep hashing (Mu & Liu, AAAI 2017) with fused CPU/CUDA kernels and exact Hamming search.

Codes are packed bits, ``uint8[N, nbits/8]``: bit j of a code is bit ``j % 8`` (least significant
first) of byte ``j // 8``, as in FAISS.
"""

from pyhash._extension import load_extension as _load_extension

_C = _load_extension()
__version__ = _C.build_info()["version"]

from pyhash.codes import pack_codes, unpack_codes  # noqa: E402
from pyhash.ops.hamming import hamming_distance, hamming_knn, hamming_range  # noqa: E402
from pyhash.ops.loss import exp_pair_loss  # noqa: E402
from pyhash.search import HammingSearch  # noqa: E402
from pyhash import metrics, nn, protocols  # noqa: E402
from pyhash.run import train  # noqa: E402

__all__ = [
    "HammingSearch",
    "exp_pair_loss",
    "hamming_distance",
    "hamming_knn",
    "hamming_range",
    "metrics",
    "nn",
    "protocols",
    "train",
    "pack_codes",
    "unpack_codes",
    "__version__",
]
