"""Min-of-N timings of pyhash's CPU loss kernel on one thread, for comparing builds of it
(docs/performance.md, "The CPU loss kernel"): n = m = 4096, forward alone and forward + backward.

    python tools/time_loss_cpu.py            # with pyhash importable

Rows: the symmetric form at B = 16 and 64 (uniform weighting), then the asymmetric form at B = 64
with `balanced` weighting for class ids and for multi-hot labels of 21 and 80 classes. Run it
against two builds alternately; figures from different processes move by 10-30 % on a shared VM.
"""
import argparse
import time

import torch

import pyhash


def best_ms(step, calls):
    times = []
    for _ in range(calls):
        start = time.perf_counter()
        step()
        times.append(time.perf_counter() - start)
    return 1e3 * min(times)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=15, help="calls per row; the fastest is printed")
    args = parser.parse_args()
    torch.set_num_threads(1)
    n = 4096
    g = torch.Generator().manual_seed(0)
    for nbits in (16, 64):
        z = torch.randn(n, nbits, generator=g)
        labels = torch.randint(0, 10, (n,), generator=g)
        for backward in (False, True):
            def step():
                zz = z.clone().requires_grad_(backward)
                loss = pyhash.exp_pair_loss(zz, labels, lam=2.0)
                if backward:
                    loss.backward()
            what = "forward + backward" if backward else "forward"
            print(f"symmetric, B = {nbits}, {what}: {best_ms(step, args.calls):.1f} ms")
    z = torch.randn(n, 64, generator=g).requires_grad_()
    y = torch.randn(n, 64, generator=g).requires_grad_()
    kinds = [("class ids", torch.randint(0, 10, (n,), generator=g), torch.randint(0, 10, (n,), generator=g))]
    for classes in (21, 80):
        kinds.append((f"multi-hot, {classes} classes", (torch.rand(n, classes, generator=g) < 0.1).to(torch.uint8),
                      (torch.rand(n, classes, generator=g) < 0.1).to(torch.uint8)))
    for name, z_labels, y_labels in kinds:
        def step():
            z.grad = y.grad = None
            pyhash.exp_pair_loss(z, z_labels, y, y_labels, weighting="balanced").backward()
        print(f"asymmetric, B = 64, balanced, {name}, forward + backward: {best_ms(step, args.calls):.1f} ms")


if __name__ == "__main__":
    main()
