"""HammingSearch: API contract, ids, persistence, FAISS parity, threads and errors."""

import os
import stat
import threading

import numpy as np
import pytest
import torch
from helpers import random_codes

import pyhash
from pyhash.index_io import IndexFormatError
from pyhash.reference import hamming_knn_ref, hamming_range_ref

INT32_MAX = 2**31 - 1


def _index(device, n=500, nbits=64, seed=0, low_entropy=False):
    codes = random_codes(n, nbits // 8, seed=seed, low_entropy=low_entropy)
    index = pyhash.HammingSearch(nbits, device=device)
    index.add(codes.to(device))
    return index, codes


def test_search_matches_reference(device):
    index, codes = _index(device, low_entropy=True)
    q = random_codes(30, 8, seed=9, low_entropy=True)
    for k in (1, 10, 500, 600):
        D, I = index.search(q.to(device), k)
        Dr, Ir = hamming_knn_ref(q, codes, k)
        assert torch.equal(D.cpu(), Dr) and torch.equal(I.cpu(), Ir)
    lims, D, I = index.range_search(q.to(device), 20)
    lr, Dr, Ir = hamming_range_ref(q, codes, 20)
    assert torch.equal(lims.cpu(), lr) and torch.equal(D.cpu(), Dr.int()) and torch.equal(I.cpu(), Ir)


def test_user_ids_and_tie_order_by_id(device):
    index = pyhash.HammingSearch(16, device=device)
    same = torch.zeros((4, 2), dtype=torch.uint8)
    index.add(same, ids=[40, 10, 30, 20])  # out of order: stored sorted by id
    index.add(same[:1], ids=np.array([5]))
    D, I = index.search(same[:1].to(device), 5)
    assert I.cpu().tolist() == [[5, 10, 20, 30, 40]]
    assert D.cpu().tolist() == [[0] * 5]
    assert index.ids().tolist() == [5, 10, 20, 30, 40]


def test_default_ids_continue_after_largest(device):
    index = pyhash.HammingSearch(8, device=device)
    codes = torch.arange(4, dtype=torch.uint8).reshape(4, 1)
    index.add(codes[:2])
    index.add(codes[2:3], ids=[10])
    index.add(codes[3:])
    assert index.ids().tolist() == [0, 1, 10, 11]


def test_remove_reconstruct_reset(device):
    index, codes = _index(device, n=20, nbits=24)
    assert index.remove_ids([3, 5, 999]) == 2
    assert index.ntotal == 18 and 3 not in index.ids().tolist()
    assert torch.equal(index.reconstruct(4).cpu(), codes[4])
    with pytest.raises(KeyError, match="3"):
        index.reconstruct(3)
    D, I = index.search(codes[3:4].to(device), 18)
    assert 3 not in I.cpu().tolist()[0]
    index.reset()
    assert index.ntotal == 0


def test_ids_after_removals_at_the_end_and_in_the_middle(device):
    # Ids 0..n-1 skip the id lookup; a removal in the middle must bring it back.
    index, codes = _index(device, n=300, low_entropy=True)
    q = random_codes(12, 8, seed=5, low_entropy=True)
    gone = set()
    for removed in ([295, 296, 297, 298, 299], [10, 150]):
        index.remove_ids(removed)
        gone.update(removed)
        kept = torch.tensor([i for i in range(300) if i not in gone])
        assert torch.equal(index.ids().cpu(), kept)
        D, I = index.search(q.to(device), 40)
        Dr, Pr = hamming_knn_ref(q, codes[kept], 40)
        assert torch.equal(D.cpu(), Dr) and torch.equal(I.cpu(), kept[Pr])
        lims, D, I = index.range_search(q.to(device), 20)
        lr, Dr, Pr = hamming_range_ref(q, codes[kept], 20)
        assert torch.equal(lims.cpu(), lr) and torch.equal(D.cpu(), Dr.int()) and torch.equal(I.cpu(), kept[Pr])


def test_empty_index_returns_padding(device):
    index = pyhash.HammingSearch(32, device=device)
    q = random_codes(3, 4, seed=1).to(device)
    D, I = index.search(q, 4)
    assert (I == -1).all() and (D == INT32_MAX).all() and D.shape == (3, 4)
    lims, D, I = index.range_search(q, 32)
    assert lims.tolist() == [0, 0, 0, 0] and I.numel() == 0


def test_k_larger_than_ntotal_pads(device):
    index, codes = _index(device, n=5)
    D, I = index.search(codes[:2].to(device), 8)
    assert (I[:, 5:] == -1).all() and (D[:, 5:] == INT32_MAX).all()
    assert sorted(I[0, :5].cpu().tolist()) == [0, 1, 2, 3, 4]


def test_k_equal_ntotal_and_beyond_faiss_cap():
    index, codes = _index("cpu", n=3000, low_entropy=True)
    D, I = index.search(codes[:4], 3000)
    assert sorted(I[0].tolist()) == list(range(3000))
    Dr, Ir = hamming_knn_ref(codes[:4], codes, 3000)
    assert torch.equal(I, Ir) and torch.equal(D, Dr)


def test_empty_query_batch(device):
    index, codes = _index(device, n=10)
    D, I = index.search(codes[:0].to(device), 3)
    assert D.shape == (0, 3) and I.shape == (0, 3)
    lims, D, I = index.range_search(codes[:0].to(device), 3)
    assert lims.tolist() == [0]


def test_numpy_inputs_give_numpy_outputs():
    index, codes = _index("cpu", n=50)
    D, I = index.search(codes[:3].numpy(), 2)
    assert isinstance(D, np.ndarray) and I.dtype == np.int64 and D.dtype == np.int32


@pytest.mark.parametrize(
    "call, error, match",
    [
        (lambda ix, q: ix.search(q.float(), 1), TypeError, "uint8"),
        (lambda ix, q: ix.search(q[:, :4], 1), ValueError, "bits"),
        (lambda ix, q: ix.search(q, 0), ValueError, "k must be >= 1"),
        (lambda ix, q: ix.search(q, 1.5), TypeError, "k must be an integer"),
        (lambda ix, q: ix.search(q, "3"), TypeError, "k must be an integer"),
        (lambda ix, q: ix.range_search(q, -1), ValueError, "max_distance"),
        (lambda ix, q: ix.add(q, ids=[1, 2]), ValueError, "one id per code"),
        (lambda ix, q: ix.add(q, ids=np.zeros(len(q))), TypeError, "integers"),
        (lambda ix, q: ix.add(q[:2], ids=[7, 7]), ValueError, "duplicates"),
        (lambda ix, q: ix.add(q[:1], ids=[0]), ValueError, "already"),
        (lambda ix, q: ix.add(q[:1], ids=[-4]), ValueError, ">= 0"),
        (lambda ix, q: ix.add(q[0]), ValueError, "2-D"),
    ],
)
def test_bad_input_raises(call, error, match):
    index, codes = _index("cpu", n=10)
    with pytest.raises(error, match=match):
        call(index, codes[:4])
    assert index.ntotal == 10  # nothing half-added


@pytest.mark.parametrize("nbits, error", [(12, ValueError), (0, ValueError), (4104, ValueError), (64.0, TypeError)])
def test_bad_nbits(nbits, error):
    with pytest.raises(error, match="nbits"):
        pyhash.HammingSearch(nbits)


@pytest.mark.cuda
def test_queries_on_other_device_raise():
    index, codes = _index("cuda", n=10)
    with pytest.raises(ValueError, match="index is on cuda"):
        index.search(codes[:2], 1)


def test_save_load_roundtrip(tmp_path, device):
    index, codes = _index(device, n=300, nbits=72)
    index.remove_ids([1, 2])
    path = tmp_path / "codes.phx"
    index.save(path)
    loaded = pyhash.HammingSearch.load(path, device=device)
    assert loaded.nbits == 72 and loaded.ntotal == 298
    assert torch.equal(loaded.ids().cpu(), index.ids().cpu())
    q = codes[:10].to(device)
    for a, b in zip(index.search(q, 7), loaded.search(q, 7)):
        assert torch.equal(a, b)
    assert [p.name for p in tmp_path.iterdir()] == ["codes.phx"]  # no temporary left behind
    umask = os.umask(0o022)
    os.umask(umask)
    assert stat.S_IMODE(path.stat().st_mode) == 0o666 & ~umask  # as open() would make it, not mkstemp's 0600


def test_save_load_empty_index(tmp_path, device):
    index = pyhash.HammingSearch(24, device=device)
    path = tmp_path / "empty.phx"
    index.save(path)
    assert path.stat().st_size == 32  # the header alone
    loaded = pyhash.HammingSearch.load(path, device=device)
    assert loaded.nbits == 24 and loaded.ntotal == 0
    D, I = loaded.search(random_codes(2, 3, seed=1).to(device), 2)
    assert (I == -1).all() and (D == 2**31 - 1).all()
    loaded.add(random_codes(4, 3, seed=2).to(device))
    assert loaded.ntotal == 4


def test_load_rejects_corrupted_and_truncated_files(tmp_path):
    index, _ = _index("cpu", n=100)
    path = tmp_path / "i.phx"
    index.save(path)
    raw = path.read_bytes()
    cases = {
        "truncated": raw[:-5],
        "header only": raw[:20],
        "bad magic": b"NOTANIDX" + raw[8:],
        "flipped bit": raw[:-1] + bytes([raw[-1] ^ 1]),
        "bad version": raw[:8] + (99).to_bytes(4, "little") + raw[12:],
    }
    matches = {"truncated": "truncated", "header only": "too short", "bad magic": "magic",
               "flipped bit": "checksum", "bad version": "version"}
    for name, content in cases.items():
        bad = tmp_path / f"{name.replace(' ', '_')}.phx"
        bad.write_bytes(content)
        with pytest.raises(IndexFormatError, match=matches[name]):
            pyhash.HammingSearch.load(bad)


def test_load_rejects_ids_no_index_can_hold(tmp_path):
    from pyhash.index_io import write_index

    codes = random_codes(3, 8, seed=4).numpy()
    for name, ids, match in (("negative", [0, -1, 2], ">= 0"), ("duplicate", [5, 1, 5], "duplicates")):
        write_index(tmp_path / f"{name}.phx", 64, codes, np.array(ids))  # valid checksum, bad contents
        with pytest.raises(ValueError, match=match):
            pyhash.HammingSearch.load(tmp_path / f"{name}.phx")


def test_save_is_atomic_when_writing_fails(tmp_path, monkeypatch):
    index, _ = _index("cpu", n=50)
    path = tmp_path / "i.phx"
    index.save(path)
    before = path.read_bytes()

    def broken_fsync(fd):
        raise OSError("disk full")

    monkeypatch.setattr(os, "fsync", broken_fsync)
    index.add(random_codes(5, 8, seed=3))
    with pytest.raises(OSError, match="disk full"):
        index.save(path)
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["i.phx"]


def test_concurrent_searches_and_adds_are_safe():
    index, codes = _index("cpu", n=20_000, low_entropy=True)
    q = codes[:64]
    expected = index.search(q, 10)
    errors = []

    def searcher():
        try:
            for _ in range(10):
                D, I = index.search(q, 10)
                # Adds only append larger ids, so the first 20k answers cannot change.
                if not (torch.equal(D, expected[0]) and torch.equal(I, expected[1])):
                    errors.append("search result changed")
        except Exception as exc:  # pragma: no cover - reported below
            errors.append(repr(exc))

    def adder():
        for s in range(20):
            index.add(random_codes(100, 8, seed=100 + s) | 0xF0)  # far from q's low-entropy codes

    threads = [threading.Thread(target=searcher) for _ in range(4)] + [threading.Thread(target=adder)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors
    assert index.ntotal == 22_000


def _faiss():
    return pytest.importorskip("faiss")


def test_faiss_parity():
    faiss = _faiss()
    for nbits in (64, 256, 24):
        codes = random_codes(4000, nbits // 8, seed=nbits, low_entropy=False)
        q = random_codes(50, nbits // 8, seed=nbits + 1)
        flat = faiss.IndexBinaryFlat(nbits)
        flat.add(codes.numpy())
        index = pyhash.HammingSearch(nbits)
        index.add(codes)
        for k in (1, 10, 100):
            Df, If = flat.search(q.numpy(), k)
            D, I = index.search(q.numpy(), k)
            np.testing.assert_array_equal(D, Df)  # distances exact
            # ids: equal wherever the distance is below the row's last distance (the tie group at
            # the boundary may be chosen differently by FAISS's heap)
            inner = D < D[:, -1:]
            np.testing.assert_array_equal(np.sort(np.where(inner, I, -1), 1), np.sort(np.where(inner, If, -1), 1))
            # and our choice inside each tie group is the smallest ids
            _, Ir = hamming_knn_ref(q, codes, k)
            np.testing.assert_array_equal(I, Ir.numpy())
        # range: FAISS's radius is strict
        lims_f, Df, If = flat.range_search(q.numpy(), nbits // 3)
        lims, D, I = index.range_search(q.numpy(), nbits // 3 - 1)
        np.testing.assert_array_equal(lims, lims_f)
        for i in range(len(q)):
            a, b = slice(lims[i], lims[i + 1]), slice(lims_f[i], lims_f[i + 1])
            assert sorted(zip(D[a], I[a])) == sorted(zip(Df[b], If[b]))


def test_to_and_from_faiss():
    _faiss()
    index, codes = _index("cpu", n=100, nbits=32)
    flat = index.to_faiss()
    assert type(flat).__name__ == "IndexBinaryFlat" and flat.ntotal == 100
    back = pyhash.HammingSearch.from_faiss(flat)
    assert torch.equal(back.codes(), index.codes()) and torch.equal(back.ids(), index.ids())
    index.remove_ids([0, 50])
    mapped = index.to_faiss()
    assert type(mapped).__name__ == "IndexBinaryIDMap"
    D, I = mapped.search(codes[1:2].numpy(), 1)
    assert I[0, 0] == 1
    back = pyhash.HammingSearch.from_faiss(mapped)
    assert back.ids().tolist() == index.ids().tolist()
