"""k-fold cross-validation of a trunk's classification accuracy on a protocol's training images.

Model choices for the small protocols (trunk, augmentation, epochs) must not look at the test
queries or database, so this tool scores them on the training images alone: stratified, seeded
folds; each fold trains the classification stage (``pyhash.training.train`` with only the
``classify`` stage) on the other folds and counts the held-out images it misclassifies at the
last epoch. Prints one line per fold and the total, and appends a JSON line to ``--log``.

    PYTHONPATH=. python tools/cv_classify.py --trunk vggsmall --epochs 20 --data-dir ../shared/data
"""

import argparse
import json
import time

import numpy as np
import torch

from pyhash.models import eval_mode
from pyhash.run import prepare
from pyhash.training import TrainConfig, augmentation, train


@torch.no_grad()
def held_out_probs(model, images, views: int = 0, seed: int = 0) -> torch.Tensor:
    """float32[n, classes]: the trunk classifier's softmax, summed over the image itself and
    ``views`` random affine views (one transform per view)."""
    torch.manual_seed(seed)
    transform = augmentation(images)
    with eval_mode(model):
        probs = model.trunk_classifier(model.trunk(images)).softmax(1)
        for _ in range(views):
            probs += model.trunk_classifier(model.trunk(transform(images))).softmax(1)
    return probs


def errors_of(probs: torch.Tensor, labels: torch.Tensor) -> int:
    return int((probs.argmax(1) != labels).sum())


def stratified_folds(labels: np.ndarray, folds: int, seed: int) -> list:
    """Position lists (into ``labels``) of ``folds`` stratified folds."""
    rng = np.random.default_rng([seed, 2])
    parts = [[] for _ in range(folds)]
    for c in np.unique(labels):
        members = rng.permutation(np.nonzero(labels == c)[0])
        for f, chunk in enumerate(np.array_split(members, folds)):
            parts[f].append(chunk)
    return [np.sort(np.concatenate(p)) for p in parts]


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dataset", default="mnist")
    parser.add_argument("--protocol", default="mnist-1k")
    parser.add_argument("--data-dir", default=None)
    parser.add_argument("--seed", type=int, default=0, help="the protocol split's seed (and the folds')")
    parser.add_argument("--folds", type=int, default=5)
    parser.add_argument("--only-folds", type=int, nargs="*", default=None, help="run only these folds (0-based)")
    parser.add_argument("--trunk", default="vggsmall")
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--optimizer", default="adamw", choices=("adamw", "sgd"))
    parser.add_argument("--lr", type=float, default=2e-3)
    parser.add_argument("--weight-decay", type=float, default=5e-4)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--label-smoothing", type=float, default=0.1)
    parser.add_argument("--tta", type=int, default=0, help="also count errors with this many augmented views")
    parser.add_argument("--members", type=int, default=1,
                        help="train this many models per fold (seeds differ) and also count the errors of their averaged softmax")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--log", default="cv_classify.jsonl")
    args = parser.parse_args(argv)

    torch.set_num_threads(args.threads)
    images, labels, split, _ = prepare(args.dataset, args.protocol, args.data_dir, seed=args.seed)
    train_images, train_labels = images[split.train], labels[split.train]
    folds = stratified_folds(train_labels.numpy(), args.folds, args.seed)
    chosen = args.only_folds if args.only_folds is not None else list(range(args.folds))
    errors, tta, ensemble, started = [], [], [], time.perf_counter()
    for f in chosen:
        held = folds[f]
        kept = np.setdiff1d(np.arange(len(train_labels)), held)
        fold_start = time.perf_counter()
        summed = 0
        for member in range(args.members):
            config = TrainConfig(trunk=args.trunk, epochs={"classify": args.epochs},
                                 optimizer=args.optimizer, lr=args.lr,
                                 weight_decay=args.weight_decay, batch_size=args.batch_size,
                                 label_smoothing=args.label_smoothing, memory_bank=False,
                                 seed=args.seed + f + 1000 * member, progress=False)
            model, _ = train(config, train_images[kept], train_labels[kept])
            probs = held_out_probs(model, train_images[held])
            summed = summed + probs
            if member == 0:
                errors.append(errors_of(probs, train_labels[held]))
                line = f"fold {f}: {errors[-1]} of {len(held)} misclassified"
                if args.tta:
                    views = held_out_probs(model, train_images[held], args.tta, args.seed + f)
                    tta.append(errors_of(views, train_labels[held]))
                    line += f", {tta[-1]} with {args.tta} test-time views"
            else:
                line += f", member {member} {errors_of(probs, train_labels[held])}"
        if args.members > 1:
            ensemble.append(errors_of(summed, train_labels[held]))
            line += f", {ensemble[-1]} by the {args.members} members' averaged softmax"
        print(f"{line} ({time.perf_counter() - fold_start:.0f} s)", flush=True)
    total = sum(errors)
    held_total = sum(len(folds[f]) for f in chosen)
    print(f"total: {total} of {held_total} ({100.0 * total / held_total:.2f} %), {time.perf_counter() - started:.0f} s")
    if args.tta:
        print(f"total with {args.tta} test-time views: {sum(tta)} of {held_total}")
    if args.members > 1:
        print(f"total of the {args.members}-member averages: {sum(ensemble)} of {held_total}")
    with open(args.log, "a") as log:
        log.write(json.dumps({**vars(args), "errors": errors, "total": total, "tta_errors": tta, "ensemble_errors": ensemble, "held": held_total}) + "\n")


if __name__ == "__main__":
    main()
