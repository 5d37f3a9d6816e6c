"""pack_codes / unpack_codes: bit order, sign convention, kinds and errors."""

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import pyhash


def test_bit_order_is_least_significant_first():
    x = -np.ones((1, 16), dtype=np.float32)
    x[0, 0] = 1.0  # bit 0 -> byte 0, value 1
    x[0, 9] = 1.0  # bit 9 -> byte 1, value 2
    np.testing.assert_array_equal(pyhash.pack_codes(x), np.array([[1, 2]], dtype=np.uint8))


def test_matches_numpy_packbits_little():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((7, 72))
    expected = np.packbits(x >= 0, axis=1, bitorder="little")
    np.testing.assert_array_equal(pyhash.pack_codes(x), expected)


def test_zero_maps_to_one_and_bool_ints_and_bits():
    assert pyhash.pack_codes(np.zeros((1, 8)))[0, 0] == 255
    assert pyhash.pack_codes(np.array([[True] + [False] * 7]))[0, 0] == 1
    assert pyhash.pack_codes(torch.tensor([[1, -1, 1, -1, 1, -1, 1, -1]]))[0, 0] == 0b01010101
    assert pyhash.pack_codes(np.array([[1, 0, 0, 0, 0, 0, 0, 1]], np.uint8))[0, 0] == 0b10000001


@settings(max_examples=50, deadline=None)
@given(n=st.integers(0, 20), nbytes=st.integers(1, 64), seed=st.integers(0, 2**31))
def test_roundtrip(n, nbytes, seed):
    rng = np.random.default_rng(seed)
    codes = rng.integers(0, 256, (n, nbytes), dtype=np.uint8)
    bits = pyhash.unpack_codes(codes)
    assert bits.shape == (n, nbytes * 8)
    np.testing.assert_array_equal(pyhash.pack_codes(bits.astype(bool)), codes)
    np.testing.assert_array_equal(pyhash.pack_codes(bits), codes)  # the uint8 0/1 bits unpack_codes gives
    signed = pyhash.unpack_codes(torch.from_numpy(codes), signed=True)
    assert signed.dtype == torch.float32
    assert torch.equal(pyhash.pack_codes(signed), torch.from_numpy(codes))


def test_output_follows_input_kind(device):
    x = torch.randn(3, 16, device=device)
    packed = pyhash.pack_codes(x)
    assert isinstance(packed, torch.Tensor) and packed.device.type == device
    assert isinstance(pyhash.pack_codes(x.cpu().numpy()), np.ndarray)


@pytest.mark.parametrize(
    "x, error, match",
    [
        (np.zeros((2, 12)), ValueError, "multiple of 8"),
        (np.zeros((2, 4104)), ValueError, "multiple of 8"),
        (np.zeros(8), ValueError, "2-D"),
        (np.array([[np.nan] * 8]), ValueError, "NaN"),
        ([[1.0] * 8], TypeError, "torch.Tensor or numpy"),
        (np.array([[1, -1, 0, 1, 1, 1, 1, 1]]), ValueError, "must hold ±1 codes"),
        (torch.tensor([[2, 1, 1, 1, 1, 1, 1, 1]], dtype=torch.int8), ValueError, "must hold ±1 codes"),
        (np.full((1, 8), 255, np.uint8), ValueError, "0/1 bits"),
    ],
)
def test_pack_errors(x, error, match):
    with pytest.raises(error, match=match):
        pyhash.pack_codes(x)
