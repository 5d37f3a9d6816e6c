"""Every CUDA kernel of pyhash once per code path, on small inputs, each result compared with the
CPU kernel. Meant to run under compute-sanitizer on the GPU machine (tools/gpu_check.sh does):

    PYTORCH_NO_CUDA_MEMORY_CACHING=1 compute-sanitizer --tool memcheck --error-exitcode 99 \
        python3 tools/cuda_smoke.py

(without the caching allocator each tensor is its own allocation, so an out-of-bounds access is
not hidden inside a cached block). Prints one line per case and exits 1 on a mismatch.
`--device cpu` runs the same calls on the CPU against themselves: it checks the script only.
"""
import argparse
import os
import sys

import torch

import pyhash

CANDIDATE_MIN_DATABASE = 1 << 18  # csrc/cuda/hamming_cuda.cpp: k <= 128 on >= 2^18 codes


def random_codes(gen, n, nbytes, distinct=None):
    if distinct is None:
        return torch.randint(0, 256, (n, nbytes), dtype=torch.uint8, generator=gen)
    pool = torch.randint(0, 256, (distinct, nbytes), dtype=torch.uint8, generator=gen)
    return pool[torch.randint(0, distinct, (n,), generator=gen)]


class Checker:
    def __init__(self, device):
        self.device = device
        self.failures = 0

    def same(self, name, got, want, rtol=0.0, atol=0.0):
        got = [g.cpu() for g in (got if isinstance(got, (tuple, list)) else [got])]
        want = [w.cpu() for w in (want if isinstance(want, (tuple, list)) else [want])]
        ok = len(got) == len(want) and all(
            g.shape == w.shape and (torch.equal(g, w) if rtol == 0 and atol == 0 else torch.allclose(g.double(), w.double(), rtol=rtol, atol=atol))
            for g, w in zip(got, want))
        self.failures += not ok
        print(f"{'ok  ' if ok else 'FAIL'} {name}", flush=True)

    def to(self, *tensors):
        return [t.to(self.device) for t in tensors]


def hamming_cases(c, gen):
    for nbytes in (1, 3, 8, 9, 16, 24, 32, 65, 512):
        a, b = random_codes(gen, 37, nbytes), random_codes(gen, 301, nbytes)
        c.same(f"distance {8 * nbytes} bits", torch.ops.pyhash.hamming_distance(*c.to(a, b)),
               torch.ops.pyhash.hamming_distance(a, b))
        for k in (1, 7, 301, 400):
            c.same(f"knn (threshold route) {8 * nbytes} bits k={k}", torch.ops.pyhash.hamming_knn(*c.to(a, b), k),
                   torch.ops.pyhash.hamming_knn(a, b, k))
        for r in (0, 4 * nbytes, 8 * nbytes):
            c.same(f"range {8 * nbytes} bits r={r}", torch.ops.pyhash.hamming_range(*c.to(a, b), r),
                   torch.ops.pyhash.hamming_range(a, b, r))
        a_low, b_low = random_codes(gen, 20, nbytes, distinct=3), random_codes(gen, 500, nbytes, distinct=3)
        c.same(f"knn with heavy ties {8 * nbytes} bits", torch.ops.pyhash.hamming_knn(*c.to(a_low, b_low), 50),
               torch.ops.pyhash.hamming_knn(a_low, b_low, 50))
    n = CANDIDATE_MIN_DATABASE + 5
    for nbytes in (8, 16, 24, 32, 40):  # one to four 64-bit words (compile-time kernels), then five
        db, q = random_codes(gen, n, nbytes), random_codes(gen, 21, nbytes)  # two query groups
        for k in (1, 10, 128):
            c.same(f"knn (candidate route) {8 * nbytes} bits k={k}", torch.ops.pyhash.hamming_knn(*c.to(q, db), k),
                   torch.ops.pyhash.hamming_knn(q, db, k))
    db, q = random_codes(gen, n, 8, distinct=5), random_codes(gen, 6, 8, distinct=5)
    q = torch.cat([q, random_codes(gen, 3, 8)])  # rows that overflow beside rows that do not
    c.same("knn candidate overflow fallback", torch.ops.pyhash.hamming_knn(*c.to(q, db), 10),
           torch.ops.pyhash.hamming_knn(q, db, 10))


def retrieval_cases(c, gen):
    for nbytes in (8, 65):
        q, d = random_codes(gen, 33, nbytes, distinct=40), random_codes(gen, 700, nbytes, distinct=40)
        single = (torch.randint(0, 5, (33,), generator=gen), torch.randint(0, 5, (700,), generator=gen))
        multi = (torch.randint(0, 2, (33, 4), generator=gen), torch.randint(0, 2, (700, 4), generator=gen))
        for kind, (ql, dl) in (("class ids", single), ("multi-hot", multi)):
            for topk in (700, 50):
                c.same(f"retrieval stats {8 * nbytes} bits {kind} topk={topk}",
                       torch.ops.pyhash.hamming_retrieval_stats(*c.to(q, d, ql, dl), topk),
                       torch.ops.pyhash.hamming_retrieval_stats(q, d, ql, dl, topk), rtol=1e-12, atol=1e-9)


def loss_case(c, gen, name, n, m, nbits, dtype, symmetric, multi, y_is_codes=False, **options):
    z = torch.randn(n, nbits, generator=gen).to(dtype)
    labels = torch.randint(0, 2, (n, 3), generator=gen) if multi else torch.randint(0, 4, (n,), generator=gen)
    y = y_labels = None
    if not symmetric:
        y = torch.randn(m, nbits, generator=gen).to(dtype)
        if y_is_codes:
            y = torch.where(y >= 0, 1.0, -1.0).to(dtype)
        y_labels = torch.randint(0, 2, (m, 3), generator=gen) if multi else torch.randint(0, 4, (m,), generator=gen)
    results = []
    for device in ("cpu", c.device):
        zd = z.to(device).requires_grad_()
        yd = None if y is None else y.to(device).requires_grad_()
        loss = pyhash.exp_pair_loss(zd, labels.to(device), yd, None if y_labels is None else y_labels.to(device),
                                    y_is_codes=y_is_codes, **options)
        loss.backward()
        results.append([loss.detach(), zd.grad] + ([] if yd is None else [yd.grad]))
    tol = dict(rtol=2e-3, atol=1e-5) if dtype == torch.float32 else dict(rtol=5e-2, atol=1e-3)
    c.same(name, results[1], results[0], **tol)


def loss_cases(c, gen):
    for kernel in ("simt", "tensor"):
        os.environ["PYHASH_CUDA_LOSS"] = kernel
        for nbits in (12, 64, 130):  # the tensor-core kernel takes up to 128 bits
            for surrogate in ("tanh", "bilinear", "cosine"):
                for weighting in ("uniform", "balanced"):
                    loss_case(c, gen, f"loss {kernel} {nbits} bits {surrogate} {weighting} asymmetric", 70, 333, nbits,
                              torch.float32, False, False, surrogate=surrogate, weighting=weighting, lam=2.0)
            loss_case(c, gen, f"loss {kernel} {nbits} bits symmetric", 129, 0, nbits, torch.float32, True, False)
            loss_case(c, gen, f"loss {kernel} {nbits} bits multi-hot", 65, 200, nbits, torch.float32, False, True)
            loss_case(c, gen, f"loss {kernel} {nbits} bits bank of codes", 40, 150, nbits, torch.float32, False, False,
                      y_is_codes=True)
        for dtype in (torch.bfloat16, torch.float16):
            loss_case(c, gen, f"loss {kernel} 64 bits {dtype}", 70, 333, 64, dtype, False, False)
        loss_case(c, gen, f"loss {kernel} n=1", 1, 5, 64, torch.float32, False, False)
    os.environ.pop("PYHASH_CUDA_LOSS")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda", choices=["cuda", "cpu"])
    parser.add_argument("--only", choices=["hamming", "retrieval", "loss"], help="one family of kernels")
    args = parser.parse_args()
    if args.device == "cuda" and not torch.cuda.is_available():
        sys.exit("no CUDA device")
    c = Checker(args.device)
    gen = torch.Generator().manual_seed(0)
    for family, cases in (("hamming", hamming_cases), ("retrieval", retrieval_cases), ("loss", loss_cases)):
        if args.only in (None, family):
            cases(c, gen)
    if args.device == "cuda":
        torch.cuda.synchronize()
    print(f"{c.failures} failures")
    sys.exit(1 if c.failures else 0)


if __name__ == "__main__":
    main()
