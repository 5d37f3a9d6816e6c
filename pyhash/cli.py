"""The ``pyhash`` command line: demo, train, eval, encode, index, search, search-demo, info."""

import argparse
import sys
from pathlib import Path

import numpy as np


def _config(args):
    from pyhash.training import TrainConfig

    return TrainConfig(
        nbits=args.bits,
        trunk=args.trunk or ("fastresnet" if getattr(args, "dataset", "mnist") == "cifar10" else "vggsmall"),
        epochs={"classify": args.epochs_classify, "bottleneck": args.epochs_bottleneck, "hash": args.epochs_hash},
        batch_size=args.batch_size,
        optimizer=args.optimizer,
        lr=args.lr,
        weight_decay=args.weight_decay,
        schedule=args.schedule,
        label_smoothing=args.label_smoothing,
        lam=args.lam,
        surrogate=args.surrogate,
        weighting=args.weighting,
        memory_bank=not args.no_memory_bank,
        augment=not args.no_augment,
        val_fraction=args.val_fraction,
        select=args.select,
        ema=args.ema,
        amp=args.amp,
        channels_last=args.channels_last,
        compile=args.compile,
        num_workers=args.num_workers,
        seed=args.seed,
        device=args.device,
        progress=not args.quiet,
    )


def _print_metrics(result: dict) -> None:
    for key, value in result.items():
        print(f"  {key:28} {value:.4f}" if isinstance(value, float) else f"  {key:28} {value}")


def _demo(args) -> int:
    import time

    import torch

    from pyhash.protocols import Split
    from pyhash.run import SAMPLE_PROTOCOL, run_training, save_index

    print(f"Training a {args.bits}-bit LeNet hash network on the bundled MNIST sample (3,000 training images) ...")
    run = run_training("mnist-sample", SAMPLE_PROTOCOL, _config(args), args.out)
    result, codes = run.metrics, run.codes
    print(f"Results on 1,000 held-out queries against a 9,000-image database (run folder: {args.out}):")
    _print_metrics(result)
    split = Split.load(Path(args.out) / "split.npz")
    index = save_index(codes, split, Path(args.out) / "database.phx")
    start = time.perf_counter()
    _, ids = index.search(codes.query, 10)
    took = time.perf_counter() - start
    rows = torch.from_numpy(np.searchsorted(split.database, ids.numpy()))  # ids are dataset positions
    same = (codes.database_labels[rows] == codes.query_labels[:, None]).float().mean().item()
    print(f"HammingSearch over the database codes: 10 nearest neighbours of 1,000 queries in {took * 1e3:.1f} ms, "
          f"{same:.3f} of them of the query's digit (index saved to {Path(args.out) / 'database.phx'})")
    print(f"Plots: {', '.join(sorted(p.name for p in Path(args.out).glob('*.png')))}")
    return 0


def _train(args) -> int:
    from pyhash.run import run_training

    result = run_training(args.dataset, args.protocol, _config(args), args.out, data_dir=args.data_dir, resume=args.resume,
                          download=args.download).metrics
    print(f"Run folder: {args.out}")
    _print_metrics(result)
    return 0


def _eval(args) -> int:
    from pyhash._atomic import write_json_atomic
    from pyhash.run import encode_split, evaluate, load_run, run_images

    model, info, split = load_run(args.run)
    images, labels = run_images(info, split, args.data_dir)
    result = evaluate(encode_split(model, images, labels, split))
    _print_metrics(result)
    if args.output:
        write_json_atomic(args.output, result)
    return 0


def _load_npy(path, flag: str) -> np.ndarray:
    """A plain array from a .npy file (no pickle), or a ValueError naming the flag and the file."""
    try:
        return np.load(path, allow_pickle=False)
    except FileNotFoundError:
        raise
    except (ValueError, OSError, EOFError) as exc:  # numpy's messages for a non-.npy file mislead
        raise ValueError(f"{flag} {path} is not a .npy file of a plain array ({type(exc).__name__}: {exc})") from None


def _encode(args) -> int:
    from pyhash._atomic import atomic_write
    from pyhash.run import encode_images, load_run

    model, info, _ = load_run(args.run)
    codes = encode_images(model, _load_npy(args.input, "--input"), info["dataset"], info.get("stats")).numpy()
    with atomic_write(args.output) as f:
        np.save(f, codes)
    print(f"{len(codes)} codes of {model.nbits} bits ({codes.shape[1]} bytes each) -> {args.output}")
    return 0


def _index(args) -> int:
    from pyhash.run import encode_split, load_run, run_images, save_index

    model, info, split = load_run(args.run)
    images, labels = run_images(info, split, args.data_dir)
    output = args.output or str(Path(args.run) / "database.phx")
    index = save_index(encode_split(model, images, labels, split), split, output)
    print(f"Indexed {index.ntotal} database images (ids = dataset positions) -> {output}")
    return 0


def _search(args) -> int:
    import pyhash

    index = pyhash.HammingSearch.load(args.index)
    queries = _load_npy(args.query, "--query")
    if args.radius is not None:
        lims, D, I = index.range_search(queries, args.radius)
        for q in range(len(queries)):
            print(f"query {q}: " + " ".join(f"{i}:{d}" for i, d in zip(I[lims[q]:lims[q + 1]], D[lims[q]:lims[q + 1]])))
    else:
        D, I = index.search(queries, args.k)
        for q in range(len(queries)):
            print(f"query {q}: " + " ".join(f"{i}:{d}" for i, d in zip(I[q], D[q]) if i >= 0))
    return 0


def _search_demo(args) -> int:
    from pyhash import demo

    results = demo.run(nbits=args.bits, k=args.k, queries=args.queries, device=args.device, seed=args.seed)
    return 0 if results["exact_vs_reference"] and results["save_load_roundtrip"] else 1


def _info(args) -> int:
    from pyhash import info

    info.main()
    return 0


def _training_arguments(parser, bits, classify, bottleneck, hash_epochs, trunk, lr, label_smoothing):
    parser.add_argument("--bits", type=int, default=bits, help=f"code length B, an integer from 8 to 4096 (default {bits})")
    parser.add_argument("--trunk", default=trunk, help="lenet or vggsmall (28x28 grey), fastresnet (32x32 colour) or a torchvision model name "
                        f"(default {trunk or 'vggsmall for MNIST, fastresnet for CIFAR-10'})")
    parser.add_argument("--epochs-classify", type=int, default=classify, help=f"stage 1, classification pre-training (default {classify}; 0 skips it)")
    parser.add_argument("--epochs-bottleneck", type=int, default=bottleneck, help=f"stage 2, hash-bottleneck pre-training (default {bottleneck}; 0 skips it)")
    parser.add_argument("--epochs-hash", type=int, default=hash_epochs, help=f"stage 3, exponentiated pairwise loss (default {hash_epochs})")
    parser.add_argument("--batch-size", type=int, default=128, help="images per batch (default 128)")
    parser.add_argument("--optimizer", default="adamw", choices=["adamw", "sgd"], help="a fresh optimizer per stage (default adamw; sgd uses Nesterov momentum 0.9)")
    parser.add_argument("--lr", type=float, default=lr, help=f"peak learning rate (default {lr:g})")
    parser.add_argument("--weight-decay", type=float, default=5e-4, help="of the optimizer (default 5e-4; decoupled for adamw)")
    parser.add_argument("--schedule", default="cosine", choices=["cosine", "constant"],
                        help="per stage: linear warm-up over its first 10%% of steps then cosine decay to 0 (default), or constant")
    parser.add_argument("--label-smoothing", type=float, default=label_smoothing, help=f"of the pre-training softmax losses (default {label_smoothing:g})")
    parser.add_argument("--lam", type=float, default=2.0, help="lambda of the exponentiated loss (default 2)")
    parser.add_argument("--surrogate", default="tanh", choices=["tanh", "bilinear", "cosine"],
                        help="smooth surrogate of the codes in the loss: tanh(z) (default), z itself, or sqrt(B) z/|z| (docs/loss.md)")
    parser.add_argument("--weighting", default="balanced", choices=["uniform", "balanced"],
                        help="pair weights of the loss: balanced (default; similar and dissimilar pairs share half the weight each) or uniform")
    parser.add_argument("--no-memory-bank", action="store_true", help="stage 3 with in-batch pairs only")
    parser.add_argument("--no-augment", action="store_true", help="no augmentation (default: random affine for greyscale, crop + flip for colour)")
    parser.add_argument("--val-fraction", type=float, default=0.0,
                        help="hold this fraction of each training class out as a validation split, scored every epoch (default 0)")
    parser.add_argument("--select", default="last", choices=["last", "best-val"],
                        help="report the last epoch (default) or the hash epoch with the best validation mAP (needs --val-fraction)")
    parser.add_argument("--ema", type=float, default=0.0,
                        help="decay of an exponential moving average of the weights over the last stage, e.g. 0.998; "
                             "the average is what is validated, selected and saved (default 0: off)")
    parser.add_argument("--amp", action="store_true", help="bfloat16 autocast for the network (the loss stays float32)")
    parser.add_argument("--channels-last", action="store_true", help="channels_last memory format (faster convolutions on CUDA)")
    parser.add_argument("--compile", action="store_true", help="torch.compile the trunk")
    parser.add_argument("--num-workers", type=int, default=0, help="DataLoader worker processes (default 0)")
    parser.add_argument("--seed", type=int, default=0, help="seeds the split, the initialisation and the batches (default 0)")
    parser.add_argument("--device", default="cpu", help="cpu or cuda (default cpu)")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="pyhash", description="Deep hashing (Mu & Liu, AAAI 2017) and fast exact Hamming search.")
    sub = parser.add_subparsers(dest="command", required=True)

    demo = sub.add_parser("demo", help="train on the bundled MNIST sample (CPU, minutes), print mAP and P@H<=2, write plots",
                          description="Train a hash network on the bundled MNIST sample (no download), evaluate it and write a run folder with plots.")
    _training_arguments(demo, bits=32, classify=10, bottleneck=2, hash_epochs=4, trunk="lenet", lr=1e-3, label_smoothing=0.0)
    demo.add_argument("--out", default="pyhash-demo", help="run folder (default ./pyhash-demo)")
    demo.set_defaults(func=_demo)

    tr = sub.add_parser("train", help="train on MNIST/CIFAR-10 with a named protocol", description="Train, evaluate and write a run folder.")
    tr.add_argument("--dataset", required=True, choices=["mnist", "cifar10", "mnist-sample"],
                    help="mnist or cifar10 (read from --data-dir), or mnist-sample (the bundled 10,000 MNIST test images)")
    tr.add_argument("--protocol", required=True, help="mnist-1k, mnist-1k-disjoint, mnist-10k, cifar10-1k, ... or 'sample'")
    tr.add_argument("--out", required=True, help="run folder")
    tr.add_argument("--data-dir", help="folder with the .npz archives or torchvision layouts (default $PYHASH_DATA)")
    tr.add_argument("--download", action="store_true", help="let torchvision download a missing dataset into --data-dir (needs internet)")
    tr.add_argument("--resume", action="store_true", help="continue a killed run from its checkpoint")
    _training_arguments(tr, bits=12, classify=30, bottleneck=3, hash_epochs=5, trunk=None, lr=2e-3, label_smoothing=0.1)
    tr.set_defaults(func=_train)

    ev = sub.add_parser("eval", help="evaluate a run folder on its protocol", description="Recompute the metrics of a finished run.")
    ev.add_argument("run", help="run folder written by pyhash train or pyhash demo")
    ev.add_argument("--data-dir", help="folder with the .npz archives or torchvision layouts (default: the folder the run was trained from, else $PYHASH_DATA)")
    ev.add_argument("--output", help="also write the metrics as JSON here")
    ev.set_defaults(func=_eval)

    en = sub.add_parser("encode", help="encode images (.npy, uint8) to packed codes (.npy)", description="Encode images with a trained run.")
    en.add_argument("run", help="run folder whose final model encodes the images")
    en.add_argument("--input", required=True, help=".npy of uint8 images [N, H, W] or [N, H, W, C]")
    en.add_argument("--output", required=True, help=".npy of packed codes uint8[N, ceil(B/8)]")
    en.set_defaults(func=_encode)

    ix = sub.add_parser("index", help="encode a run's database into a saved HammingSearch", description="Build and save the database index of a run.")
    ix.add_argument("run", help="run folder whose final model encodes its protocol's database")
    ix.add_argument("--output", help="index file (default RUN/database.phx)")
    ix.add_argument("--data-dir", help="folder with the .npz archives or torchvision layouts (default: the folder the run was trained from, else $PYHASH_DATA)")
    ix.set_defaults(func=_index)

    se = sub.add_parser("search", help="search a saved index with packed query codes", description="Print id:distance of each query's results.")
    se.add_argument("index", help="index file written by pyhash index or HammingSearch.save")
    se.add_argument("--query", required=True, help=".npy of packed query codes")
    se.add_argument("--k", type=int, default=10, help="neighbours per query (default 10)")
    se.add_argument("--radius", type=int, help="range search (d <= radius) instead of k-NN")
    se.set_defaults(func=_search)

    sd = sub.add_parser("search-demo", help="HammingSearch on random-projection codes of real MNIST images",
                        description="Encode the bundled MNIST images with a seeded random projection and search them exactly.")
    sd.add_argument("--bits", type=int, default=64, help="code length, a multiple of 8 (default 64)")
    sd.add_argument("--k", type=int, default=10, help="neighbours per query (default 10)")
    sd.add_argument("--queries", type=int, default=1000, help="the first this many images are the queries, the rest the database (default 1000)")
    sd.add_argument("--device", default="cpu", help="cpu or cuda (default cpu)")
    sd.add_argument("--seed", type=int, default=0, help="seeds the random projection (default 0)")
    sd.set_defaults(func=_search_demo)

    info = sub.add_parser("info", help="how pyhash was built and which kernels are available",
                          description="Print the versions, the compiled CUDA architectures, the CPU instruction set "
                                      "chosen at run time and which kernels are present (as python -m pyhash.info).")
    info.set_defaults(func=_info)
    return parser


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except (ValueError, TypeError, OSError, RuntimeError, KeyError) as exc:
        print(f"pyhash {args.command}: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
