"""Models and the three-stage training on a few hundred real (bundled) MNIST images."""

import json

import numpy as np
import pytest
import torch

import pyhash
from pyhash.data import load_dataset
from pyhash.models import HashNet, LeNetTrunk, make_trunk
from pyhash.train import TrainConfig, normalise_images, train


@pytest.fixture(scope="module")
def small_mnist():
    ds = load_dataset("mnist-sample")
    x = normalise_images(ds.images[:900])
    y = torch.from_numpy(ds.labels[:900])
    return x[:600], y[:600], x[600:], y[600:]


def _config(**kw):
    base = dict(nbits=12, epochs={"classify": 2, "bottleneck": 1, "hash": 2}, batch_size=64, progress=False, seed=1)
    base.update(kw)
    return TrainConfig(**base)


def test_training_learns_codes_far_better_than_random(small_mnist, tmp_path):
    x, y, xq, yq = small_mnist
    model, history = train(_config(), x, y, out_dir=tmp_path)
    assert [h["stage"] for h in history] == ["classify", "classify", "bottleneck", "hash", "hash"]
    assert history[1]["loss"] < history[0]["loss"]  # the classification loss falls
    codes_db, codes_q = model.encode(x), model.encode(xq)
    assert codes_db.dtype == torch.uint8 and codes_db.shape == (600, 2)
    bits = pyhash.unpack_codes(codes_db)
    assert (bits[:, 12:] == 0).all()  # padding bits of a 12-bit code are always 0
    with torch.no_grad():
        z = model.eval()(x[:50])
    assert torch.equal(bits[:50, :12].bool(), z >= 0)  # sign(z) with 0 -> +1, packed LSB first
    trained = pyhash.metrics.mean_average_precision(codes_q, codes_db, yq, y)
    random = pyhash.metrics.mean_average_precision(torch.randint(0, 256, (300, 2), dtype=torch.uint8) & 0x0F,
                                                   torch.randint(0, 256, (600, 2), dtype=torch.uint8), yq, y)
    assert trained > 0.6 and trained > random + 0.4, (trained, random)
    lines = (tmp_path / "log.jsonl").read_text().splitlines()
    assert len(lines) == 5 and json.loads(lines[-1])["stage"] == "hash"


@pytest.mark.parametrize("killed_after", [{"classify": 1}, {"classify": 2, "bottleneck": 1}])
def test_resume_after_interruption_matches_uninterrupted_run(small_mnist, tmp_path, killed_after):
    x, y, _, _ = small_mnist
    full, _ = train(_config(), x, y, out_dir=tmp_path / "full")
    # A run "killed" mid-way leaves the checkpoint that a shorter run leaves: in the middle of a
    # stage (its optimizer must continue) or at a stage boundary.
    part = _config(epochs=killed_after)
    train(part, x, y, out_dir=tmp_path / "resumed")
    resumed, history = train(_config(), x, y, out_dir=tmp_path / "resumed", resume=True)
    assert len(history) == 5
    for (name, a), b in zip(full.state_dict().items(), resumed.state_dict().values()):
        torch.testing.assert_close(a, b, msg=name)


def test_models_and_bad_arguments():
    assert make_trunk("lenet").out_features == 500
    assert make_trunk("fastresnet")(torch.zeros(2, 3, 32, 32)).shape == (2, 512)
    resnet = make_trunk("resnet18")
    assert resnet(torch.zeros(1, 3, 64, 64)).shape == (1, resnet.out_features)
    for nbits in (12, 24, 32, 48, 64):
        net = HashNet(LeNetTrunk(), nbits, 10)
        assert net.encode(torch.zeros(3, 1, 28, 28)).shape == (3, (nbits + 7) // 8)
    with pytest.raises(ValueError, match="nbits"):
        HashNet(LeNetTrunk(), 4, 10)
    with pytest.raises(ValueError):
        make_trunk("no_such_model")
