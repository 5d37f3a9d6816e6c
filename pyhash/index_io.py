"""On-disk format of a HammingSearch index (no pickle), written atomically.

Layout, all integers little-endian::

    offset  size  field
    0       8     magic  b"PYHASHIX"
    8       4     format version (uint32, currently 1)
    12      4     nbits (uint32, multiple of 8 in [8, 4096])
    16      8     count (uint64, number of codes)
    24      4     CRC-32 of the payload (uint32, zlib.crc32)
    28      4     reserved (zero)
    32      8*count          ids, int64, ascending
    ...     count*nbits/8    codes, uint8, row i belongs to ids[i]

The file is written to a temporary file in the same folder, flushed and fsynced, then renamed over
the target, so a crash leaves either the old file or the new one, never a partial file.
"""

import os
import struct
import zlib

import numpy as np

from pyhash._atomic import atomic_write

MAGIC = b"PYHASHIX"
VERSION = 1
_HEADER = struct.Struct("<8sIIQII")


class IndexFormatError(ValueError):
    """The file is not a valid pyhash index (wrong magic, version, size or checksum)."""


def _bytes(a: np.ndarray) -> memoryview:
    """The bytes of a C-contiguous array, without a copy; empty arrays too (memoryview.cast
    refuses shapes with a zero)."""
    return memoryview(a.reshape(-1).view(np.uint8))


def _crc(ids: np.ndarray, codes: np.ndarray) -> int:
    crc = zlib.crc32(_bytes(ids))
    return zlib.crc32(_bytes(codes), crc) & 0xFFFFFFFF


def write_index(path, nbits: int, codes: np.ndarray, ids: np.ndarray) -> None:
    """Write codes ``uint8[n, nbits/8]`` and ids ``int64[n]`` to ``path`` atomically."""
    codes = np.ascontiguousarray(codes, dtype=np.uint8)
    ids = np.ascontiguousarray(ids, dtype="<i8")
    if codes.ndim != 2 or codes.shape[1] * 8 != nbits or ids.shape != (codes.shape[0],):
        raise ValueError("codes and ids do not describe one index")
    header = _HEADER.pack(MAGIC, VERSION, nbits, codes.shape[0], _crc(ids, codes), 0)
    with atomic_write(path) as f:
        f.write(header)
        f.write(_bytes(ids))
        f.write(_bytes(codes))


def read_index(path):
    """Read ``(nbits, codes uint8[n, nbits/8], ids int64[n])`` from ``path``, checking it fully."""
    path = os.fspath(path)
    size = os.path.getsize(path)
    with open(path, "rb") as f:
        head = f.read(_HEADER.size)
        if len(head) < _HEADER.size:
            raise IndexFormatError(f"{path}: file too short for a pyhash index header ({size} bytes)")
        magic, version, nbits, count, crc, _ = _HEADER.unpack(head)
        if magic != MAGIC:
            raise IndexFormatError(f"{path}: not a pyhash index (bad magic {magic!r})")
        if version != VERSION:
            raise IndexFormatError(f"{path}: unsupported index format version {version} (expected {VERSION})")
        if nbits % 8 != 0 or not 8 <= nbits <= 4096:
            raise IndexFormatError(f"{path}: invalid nbits {nbits} in header")
        expected = _HEADER.size + count * 8 + count * (nbits // 8)
        if size != expected:
            raise IndexFormatError(
                f"{path}: file is {size} bytes but the header describes {expected} "
                "(truncated or corrupted)"
            )
        ids = np.frombuffer(f.read(count * 8), dtype="<i8").astype(np.int64)
        codes = np.frombuffer(f.read(count * (nbits // 8)), dtype=np.uint8).reshape(count, nbits // 8)
    if _crc(np.ascontiguousarray(ids, dtype="<i8"), codes) != crc:
        raise IndexFormatError(f"{path}: checksum mismatch (the file is corrupted)")
    return nbits, codes.copy(), ids
