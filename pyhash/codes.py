"""Packing of binary codes: ``[N, nbits]`` values <-> ``uint8[N, nbits/8]`` packed bits.

Bit j of a code is stored in byte ``j // 8`` at bit position ``j % 8`` (least significant first,
as FAISS). A float maps to bit 1 when ``x >= 0`` (so ``sign(0)`` counts as +1); a signed integer
must be ±1 (bit 1 for +1); a bool or an unsigned 0/1 value is the bit itself, so
``pack_codes(unpack_codes(c)) == c``.
"""

import torch

from pyhash._inputs import check_nbits, is_numpy, like_input, to_tensor

_BIT_WEIGHTS = [1, 2, 4, 8, 16, 32, 64, 128]


def pack_codes(x):
    """Pack ``x[N, nbits]`` to ``uint8[N, nbits/8]``: float (bit = x >= 0), signed integer ±1
    (bit = x > 0), or bits as bool / unsigned 0-1 (the output of :func:`unpack_codes`).

    Returns the same kind as the input (numpy array, or tensor on the input's device). ValueError
    for NaN (no sign), a signed integer other than ±1 (0 is ambiguous: pass floats for sign(0) =
    +1, or bool bits) and an unsigned value above 1 (such codes are probably packed already).
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
    elif not t.is_signed():
        if t.numel() and bool((t > 1).any()):
            raise ValueError(f"{t.dtype} x must hold 0/1 bits (as unpack_codes returns), got values above 1; "
                             "packed codes need no packing")
        bits = t != 0
    else:
        if t.numel() and not bool(((t == 1) | (t == -1)).all()):
            raise ValueError(f"integer x ({t.dtype}) must hold ±1 codes; pass floats for signs (x >= 0 maps to 1) "
                             "or bool for 0/1 bits")
        bits = t > 0
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
