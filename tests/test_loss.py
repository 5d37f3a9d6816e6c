"""The fused exponentiated pairwise loss against the eager reference, on every backend."""

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import pyhash
from pyhash.nn import ExpHashLoss, bit_balance_loss, quantization_loss
from pyhash.reference import exp_pair_loss_ref

SURROGATES = ["tanh", "bilinear", "cosine"]
WEIGHTINGS = ["uniform", "balanced"]
# (rtol, atol) per dtype for values and gradients against the float64 reference
TOL = {torch.float64: (1e-9, 1e-12), torch.float32: (2e-4, 1e-6)}
CUDA_KERNELS = ["simt", "tensor"]  # PYHASH_CUDA_LOSS


@pytest.fixture(params=["cpu"] + [pytest.param(f"cuda-{k}", marks=pytest.mark.cuda) for k in CUDA_KERNELS])
def device(request, monkeypatch):
    """cpu, or cuda once per CUDA row kernel (the tensor-core one applies to float32 up to 128 bits)."""
    if request.param == "cpu":
        return "cpu"
    monkeypatch.setenv("PYHASH_CUDA_LOSS", request.param[len("cuda-"):])
    return "cuda"


def _inputs(n, m, nbits, device, dtype=torch.float64, classes=3, multilabel=False, seed=0, asymmetric=True, density=0.3):
    g = torch.Generator().manual_seed(seed)
    z = torch.randn(n, nbits, generator=g, dtype=torch.float64)
    if multilabel:
        labels = (torch.rand(n, classes, generator=g) < density).to(torch.uint8)
    else:
        labels = torch.randint(0, classes, (n,), generator=g)
    y = torch.randn(m, nbits, generator=g, dtype=torch.float64) if asymmetric else None
    if asymmetric:
        y_labels = (torch.rand(m, classes, generator=g) < density).to(torch.uint8) if multilabel else torch.randint(0, classes, (m,), generator=g)
    else:
        y_labels = None
    move = lambda t: None if t is None else t.to(device)  # noqa: E731
    z = z.to(dtype).to(device).requires_grad_()
    if y is not None:
        y = y.to(dtype).to(device).requires_grad_()
    return z, move(labels), y, move(y_labels)


def _compare(z, labels, y, y_labels, **kw):
    loss = pyhash.exp_pair_loss(z, labels, y, y_labels, **kw)
    wrt = [t for t in (z, y) if t is not None]
    grads = torch.autograd.grad(loss, wrt)
    ref_inputs = [t.detach().double().cpu().requires_grad_() if t is not None and t.is_floating_point() else (None if t is None else t.cpu()) for t in (z, labels, y, y_labels)]
    ref = exp_pair_loss_ref(*ref_inputs, **kw)
    ref_grads = torch.autograd.grad(ref, [t for t in (ref_inputs[0], ref_inputs[2]) if t is not None]) if ref.requires_grad else [torch.zeros_like(t) for t in wrt]
    rtol, atol = TOL[z.dtype]
    assert loss.dtype == z.dtype and loss.shape == ()
    torch.testing.assert_close(loss.detach().double().cpu(), ref.detach(), rtol=rtol, atol=atol)
    for g, r in zip(grads, ref_grads):
        assert g.dtype == z.dtype and g.device == z.device
        torch.testing.assert_close(g.double().cpu(), r, rtol=rtol, atol=atol)


@pytest.mark.parametrize("surrogate", SURROGATES)
@pytest.mark.parametrize("weighting", WEIGHTINGS)
@pytest.mark.parametrize("asymmetric", [False, True])
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_matches_reference(device, surrogate, weighting, asymmetric, dtype):
    z, labels, y, y_labels = _inputs(37, 53, 24, device, dtype=dtype, asymmetric=asymmetric)
    _compare(z, labels, y, y_labels, surrogate=surrogate, weighting=weighting, lam=1.7, beta=0.8, clamp=0.6)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    n=st.integers(1, 70),
    m=st.integers(1, 90),
    nbits=st.integers(8, 256),
    classes=st.integers(1, 5),
    multilabel=st.booleans(),
    asymmetric=st.booleans(),
    surrogate=st.sampled_from(SURROGATES),
    weighting=st.sampled_from(WEIGHTINGS),
    y_is_codes=st.booleans(),
    seed=st.integers(0, 2**31),
)
def test_random_shapes_match_reference(device, n, m, nbits, classes, multilabel, asymmetric, surrogate, weighting, y_is_codes, seed):
    z, labels, y, y_labels = _inputs(n, m, nbits, device, classes=classes, multilabel=multilabel, seed=seed, asymmetric=asymmetric)
    if y is not None and y_is_codes:
        y = torch.sign(y.detach()).requires_grad_()
    _compare(z, labels, y, y_labels, surrogate=surrogate, weighting=weighting, lam=0.9, beta=1.3, clamp=2.0,
             y_is_codes=y_is_codes and y is not None)


@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("n, m, nbits, dtype, multilabel, classes, asymmetric", [
    (37, 1500, 200, torch.float32, False, 3, True),  # the CPU kernel's column panels: 256 columns here
    (21, 700, 130, torch.float64, True, 3, True),
    (33, 900, 64, torch.float32, True, 70, True),    # multi-hot labels of two 64-bit words, sparse
    (300, 0, 40, torch.float64, True, 3, False),     # symmetric multi-hot, some rows without labels
    (9, 4500, 12, torch.float32, False, 3, True),    # 4,096-column panels at 12 bits
    (1100, 0, 64, torch.float32, False, 3, False),   # symmetric, 1,024-column panels
])
def test_large_banks_match_reference(device, threads, n, m, nbits, dtype, multilabel, classes, asymmetric):
    z, labels, y, y_labels = _inputs(n, m, nbits, device, dtype=dtype, classes=classes, multilabel=multilabel,
                                     asymmetric=asymmetric, seed=n, density=0.3 if classes < 64 else 0.03)
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        _compare(z, labels, y, y_labels, lam=2.0, weighting="balanced")
    finally:
        torch.set_num_threads(before)


@pytest.mark.parametrize("n", [1, 2])
def test_tiny_batches(device, n):
    z, labels, _, _ = _inputs(n, 0, 12, device, asymmetric=False)
    _compare(z, labels, None, None)
    if n == 1:
        assert pyhash.exp_pair_loss(z, labels).item() == 0.0  # no pairs


@pytest.mark.parametrize("weighting", WEIGHTINGS)
@pytest.mark.parametrize("kind", ["all-similar", "all-dissimilar"])
def test_one_sided_batches(device, weighting, kind):
    z, labels, y, y_labels = _inputs(9, 11, 16, device)
    if kind == "all-similar":
        labels, y_labels = torch.zeros_like(labels), torch.zeros_like(y_labels)
    else:
        labels, y_labels = torch.zeros_like(labels), torch.ones_like(y_labels)
    _compare(z, labels, y, y_labels, weighting=weighting)
    _compare(z, labels, None, None, weighting=weighting)


def test_multilabel(device):
    z, labels, y, y_labels = _inputs(31, 29, 40, device, multilabel=True, classes=70)  # > 64 classes: 2 mask words
    for weighting in WEIGHTINGS:
        _compare(z, labels, y, y_labels, weighting=weighting)
        _compare(z, labels, None, None, weighting=weighting)


@pytest.mark.parametrize("surrogate", SURROGATES)
@pytest.mark.parametrize("weighting", WEIGHTINGS)
def test_gradcheck(device, surrogate, weighting):
    z, labels, y, y_labels = _inputs(6, 7, 9, device)
    fn = lambda z, y: pyhash.exp_pair_loss(z, labels, y, y_labels, surrogate=surrogate, weighting=weighting, lam=1.5, clamp=0.4)  # noqa: E731
    assert torch.autograd.gradcheck(fn, (z, y))
    sym = lambda z: pyhash.exp_pair_loss(z, labels, surrogate=surrogate, weighting=weighting)  # noqa: E731
    assert torch.autograd.gradcheck(sym, (z,))
    codes = torch.sign(y.detach()).requires_grad_()
    fixed = lambda z, c: pyhash.exp_pair_loss(z, labels, c, y_labels, surrogate=surrogate, y_is_codes=True)  # noqa: E731
    assert torch.autograd.gradcheck(fixed, (z, codes))


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_half_precision_close_to_float32(device, dtype):
    z, labels, y, y_labels = _inputs(40, 60, 32, device, dtype=torch.float32)
    full = pyhash.exp_pair_loss(z, labels, y, y_labels)
    (gz,) = torch.autograd.grad(full, z)
    zh = z.detach().to(dtype).requires_grad_()
    half = pyhash.exp_pair_loss(zh, labels, y.detach().to(dtype), y_labels)
    (gh,) = torch.autograd.grad(half, zh)
    assert half.dtype == dtype and gh.dtype == dtype
    # inputs rounded to 8 (bf16) or 11 (fp16) significant bits; accumulation stays float32
    tol = 2e-2 if dtype == torch.bfloat16 else 3e-3
    torch.testing.assert_close(half.float(), full, rtol=tol, atol=tol)
    torch.testing.assert_close(gh.float(), gz, rtol=0.1, atol=tol * gz.abs().max().item())


def test_opcheck(device):
    z, labels, y, y_labels = _inputs(8, 10, 16, device, dtype=torch.float32)
    for args in [(z, labels, y, y_labels), (z, labels, None, None)]:
        torch.library.opcheck(
            torch.ops.pyhash.exp_pair_loss.default,
            (*args, 1.0, 1.0, 30.0, "tanh", "balanced", False, True),
        )


@pytest.mark.parametrize("lam, beta, clamp, match", [
    (float("nan"), 1.0, 30.0, "lam must be finite"),
    (1.0, 0.0, 30.0, "beta must be finite and > 0"),
    (1.0, float("inf"), 30.0, "beta must be finite and > 0"),
    (1.0, 1.0, -1.0, "clamp must be finite and > 0"),
])
def test_the_op_itself_checks_its_scalars(device, lam, beta, clamp, match):
    """torch.ops.pyhash.exp_pair_loss is public too: its kernels refuse what the wrapper refuses."""
    z, labels, y, y_labels = _inputs(5, 6, 8, device, dtype=torch.float32)
    with pytest.raises(RuntimeError, match=match):
        torch.ops.pyhash.exp_pair_loss(z, labels, y, y_labels, lam, beta, clamp, "tanh", "uniform", False, True)


def test_works_under_torch_compile():
    z, labels, y, y_labels = _inputs(12, 14, 16, "cpu", dtype=torch.float32)
    compiled = torch.compile(lambda z, y: pyhash.exp_pair_loss(z, labels, y, y_labels), fullgraph=True)
    loss = compiled(z, y)
    loss.backward()
    eager_z = z.detach().clone().requires_grad_()
    pyhash.exp_pair_loss(eager_z, labels, y.detach(), y_labels).backward()
    torch.testing.assert_close(z.grad, eager_z.grad)


def test_no_grad_skips_gradients():
    z, labels, y, y_labels = _inputs(5, 6, 8, "cpu")
    with torch.no_grad():
        loss = pyhash.exp_pair_loss(z, labels, y, y_labels)
    assert not loss.requires_grad


@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
def test_non_finite_input_raises(device, bad):
    z, labels, y, y_labels = _inputs(5, 6, 8, device)
    z = z.detach().clone()
    z[2, 3] = bad
    with pytest.raises(RuntimeError, match="NaN or Inf"):
        pyhash.exp_pair_loss(z, labels, y, y_labels)
    y = y.detach().clone()
    y[0, 0] = bad
    with pytest.raises(RuntimeError, match="NaN or Inf"):
        pyhash.exp_pair_loss(z.nan_to_num(0.0, 0.0, 0.0), labels, y, y_labels)


def test_bad_arguments_raise_clear_errors():
    z, labels, y, y_labels = _inputs(5, 6, 8, "cpu")
    cases = [
        (lambda: pyhash.exp_pair_loss(z[0], labels), RuntimeError, "2-D"),
        (lambda: pyhash.exp_pair_loss(z, labels[:3]), RuntimeError, "rows"),
        (lambda: pyhash.exp_pair_loss(z, labels.float()), RuntimeError, "int64"),
        (lambda: pyhash.exp_pair_loss(z, labels, y[:, :4], y_labels), RuntimeError, r"must be \[m, 8\]"),
        (lambda: pyhash.exp_pair_loss(z, labels, y.float(), y_labels), RuntimeError, "dtype"),
        (lambda: pyhash.exp_pair_loss(z, labels, y, None), ValueError, "together"),
        (lambda: pyhash.exp_pair_loss(z, labels, y, torch.ones(6, 3)), RuntimeError, "same kind"),
        (lambda: pyhash.exp_pair_loss(z, labels, surrogate="sigmoid"), ValueError, "surrogate"),
        (lambda: pyhash.exp_pair_loss(z, labels, weighting="focal"), ValueError, "weighting"),
        (lambda: pyhash.exp_pair_loss(z, labels, beta=0), ValueError, "beta"),
        (lambda: pyhash.exp_pair_loss(z.long(), labels), RuntimeError, "floating point"),
        (lambda: pyhash.exp_pair_loss(z.detach().numpy(), labels), TypeError, "torch.Tensor"),
        (lambda: pyhash.exp_pair_loss(torch.zeros(3, 8), labels[:3], surrogate="cosine"), RuntimeError, "non-zero"),
        (lambda: pyhash.exp_pair_loss(z, torch.full((5, 2), 0.5)), RuntimeError, "only 0 and 1"),
        (lambda: pyhash.exp_pair_loss(z, torch.full((5, 2), 2)), RuntimeError, "only 0 and 1"),
        (lambda: pyhash.exp_pair_loss(z, labels, y, torch.full((6, 2), -1)), RuntimeError, "y_labels .*only 0 and 1"),
    ]
    for call, error, match in cases:
        with pytest.raises(error, match=match):
            call()


@pytest.mark.cuda
def test_mismatched_devices_raise():
    z, labels, y, y_labels = _inputs(5, 6, 8, "cpu")
    with pytest.raises(RuntimeError, match="cuda|cpu"):
        pyhash.exp_pair_loss(z, labels, y.cuda(), y_labels)
    with pytest.raises(RuntimeError, match="cuda|cpu"):
        pyhash.exp_pair_loss(z.cuda(), labels)


@pytest.mark.cuda
@pytest.mark.parametrize("kernel", CUDA_KERNELS)
@pytest.mark.parametrize("n, m, nbits", [(300, 700, 64), (64, 50_000, 64), (130, 257, 12), (70, 90, 100), (33, 65, 128), (40, 50, 130)])
def test_cpu_and_cuda_agree(monkeypatch, kernel, n, m, nbits):
    """Float32 on both devices, over many tiles of 64 rows (and splits of the bank on CUDA)."""
    monkeypatch.setenv("PYHASH_CUDA_LOSS", kernel)
    z, labels, y, y_labels = _inputs(n, m, nbits, "cpu", dtype=torch.float32)
    for weighting in WEIGHTINGS:
        a = pyhash.exp_pair_loss(z, labels, y, y_labels, weighting=weighting)
        ga = torch.autograd.grad(a, (z, y))
        zc, yc = z.detach().cuda().requires_grad_(), y.detach().cuda().requires_grad_()
        b = pyhash.exp_pair_loss(zc, labels.cuda(), yc, y_labels.cuda(), weighting=weighting)
        gb = torch.autograd.grad(b, (zc, yc))
        torch.testing.assert_close(b.cpu(), a, rtol=1e-5, atol=1e-7)
        for x, w in zip(gb, ga):
            torch.testing.assert_close(x.cpu(), w, rtol=1e-4, atol=1e-8)
        symmetric = pyhash.exp_pair_loss(zc, labels.cuda(), weighting=weighting)
        (gs,) = torch.autograd.grad(symmetric, zc)
        c = pyhash.exp_pair_loss(z, labels, weighting=weighting)
        (gc,) = torch.autograd.grad(c, z)
        torch.testing.assert_close(symmetric.cpu(), c, rtol=1e-5, atol=1e-7)
        torch.testing.assert_close(gs.cpu(), gc, rtol=1e-4, atol=1e-8)


@pytest.mark.cuda
def test_bad_cuda_kernel_choice_raises(monkeypatch):
    z, labels, _, _ = _inputs(5, 0, 8, "cuda", dtype=torch.float32, asymmetric=False)
    monkeypatch.setenv("PYHASH_CUDA_LOSS", "fast")
    with pytest.raises(RuntimeError, match="PYHASH_CUDA_LOSS must be 'simt' or 'tensor'"):
        pyhash.exp_pair_loss(z, labels)


@pytest.mark.parametrize("options, error, match", [
    (dict(quantization=-1.0), ValueError, "quantization must be >= 0"),
    (dict(balance=float("nan")), ValueError, "balance must be finite"),
    (dict(lam=float("inf")), ValueError, "lam must be finite"),
    (dict(beta=0.0), ValueError, "beta must be > 0"),
    (dict(clamp=-1.0), ValueError, "clamp must be > 0"),
    (dict(surrogate="sign"), ValueError, "surrogate"),
    (dict(weighting="focal"), ValueError, "weighting"),
    (dict(lam="2"), TypeError, "lam must be a real number"),
])
def test_module_rejects_bad_options_when_built(options, error, match):
    with pytest.raises(error, match=match):
        ExpHashLoss(**options)


def test_module_and_regularisers():
    z, labels, y, y_labels = _inputs(10, 12, 16, "cpu")
    plain = ExpHashLoss(lam=1.2)(z, labels, y, y_labels)
    assert torch.allclose(plain, pyhash.exp_pair_loss(z, labels, y, y_labels, lam=1.2))
    reg = ExpHashLoss(lam=1.2, quantization=0.5, balance=0.25)(z, labels, y, y_labels)
    u = torch.tanh(z)
    expected = plain + 0.5 * ((u.abs() - 1) ** 2).mean() + 0.25 * (u.mean(0) ** 2).mean()
    torch.testing.assert_close(reg, expected)
    assert quantization_loss(torch.ones(3, 4)).item() == 0.0
    assert bit_balance_loss(torch.tensor([[1.0, -1.0], [-1.0, 1.0]])).item() == 0.0
    reg.backward()
    assert z.grad is not None and torch.isfinite(z.grad).all()
