"""Conversion and validation of user inputs shared by the public functions."""

import numbers

import numpy as np
import torch

MAX_BITS = 4096


def is_numpy(x) -> bool:
    return isinstance(x, np.ndarray)


def to_tensor(x, name: str, allow_sequence: bool = False) -> torch.Tensor:
    """A torch view of a numpy array or tensor (or a list/tuple/range if allowed); else TypeError."""
    if allow_sequence and isinstance(x, (list, tuple, range)):
        x = np.asarray(x)
        if x.size == 0:
            x = x.astype(np.int64)
    if isinstance(x, torch.Tensor):
        return x
    if isinstance(x, np.ndarray):
        return torch.from_numpy(np.ascontiguousarray(x))
    raise TypeError(f"{name} must be a torch.Tensor or numpy.ndarray, got {type(x).__name__}")


def check_nbits(nbits) -> int:
    """nbits must be an integer multiple of 8 in [8, 4096]."""
    if isinstance(nbits, bool) or not isinstance(nbits, numbers.Integral):
        raise TypeError(f"nbits must be an integer, got {type(nbits).__name__}")
    nbits = int(nbits)
    if nbits % 8 != 0 or not 8 <= nbits <= MAX_BITS:
        raise ValueError(f"nbits must be a multiple of 8 between 8 and {MAX_BITS}, got {nbits}")
    return nbits


def codes_tensor(x, name: str, nbits=None) -> torch.Tensor:
    """Packed codes ``uint8[N, nbits/8]`` as a tensor, with errors naming the problem."""
    t = to_tensor(x, name)
    if t.dtype != torch.uint8:
        raise TypeError(
            f"{name} must be packed codes with dtype uint8, got {t.dtype}; "
            "use pyhash.pack_codes to pack float, ±1 or bool codes"
        )
    if t.dim() != 2:
        raise ValueError(f"{name} must be 2-D [N, nbits/8], got shape {tuple(t.shape)}")
    width = t.shape[1]
    if nbits is not None and width * 8 != nbits:
        raise ValueError(f"{name} have {width * 8} bits per code ({width} bytes), expected {nbits}")
    if not 1 <= width <= MAX_BITS // 8:
        raise ValueError(f"{name} must have 1 to {MAX_BITS // 8} bytes per code, got {width}")
    return t


def check_count(value, name: str, minimum: int) -> int:
    """An integer >= minimum (bools and floats are rejected)."""
    if isinstance(value, torch.Tensor) and value.dim() == 0 and not value.is_floating_point():
        value = value.item()
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} must be an integer, got {type(value).__name__} {value!r}")
    value = int(value)
    if value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value}")
    return value


def same_device(a: torch.Tensor, b: torch.Tensor, name_a: str, name_b: str) -> None:
    if a.device != b.device:
        raise ValueError(f"{name_a} are on {a.device} but {name_b} are on {b.device}")


def like_input(t: torch.Tensor, as_numpy: bool):
    """Return t as numpy when the user passed numpy, else as the tensor."""
    return t.cpu().numpy() if as_numpy else t
