"""The fused exponentiated pairwise hashing loss (op ``pyhash::exp_pair_loss``), with autograd.

The op computes the loss and its gradients in one pass and returns them; the registered backward
only scales the saved gradients by the incoming gradient. Double backward is not supported.
"""

import numbers

import torch

import pyhash._extension  # noqa: F401  (registers the ops)
from pyhash.reference.loss import SURROGATES, WEIGHTINGS


def _number(value, name: str, positive: bool = False) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a real number, got {type(value).__name__}")
    value = float(value)
    if value != value or value in (float("inf"), float("-inf")):
        raise ValueError(f"{name} must be finite, got {value}")
    if positive and value <= 0:
        raise ValueError(f"{name} must be > 0, got {value}")
    return value


def check_loss_options(lam, beta, clamp, surrogate: str, weighting: str):
    """(lam, beta, clamp) as floats, after checking every option of the loss: ValueError or
    TypeError naming the bad one."""
    if surrogate not in SURROGATES:
        raise ValueError(f"surrogate must be one of {SURROGATES}, got {surrogate!r}")
    if weighting not in WEIGHTINGS:
        raise ValueError(f"weighting must be one of {WEIGHTINGS}, got {weighting!r}")
    return _number(lam, "lam"), _number(beta, "beta", positive=True), _number(clamp, "clamp", positive=True)


def exp_pair_loss(
    z: torch.Tensor,
    labels: torch.Tensor,
    y: torch.Tensor = None,
    y_labels: torch.Tensor = None,
    *,
    lam: float = 1.0,
    beta: float = 1.0,
    surrogate: str = "tanh",
    weighting: str = "uniform",
    clamp: float = 30.0,
    y_is_codes: bool = False,
) -> torch.Tensor:
    """Exponentiated pairwise hashing loss ``sum_ij w_ij exp(-lam s_ij u_i.v_j / B) / sum_ij w_ij``.

    Args:
        z: float[n, B] network outputs (float32/16/bfloat16 accumulate in float32; float64 in
            float64), CPU or CUDA.
        labels: int64[n] class ids (similar iff equal) or multi-hot [n, C] (similar iff they
            share a label).
        y, y_labels: optional bank ``float[m, B]`` and its labels (same kind as ``labels``):
            every batch item is paired with every bank item. Without them the pairs are i != j of
            the batch (symmetric form).
        lam: the exponent's scale lambda. beta: tanh slope.
        surrogate: ``"tanh"`` (u = tanh(beta z)), ``"bilinear"`` (u = z, exponent clamped to
            [-clamp, clamp]) or ``"cosine"`` (u = sqrt(B) z / |z|).
        weighting: ``"uniform"`` or ``"balanced"`` (similar and dissimilar pairs share half the
            weight each).
        y_is_codes: y already holds codes (e.g. ±1 database codes); no surrogate on the bank side.
    Returns:
        A 0-d tensor in z's dtype, differentiable with respect to z and y. Zero when there are no
        pairs. NaN or Inf in z or y raises RuntimeError.
    """
    if not isinstance(z, torch.Tensor):
        raise TypeError(f"z must be a torch.Tensor, got {type(z).__name__}")
    if not isinstance(labels, torch.Tensor):
        raise TypeError(f"labels must be a torch.Tensor, got {type(labels).__name__}")
    if (y is None) != (y_labels is None):
        raise ValueError("y and y_labels must be given together")
    lam, beta, clamp = check_loss_options(lam, beta, clamp, surrogate, weighting)
    needs_grad = z.requires_grad or (y is not None and y.requires_grad)
    compute_grad = torch.is_grad_enabled() and needs_grad
    loss, _, _ = torch.ops.pyhash.exp_pair_loss(
        z,
        labels,
        y,
        y_labels,
        lam,
        beta,
        clamp,
        surrogate,
        weighting,
        bool(y_is_codes),
        compute_grad,
    )
    return loss


def _setup_context(ctx, inputs, output):
    _, grad_z, grad_y = output
    ctx.save_for_backward(grad_z, grad_y)
    ctx.computed = inputs[10]


def _backward(ctx, grad_loss, _unused_grad_z, _unused_grad_y):
    grad_z, grad_y = ctx.saved_tensors
    wants_z, wants_y = ctx.needs_input_grad[0], ctx.needs_input_grad[2]
    if (wants_z or wants_y) and not ctx.computed:
        raise RuntimeError("pyhash::exp_pair_loss was called with compute_grad=False; use pyhash.exp_pair_loss")
    dz = grad_loss * grad_z if wants_z else None
    dy = grad_loss * grad_y if wants_y else None
    return dz, None, dy, None, None, None, None, None, None, None, None


torch.library.register_autograd("pyhash::exp_pair_loss", _backward, setup_context=_setup_context)


@torch.library.register_fake("pyhash::exp_pair_loss")
def _exp_pair_loss_fake(z, labels, y, y_labels, lam, beta, clamp, surrogate, weighting, y_is_codes, compute_grad):
    grad_z = z.new_empty(z.shape) if compute_grad else z.new_empty((0,))
    grad_y = y.new_empty(y.shape) if (compute_grad and y is not None) else z.new_empty((0,))
    return z.new_empty(()), grad_z, grad_y
