"""k-NN time of each CPU instruction set on the same data, in one process (1 thread by default).

    python tools/compare_cpu_isas.py --bits 64,128,256,512 [--threads 1] [--k 1,10,100]

Run it outside the source tree's shadow (or with the package installed): it forces each ISA with
pyhash._C.set_cpu_isa and checks that all of them return identical results before timing.
"""

import argparse
import time

import torch

import pyhash


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--bits", default="64,256", help="comma-separated code widths (default 64,256)")
    parser.add_argument("--k", default="1,10,100", help="comma-separated k values (default 1,10,100)")
    parser.add_argument("--n", type=int, default=1_000_000, help="database codes (default 1,000,000)")
    parser.add_argument("--queries", type=int, default=1000, help="queries (default 1000)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")
    parser.add_argument("--isas", default="amx_int8,avx512_vpopcntdq", help="ISAs to compare, best first")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    previous = pyhash._C.cpu_isa()
    generator = torch.Generator().manual_seed(0)
    try:
        for nbits in (int(b) for b in args.bits.split(",")):
            db = torch.randint(0, 256, (args.n, nbits // 8), dtype=torch.uint8, generator=generator)
            q = torch.randint(0, 256, (args.queries, nbits // 8), dtype=torch.uint8, generator=generator)
            for k in (int(v) for v in args.k.split(",")):
                row, first = [], None
                for isa in args.isas.split(","):
                    pyhash._C.set_cpu_isa(isa)
                    result = pyhash.hamming_knn(q, db, k)
                    if first is None:
                        first = result
                    elif not all(torch.equal(a, b) for a, b in zip(result, first)):
                        raise SystemExit(f"{isa} differs from {args.isas.split(',')[0]} at {nbits} bits, k={k}")
                    times = []
                    for _ in range(3):
                        start = time.perf_counter()
                        pyhash.hamming_knn(q, db, k)
                        times.append(time.perf_counter() - start)
                    t = sorted(times)[1]
                    row.append(f"{isa} {t * 1e3:7.1f} ms ({args.n * args.queries / t / 1e9:5.2f} G dist/s)")
                print(f"{nbits:4d} bits, k={k:<4d} " + "   ".join(row), flush=True)
    finally:
        pyhash._C.set_cpu_isa(previous)


if __name__ == "__main__":
    main()
