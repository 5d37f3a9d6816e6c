"""The ``pyhash`` command line."""

import argparse
import sys


def _demo(args) -> int:
    from pyhash import demo

    results = demo.run(nbits=args.bits, k=args.k, queries=args.queries, device=args.device, seed=args.seed)
    ok = results["exact_vs_reference"] and results["save_load_roundtrip"]
    return 0 if ok else 1


def _info(args) -> int:
    from pyhash import info

    info.main()
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="pyhash", description="Deep hashing and fast exact Hamming search.")
    sub = parser.add_subparsers(dest="command", required=True)
    demo = sub.add_parser(
        "demo",
        help="search real MNIST codes with HammingSearch (bundled data, no download)",
        description="Encode the bundled MNIST test images to binary codes, search them exactly by "
        "Hamming distance, check against the reference implementation, and report speed and precision.",
    )
    demo.add_argument("--bits", type=int, default=64, help="code length in bits, a multiple of 8 (default 64)")
    demo.add_argument("--k", type=int, default=10, help="neighbours per query (default 10)")
    demo.add_argument("--queries", type=int, default=1000, help="number of query images (default 1000)")
    demo.add_argument("--device", default="cpu", help="cpu or cuda (default cpu)")
    demo.add_argument("--seed", type=int, default=0, help="seed of the random projection (default 0)")
    demo.set_defaults(func=_demo)
    info = sub.add_parser("info", help="how pyhash was built and which kernels are available")
    info.set_defaults(func=_info)
    return parser


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except (ValueError, TypeError, FileNotFoundError, RuntimeError) as exc:
        print(f"pyhash {args.command}: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
