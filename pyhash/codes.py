"""Packing of binary codes: ``[N, nbits]`` values <-> ``uint8[N, nbits/8]`` packed bits.

Bit j of a code is stored in byte ``j // 8`` at bit position ``j % 8`` (least significant first,
as FAISS). A value maps to bit 1 when ``x >= 0`` (so ``sign(0)`` counts as +1) or when it is True.
"""

import torch

from pyhash._inputs import check_nbits, is_numpy, like_input, to_tensor

_BIT_WEIGHTS = [1, 2, 4, 8, 16, 32, 64, 128]


def pack_codes(x):
    """Pack ``x[N, nbits]`` (float, integer ±1/0-1, or bool; tensor or array) to ``uint8[N, nbits/8]``.

    Returns the same kind as the input (numpy array, or tensor on the input's device). NaN values
    raise ValueError: they have no bit.
    """
    t = to_tensor(x, "x")
    if t.dim() != 2:
        raise ValueError(f"x must be 2-D [N, nbits], got shape {tuple(t.shape)}")
    check_nbits(t.shape[1])
    if t.dtype == torch.bool:
        bits = t
    elif t.is_floating_point():
        if torch.isnan(t).any():
            raise ValueError("x contains NaN values, which have no sign")
        bits = t >= 0
    elif t.is_complex():
        raise TypeError("x must be real (float, integer or bool), got a complex dtype")
    else:
        bits = t >= 0
    weights = torch.tensor(_BIT_WEIGHTS, dtype=torch.uint8, device=t.device)
    grouped = bits.reshape(t.shape[0], t.shape[1] // 8, 8).to(torch.uint8)
    packed = (grouped * weights).sum(dim=2, dtype=torch.uint8)
    return like_input(packed, is_numpy(x))


def unpack_codes(codes, *, signed: bool = False):
    """Unpack ``uint8[N, nbits/8]`` to ``uint8[N, nbits]`` bits, or to float32 ±1 with signed=True."""
    t = to_tensor(codes, "codes")
    if t.dtype != torch.uint8 or t.dim() != 2:
        raise ValueError(f"codes must be uint8[N, nbits/8], got {t.dtype} of shape {tuple(t.shape)}")
    shifts = torch.arange(8, dtype=torch.uint8, device=t.device)
    bits = (t.unsqueeze(-1) >> shifts) & 1
    bits = bits.reshape(t.shape[0], t.shape[1] * 8)
    if signed:
        bits = bits.to(torch.float32) * 2 - 1
    return like_input(bits, is_numpy(codes))
