"""Models and the three-stage training on a few hundred real (bundled) MNIST images."""

import json
from dataclasses import asdict

import numpy as np
import pytest
import torch

import pyhash
from pyhash.data import load_dataset
from pyhash.models import HashNet, LeNetTrunk, make_trunk
from pyhash.training import TrainConfig, normalise_images, train


@pytest.fixture(scope="module")
def small_mnist():
    ds = load_dataset("mnist-sample")
    x = normalise_images(ds.images[:900])
    y = torch.from_numpy(ds.labels[:900])
    return x[:600], y[:600], x[600:], y[600:]


def _config(**kw):
    base = dict(nbits=12, epochs={"classify": 3, "bottleneck": 2, "hash": 2}, batch_size=32, lr=2e-3, progress=False, seed=1)
    base.update(kw)
    return TrainConfig(**base)


def test_training_learns_codes_far_better_than_random(small_mnist, tmp_path):
    x, y, xq, yq = small_mnist
    model, history = train(_config(), x, y, out_dir=tmp_path)
    assert [h["stage"] for h in history] == ["classify"] * 3 + ["bottleneck"] * 2 + ["hash"] * 2
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
    assert len(lines) == 7 and json.loads(lines[-1])["stage"] == "hash"
    assert all(h["images_per_second"] > 0 for h in history)


class _Killed(Exception):
    pass


def _kill_after(monkeypatch, epochs: int):
    """Make training die right after the checkpoint of epoch ``epochs`` is written."""
    import pyhash.training

    original, saves = pyhash.training._atomic_save, []

    def save_then_die(obj, path):
        original(obj, path)
        saves.append(path)
        if len(saves) == epochs:
            raise _Killed

    monkeypatch.setattr(pyhash.training, "_atomic_save", save_then_die)


def _logged_epochs(run_dir) -> list:
    log = run_dir / "log.jsonl"
    return [json.loads(line)["epoch"] for line in log.read_text().splitlines()] if log.exists() else []


# Killed in the middle of a stage (its optimizer and schedule must continue), at a stage
# boundary, and in the hash stage (the memory bank is rebuilt).
@pytest.mark.parametrize("killed_after", [1, 3, 4, 6])
def test_resume_after_interruption_matches_uninterrupted_run(small_mnist, tmp_path, monkeypatch, killed_after):
    x, y, xv, yv = small_mnist
    config = _config(val_fraction=0.1, select="best-val")
    full, full_history = train(config, x, y, out_dir=tmp_path / "full", val_images=xv, val_labels=yv)
    with monkeypatch.context() as patch:
        _kill_after(patch, killed_after)
        with pytest.raises(_Killed):
            train(config, x, y, out_dir=tmp_path / "resumed", val_images=xv, val_labels=yv)
    assert _logged_epochs(tmp_path / "resumed") == list(range(1, killed_after))  # the last checkpoint landed, its log line not
    resumed, history = train(config, x, y, out_dir=tmp_path / "resumed", resume=True, val_images=xv, val_labels=yv)
    assert len(history) == 7
    assert _logged_epochs(tmp_path / "resumed") == list(range(1, 8))  # one line per epoch, none repeated or missing
    assert [h.get("val_mAP") for h in history] == [h.get("val_mAP") for h in full_history]
    for (name, a), b in zip(full.state_dict().items(), resumed.state_dict().values()):
        torch.testing.assert_close(a, b, msg=name)


def test_resume_refuses_other_options_but_not_progress(small_mnist, tmp_path, monkeypatch):
    x, y, _, _ = small_mnist
    config = _config(epochs={"classify": 1, "hash": 2})
    with monkeypatch.context() as patch:
        _kill_after(patch, 1)
        with pytest.raises(_Killed):
            train(config, x, y, out_dir=tmp_path)
    with pytest.raises(ValueError, match=r"lr=0.002 \(now 0.01\), nbits=12 \(now 16\)"):
        train(_config(epochs={"classify": 1, "hash": 2}, lr=0.01, nbits=16), x, y, out_dir=tmp_path, resume=True)
    _, history = train(_config(epochs={"classify": 1, "hash": 2}, progress=True), x, y, out_dir=tmp_path, resume=True)
    assert len(history) == 3


def test_validation_scores_and_best_epoch_selection(small_mnist):
    x, y, xv, yv = small_mnist
    model, history = train(_config(val_fraction=0.1, select="best-val"), x, y, val_images=xv, val_labels=yv)
    assert all(0 <= h["val_accuracy"] <= 1 for h in history[:5])
    assert history[4]["val_accuracy"] > 0.5  # the bottleneck classifier has learned
    scores = [h["val_mAP"] for h in history[5:]]
    selected = [h["epoch"] for h in history if h.get("selected")]
    assert len(selected) == 1 and history[selected[0] - 1]["val_mAP"] == max(scores)
    got = pyhash.metrics.mean_average_precision(model.encode(xv), model.encode(x), yv, y)
    assert got == pytest.approx(max(scores), abs=1e-12)  # the model returned is the selected epoch's


def test_weight_average_is_the_returned_model(small_mnist, monkeypatch):
    """With ema, the returned weights are the exponential average of the last stage's steps."""
    import pyhash.training

    x, y, _, _ = small_mnist
    decay, snapshots = 0.9, []
    original_step = torch.optim.AdamW.step

    def step_and_record(self, *args, **kwargs):
        result = original_step(self, *args, **kwargs)
        snapshots.append([p.detach().clone() for group in self.param_groups for p in group["params"]])
        return result

    monkeypatch.setattr(torch.optim.AdamW, "step", step_and_record)
    config = _config(ema=decay, epochs={"classify": 1, "hash": 2})
    model, _ = pyhash.training.train(config, x[:256], y[:256])
    steps_per_epoch = 256 // config.batch_size
    last_stage = snapshots[steps_per_epoch:]  # the hash stage's steps
    assert len(last_stage) == 2 * steps_per_epoch
    for i, param in enumerate(model.parameters()):
        expected = last_stage[0][i]
        for t, snap in enumerate(last_stage[1:], start=1):
            d = min(decay, (1 + t) / (10 + t))  # warm-up of the decay
            expected = d * expected + (1 - d) * snap[i]
        torch.testing.assert_close(param.detach(), expected, rtol=1e-5, atol=1e-6)
    assert not torch.equal(next(model.parameters()).detach(), last_stage[-1][0])  # not the last step's


@pytest.mark.parametrize("killed_after", [1, 2])
def test_resume_with_weight_average(small_mnist, tmp_path, monkeypatch, killed_after):
    x, y, _, _ = small_mnist
    config = _config(ema=0.9, epochs={"classify": 1, "hash": 2})
    full, _ = train(config, x[:256], y[:256], out_dir=tmp_path / "full")
    with monkeypatch.context() as patch:
        _kill_after(patch, killed_after)
        with pytest.raises(_Killed):
            train(config, x[:256], y[:256], out_dir=tmp_path / "resumed")
    resumed, history = train(config, x[:256], y[:256], out_dir=tmp_path / "resumed", resume=True)
    assert len(history) == 3
    for (name, a), b in zip(full.state_dict().items(), resumed.state_dict().values()):
        torch.testing.assert_close(a, b, msg=name)


def test_learning_rate_schedule():
    from pyhash.training import _learning_rate

    cosine = [_learning_rate(_config(lr=1.0), step, 100) for step in range(100)]
    assert cosine[0] == pytest.approx(0.1) and cosine[9] == pytest.approx(1.0)  # 10 warm-up steps
    assert all(a >= b for a, b in zip(cosine[9:], cosine[10:])) and cosine[-1] < 0.01
    assert {_learning_rate(_config(lr=0.5, schedule="constant"), step, 100) for step in range(100)} == {0.5}


@pytest.mark.parametrize("options, message", [
    (dict(epochs={"classify": 1, "finetune": 1}), "unknown stage"),
    (dict(epochs={"classify": 0, "bottleneck": 0, "hash": 0}), "nothing to train"),
    (dict(epochs={"classify": -1}), "epochs"),
    (dict(optimizer="adam"), "optimizer"),
    (dict(schedule="step"), "schedule"),
    (dict(select="best-val"), "validation"),
    (dict(val_fraction=1.0), "val_fraction"),
    (dict(batch_size=1), "batch_size"),
    (dict(lr=0.0), "lr"),
    (dict(ema=1.0), "ema"),
    (dict(ema=-0.1), "ema"),
    (dict(surrogate="sigmoid"), "surrogate"),
    (dict(weighting="focal"), "weighting"),
    (dict(nbits=7), "nbits must be from 8 to 4096"),
    (dict(nbits=4104), "nbits"),
    (dict(nbits=12.0), "nbits must be an integer"),
    (dict(num_classes=1), "num_classes"),
    (dict(batch_size=64.5), "batch_size must be an integer"),
    (dict(num_workers=-1), "num_workers"),
    (dict(seed=-1), "seed"),
    (dict(lr=float("inf")), "lr must be a finite number"),
    (dict(lam=0.0), "lam"),
    (dict(lam=float("nan")), "lam"),
    (dict(beta=-1.0), "beta"),
    (dict(weight_decay=-1e-4), "weight_decay"),
    (dict(momentum=1.0), "momentum"),
    (dict(label_smoothing=1.0), "label_smoothing"),
    (dict(quantization=-0.5), "quantization"),
    (dict(device="tpu"), "device must be 'cpu' or 'cuda'"),
    (dict(lr="0.1"), "lr must be a number"),
])
def test_bad_training_options(options, message):
    with pytest.raises(ValueError, match=message):
        _config(**options)


def test_bad_training_data_is_refused_before_training(small_mnist):
    x, y, _, _ = small_mnist
    cases = [
        ((x[:1], y[:1]), "at least 2 training images"),
        ((x[:, 0], y), r"images must be \[N, C, H, W\] and labels \[N\]"),
        ((x, y[:-1]), "labels \\[N\\]"),
        (((x * 255).to(torch.uint8), y), "images must be float"),
        ((x, y.float()), "labels must be integer class ids"),
        ((x, y + 10), r"the classify and bottleneck stage\(s\) need class ids in 0..9"),
    ]
    for (images, labels), message in cases:
        with pytest.raises(ValueError, match=message):
            train(_config(), images, labels)
    train(_config(epochs={"hash": 1}), x[:64], y[:64] + 10)  # the hash stage takes any class ids


def test_numpy_numbers_are_accepted_as_python_numbers():
    config = _config(nbits=np.int64(24), lr=np.float32(0.01), seed=np.uint8(3), lam=4)
    assert (config.nbits, config.seed) == (24, 3) and type(config.nbits) is int and type(config.lr) is float
    assert config.lr == pytest.approx(0.01) and config.lam == 4.0
    json.dumps(asdict(config))  # the run folder's config.json


@pytest.mark.cuda
def test_cuda_training_with_amp_and_channels_last(small_mnist):
    x, y, xq, yq = small_mnist
    model, history = train(_config(device="cuda", amp=True, channels_last=True), x, y)
    assert len(history) == 7 and all(np.isfinite(h["loss"]) for h in history)
    codes_db, codes_q = model.encode(x.cuda()), model.encode(xq.cuda())
    assert codes_db.is_cuda
    assert pyhash.metrics.mean_average_precision(codes_q, codes_db, yq.cuda(), y.cuda()) > 0.6


def test_sgd_amp_and_channels_last_train(small_mnist):
    x, y, _, _ = small_mnist
    config = _config(optimizer="sgd", lr=0.05, amp=True, channels_last=True, epochs={"classify": 1, "hash": 1})
    model, history = train(config, x[:128], y[:128])
    assert len(history) == 2 and all(np.isfinite(h["loss"]) for h in history)
    assert model.encode(x[:4]).shape == (4, 2)


def test_models_and_bad_arguments():
    assert make_trunk("lenet").out_features == 500
    assert make_trunk("vggsmall").eval()(torch.zeros(2, 1, 28, 28)).shape == (2, 256)
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


def test_python_api_train_and_encode(tmp_path):
    run = pyhash.train("mnist-sample", "sample", tmp_path / "run", nbits=16, epochs={"classify": 1, "hash": 1},
                       progress=False, plots=False)
    assert run.metrics["mAP@ALL"] > 0.5 and run.metrics["bits"] == 16
    images = load_dataset("mnist-sample").images[run.split.query[:8]]
    assert torch.equal(run.encode(images), run.codes.query[:8])  # same normalisation as training
    with pytest.raises(ValueError, match="uint8"):
        run.encode(images.astype(np.float32))
    with pytest.raises(ValueError, match=r"mnist-sample images of shape \[28, 28\].*\[32, 32, 3\]"):
        run.encode(np.zeros((2, 32, 32, 3), np.uint8))
    assert torch.equal(run.encode(images[..., None]), run.codes.query[:8])  # [N, H, W, 1] is greyscale too
    # Resuming with other options would train the old weights on another split: refused before
    # anything in the folder is rewritten.
    split_before = (tmp_path / "run" / "split.npz").read_bytes()
    with pytest.raises(ValueError, match=r"cannot resume .*seed=0 \(now 3\)"):
        pyhash.train("mnist-sample", "sample", tmp_path / "run", nbits=16, epochs={"classify": 1, "hash": 1},
                     progress=False, plots=False, resume=True, seed=3)
    with pytest.raises(ValueError, match="started with dataset 'mnist-sample', not 'mnist'"):
        pyhash.train("mnist", "mnist-1k", tmp_path / "run", nbits=16, epochs={"classify": 1, "hash": 1}, resume=True)
    assert (tmp_path / "run" / "split.npz").read_bytes() == split_before
    import shutil

    from pyhash.run import load_run

    for damaged, content, message in (("model.pt", b"PK\x03\x04 not a checkpoint", "model.pt is damaged or does not match"),
                                      ("run.json", b"{", "run.json is missing or damaged"),
                                      ("split.npz", b"text", "split.npz is not a saved pyhash split")):
        copy = tmp_path / f"damaged-{damaged}"
        shutil.copytree(tmp_path / "run", copy)
        (copy / damaged).write_bytes(content)
        with pytest.raises(ValueError, match=message):
            load_run(copy)
    with pytest.raises(TypeError):
        pyhash.train("mnist-sample", "sample", tmp_path / "bad", no_such_option=1)


def test_augmentation_keeps_shapes_and_changes_images():
    from pyhash.training import augmentation

    grey = torch.randn(4, 1, 28, 28)
    colour = torch.randn(4, 3, 32, 32)
    for images in (grey, colour):
        transform = augmentation(images)
        outs = [transform(images[0]) for _ in range(3)]
        assert all(o.shape == images[0].shape and o.dtype == torch.float32 for o in outs)
        assert any(not torch.equal(o, images[0]) for o in outs)


@pytest.mark.slow
def test_torch_compile_option_trains_and_saves_plain_weights(small_mnist, tmp_path):
    x, y, _, _ = small_mnist
    model, history = train(_config(compile=True, epochs={"classify": 1, "hash": 1}), x[:256], y[:256], out_dir=tmp_path)
    assert all(np.isfinite(h["loss"]) for h in history)
    state = torch.load(tmp_path / "checkpoint.pt", weights_only=True)["model"]
    assert state.keys() == HashNet(LeNetTrunk(), 12, 10).state_dict().keys()  # no torch.compile wrapper names


def test_colour_pipeline_with_fastresnet():
    x = torch.randn(32, 3, 32, 32)
    y = torch.arange(32) % 4
    config = _config(trunk="fastresnet", num_classes=4, nbits=24, batch_size=16, epochs={"classify": 1, "bottleneck": 1, "hash": 1})
    model, history = train(config, x, y)
    assert [h["stage"] for h in history] == ["classify", "bottleneck", "hash"] and all(np.isfinite(h["loss"]) for h in history)
    assert model.encode(x[:5]).shape == (5, 3)
