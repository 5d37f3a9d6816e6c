"""HammingSearch: an exact Hamming-distance index over packed binary codes (CPU or CUDA).

A drop-in for FAISS ``IndexBinaryFlat`` / ``IndexBinaryIDMap`` that also takes torch tensors, has
no cap on k, runs range search on GPU, and breaks distance ties by ascending id on every backend.
"""

import threading

import numpy as np
import torch

from pyhash._inputs import (
    check_count,
    check_nbits,
    codes_tensor,
    is_numpy,
    like_input,
    to_tensor,
)

INT32_MAX = 2**31 - 1


def _ids_are_positions(ids: torch.Tensor) -> bool:
    """Whether the held ids (unique, ascending, >= 0) are 0..n-1, so results need no id lookup:
    a gather of Q*k random ids from a large index costs a cache miss each (about 3 ms of a 48 ms
    k = 100 search of 1M codes)."""
    n = ids.shape[0]
    return n == 0 or int(ids[-1]) == n - 1


def _ids_tensor(ids, n: int) -> torch.Tensor:
    t = to_tensor(ids, "ids", allow_sequence=True)
    if t.is_floating_point() or t.is_complex() or t.dtype == torch.bool:
        raise TypeError(f"ids must be integers, got dtype {t.dtype}")
    if t.dim() != 1 or t.shape[0] != n:
        raise ValueError(f"ids must be 1-D with one id per code ({n}), got shape {tuple(t.shape)}")
    t = t.to(torch.int64)
    if n and int(t.min()) < 0:
        raise ValueError("ids must be >= 0 (-1 marks missing results)")
    return t


class HammingSearch:
    """Exact k-NN and range search by Hamming distance.

    Args:
        nbits: code length in bits, a multiple of 8 from 8 to 4096.
        device: where codes are stored and searched ("cpu", "cuda", "cuda:1", torch.device).

    Codes are ``uint8[N, nbits/8]`` (see :func:`pyhash.pack_codes`), given as torch tensors on any
    device or numpy arrays; results come back as the same kind as the queries (numpy, or tensors
    on the queries' device). Each code carries an int64 id (default: consecutive integers after the
    largest id held). Results are ordered by (distance, id), identically on CPU and CUDA.

    Thread safety: any number of threads may call ``search``/``range_search`` at once. ``add``,
    ``remove_ids`` and ``reset`` may run concurrently with searches; a search sees the index as it
    was when the search started.
    """

    def __init__(self, nbits: int, device="cpu"):
        self._nbits = check_nbits(nbits)
        self._device = torch.device(device)
        if self._device.type == "cuda" and not torch.cuda.is_available():
            raise RuntimeError(f"device {self._device} was requested but CUDA is not available")
        if self._device.type not in ("cpu", "cuda"):
            raise ValueError(f"device must be 'cpu' or 'cuda', got {self._device}")
        self._lock = threading.Lock()
        self.reset()

    # -- properties ---------------------------------------------------------------------------
    @property
    def nbits(self) -> int:
        return self._nbits

    @property
    def code_size(self) -> int:
        return self._nbits // 8

    @property
    def device(self) -> torch.device:
        return self._device

    @property
    def ntotal(self) -> int:
        return self._count

    def __len__(self) -> int:
        return self._count

    def __repr__(self) -> str:
        return f"HammingSearch(nbits={self._nbits}, ntotal={self._count}, device='{self._device}')"

    # -- building -----------------------------------------------------------------------------
    def reset(self) -> None:
        """Remove every code."""
        with self._lock:
            self._codes = torch.empty((0, self.code_size), dtype=torch.uint8, device=self._device)
            self._ids = torch.empty((0,), dtype=torch.int64, device=self._device)
            self._count = 0

    def _snapshot(self):
        with self._lock:
            return self._codes[: self._count], self._ids[: self._count]

    def add(self, codes, ids=None) -> None:
        """Add codes ``uint8[n, nbits/8]`` with optional int64 ids ``[n]`` (unique, >= 0)."""
        new = codes_tensor(codes, "codes", self._nbits).to(self._device).contiguous()
        n = new.shape[0]
        if ids is not None:
            new_ids = _ids_tensor(ids, n).to(self._device)
        if n == 0:
            return
        with self._lock:
            held = self._ids[: self._count]
            if ids is None:
                start = int(held[-1]) + 1 if self._count else 0
                new_ids = torch.arange(start, start + n, dtype=torch.int64, device=self._device)
            else:
                sorted_new = torch.sort(new_ids).values
                if n > 1 and bool((sorted_new[1:] == sorted_new[:-1]).any()):
                    raise ValueError("ids contain duplicates")
                if self._count:
                    pos = torch.searchsorted(held, sorted_new).clamp_(max=self._count - 1)
                    if bool((held[pos] == sorted_new).any()):
                        raise ValueError("some ids are already in the index")
            appends_in_order = (self._count == 0 or int(new_ids[0]) > int(held[-1])) and (
                n == 1 or bool((new_ids[1:] > new_ids[:-1]).all())
            )
            if appends_in_order:
                self._append(new, new_ids)
            else:
                # Keep storage sorted by id so that ties by position are ties by id.
                all_ids = torch.cat([held, new_ids])
                all_codes = torch.cat([self._codes[: self._count], new])
                order = torch.argsort(all_ids, stable=True)
                self._codes, self._ids = all_codes[order], all_ids[order]
                self._count = self._ids.shape[0]

    def _append(self, new: torch.Tensor, new_ids: torch.Tensor) -> None:
        needed = self._count + new.shape[0]
        if needed > self._codes.shape[0]:
            # Grow into fresh tensors: searches holding the old ones are unaffected.
            capacity = max(needed, 2 * self._codes.shape[0], 1024)
            codes = torch.empty((capacity, self.code_size), dtype=torch.uint8, device=self._device)
            ids = torch.empty((capacity,), dtype=torch.int64, device=self._device)
            codes[: self._count] = self._codes[: self._count]
            ids[: self._count] = self._ids[: self._count]
            self._codes, self._ids = codes, ids
        self._codes[self._count : needed] = new
        self._ids[self._count : needed] = new_ids
        self._count = needed

    def remove_ids(self, ids) -> int:
        """Remove the codes with these ids (absent ids are ignored); returns how many were removed."""
        t = to_tensor(ids, "ids", allow_sequence=True)
        if t.is_floating_point() or t.dtype == torch.bool:
            raise TypeError(f"ids must be integers, got dtype {t.dtype}")
        t = t.reshape(-1).to(torch.int64).to(self._device)
        with self._lock:
            held = self._ids[: self._count]
            keep = ~torch.isin(held, t)
            removed = int(self._count - int(keep.sum()))
            if removed:
                self._codes = self._codes[: self._count][keep].contiguous()
                self._ids = held[keep].contiguous()
                self._count = self._ids.shape[0]
        return removed

    def reconstruct(self, id) -> torch.Tensor:
        """The stored code ``uint8[nbits/8]`` of one id (KeyError if absent), on the index device."""
        key = check_count(id, "id", 0)
        codes, ids = self._snapshot()
        pos = int(torch.searchsorted(ids, torch.tensor([key], device=ids.device))[0]) if len(ids) else 0
        if pos >= ids.shape[0] or int(ids[pos]) != key:
            raise KeyError(f"id {key} is not in the index")
        return codes[pos].clone()

    def ids(self) -> torch.Tensor:
        """The ids held, ascending, ``int64[ntotal]``."""
        return self._snapshot()[1].clone()

    def codes(self) -> torch.Tensor:
        """The codes held, in ascending id order, ``uint8[ntotal, nbits/8]``."""
        return self._snapshot()[0].clone()

    # -- searching ----------------------------------------------------------------------------
    def _queries(self, queries) -> torch.Tensor:
        q = codes_tensor(queries, "queries", self._nbits)
        if isinstance(queries, torch.Tensor) and q.device != self._device:
            raise ValueError(
                f"queries are on {q.device} but the index is on {self._device}; move them with .to()"
            )
        return q.to(self._device)

    def _out(self, t: torch.Tensor, queries):
        if is_numpy(queries):
            return t.cpu().numpy()
        return like_input(t, False)

    def search(self, queries, k):
        """The k nearest codes of each query.

        Args:
            queries: uint8[Q, nbits/8] on the index device (or a numpy array).
            k: int >= 1; any value (no cap), padded when k > ntotal.
        Returns:
            D int32[Q, k] and I int64[Q, k] (ids), sorted by (distance, id); missing results have
            distance INT32_MAX and id -1.
        """
        q = self._queries(queries)
        k = check_count(k, "k", 1)
        codes, ids = self._snapshot()
        D, pos = torch.ops.pyhash.hamming_knn(q, codes, k)
        I = pos if _ids_are_positions(ids) else torch.where(pos >= 0, ids[pos.clamp(min=0)], pos)
        return self._out(D, queries), self._out(I, queries)

    def range_search(self, queries, max_distance):
        """All codes within ``max_distance`` (inclusive: ``d <= max_distance``) of each query.

        FAISS's binary range search is strict (``d < radius``): ``max_distance = radius - 1``
        gives the same results.

        Returns:
            lims int64[Q+1], D int32[M], I int64[M] (ids); query i owns ``lims[i]:lims[i+1]``,
            sorted by (distance, id).
        """
        q = self._queries(queries)
        max_distance = check_count(max_distance, "max_distance", 0)
        codes, ids = self._snapshot()
        lims, D, pos = torch.ops.pyhash.hamming_range(q, codes, max_distance)
        I = pos if _ids_are_positions(ids) else ids[pos]
        return self._out(lims, queries), self._out(D, queries), self._out(I, queries)

    # -- persistence and FAISS ----------------------------------------------------------------
    def save(self, path) -> None:
        """Write the index to ``path`` atomically (see :mod:`pyhash.index_io` for the format)."""
        from pyhash.index_io import write_index

        codes, ids = self._snapshot()
        write_index(path, self._nbits, codes.cpu().numpy(), ids.cpu().numpy())

    @classmethod
    def load(cls, path, device="cpu") -> "HammingSearch":
        """Read an index written by :meth:`save` (checked: magic, version, sizes, checksum)."""
        from pyhash.index_io import read_index

        nbits, codes, ids = read_index(path)
        index = cls(nbits, device=device)
        index._set(torch.from_numpy(codes), torch.from_numpy(ids))
        return index

    def _set(self, codes: torch.Tensor, ids: torch.Tensor) -> None:
        if ids.numel() and int(ids.min()) < 0:
            raise ValueError("ids must be >= 0 (-1 marks missing results)")
        if ids.numel() > 1 and not bool((ids[1:] > ids[:-1]).all()):
            order = torch.argsort(ids)
            codes, ids = codes[order], ids[order]
            if bool((ids[1:] == ids[:-1]).any()):
                raise ValueError("ids contain duplicates")
        with self._lock:
            self._codes = codes.to(self._device).contiguous()
            self._ids = ids.to(self._device).contiguous()
            self._count = ids.shape[0]

    def to_faiss(self):
        """A FAISS index with the same codes: ``IndexBinaryFlat`` when ids are 0..n-1, else
        ``IndexBinaryIDMap`` around one. Needs ``faiss`` (pip install faiss-cpu)."""
        import faiss

        codes, ids = self._snapshot()
        codes_np = np.ascontiguousarray(codes.cpu().numpy())
        ids_np = np.ascontiguousarray(ids.cpu().numpy())
        flat = faiss.IndexBinaryFlat(self._nbits)
        if np.array_equal(ids_np, np.arange(len(ids_np))):
            flat.add(codes_np)
            return flat
        index = faiss.IndexBinaryIDMap(flat)
        index.add_with_ids(codes_np, ids_np)
        return index

    @classmethod
    def from_faiss(cls, index, device="cpu") -> "HammingSearch":
        """Build from a FAISS ``IndexBinaryFlat`` or ``IndexBinaryIDMap`` (codes copied)."""
        import faiss

        if isinstance(index, faiss.IndexBinaryIDMap):
            ids = faiss.vector_to_array(index.id_map).astype(np.int64)
            inner = faiss.downcast_IndexBinary(index.index)
        else:
            inner, ids = index, None
        if not isinstance(inner, faiss.IndexBinaryFlat):
            raise TypeError(f"only IndexBinaryFlat (optionally in an IDMap) is supported, got {type(inner).__name__}")
        n, width = inner.ntotal, inner.code_size
        codes = faiss.vector_to_array(inner.xb).reshape(n, width)
        if ids is None:
            ids = np.arange(n, dtype=np.int64)
        result = cls(inner.d, device=device)
        if n:
            result._set(torch.from_numpy(np.ascontiguousarray(codes)), torch.from_numpy(ids))
        return result
