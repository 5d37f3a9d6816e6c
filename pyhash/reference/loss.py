"""Reference exponentiated pairwise hashing loss: the obvious eager PyTorch version (two GEMMs and
n x m pair matrices). It is the oracle for the fused kernels; its gradients come from autograd.

See docs/loss.md for the definition.
"""

import math

import torch

SURROGATES = ("tanh", "bilinear", "cosine")
WEIGHTINGS = ("uniform", "balanced")


def surrogate_codes(z: torch.Tensor, surrogate: str, beta: float) -> torch.Tensor:
    """u = phi(z) for z: float[n, B]."""
    if surrogate == "tanh":
        return torch.tanh(beta * z)
    if surrogate == "bilinear":
        return z
    if surrogate == "cosine":
        return math.sqrt(z.shape[1]) * z / z.norm(dim=1, keepdim=True)
    raise ValueError(f"unknown surrogate {surrogate!r}")


def similarity(labels: torch.Tensor, other: torch.Tensor) -> torch.Tensor:
    """bool[n, m]: equal class ids (1-D labels) or at least one shared label (multi-hot rows)."""
    if labels.dim() == 1:
        return labels[:, None] == other[None, :]
    return (labels.float() @ other.float().T) > 0


def exp_pair_loss_ref(
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
    """Scalar loss sum_ij w_ij exp(-lam s_ij a_ij) / sum_ij w_ij, a_ij = u_i . v_j / B.

    Symmetric form (y is None): pairs i != j of the batch. Asymmetric form: every (i, j) of
    batch x bank. Computed in float64 when z is float64, else in float32.
    """
    acc = torch.float64 if z.dtype == torch.float64 else torch.float32
    u = surrogate_codes(z.to(acc), surrogate, beta)
    symmetric = y is None
    if symmetric:
        v, other_labels = u, labels
    else:
        y = y.to(acc)
        v = y if y_is_codes else surrogate_codes(y, surrogate, beta)
        other_labels = y_labels
    nbits = z.shape[1]
    a = u @ v.T / nbits
    sim = similarity(labels, other_labels)
    s = sim.to(acc) * 2 - 1
    exponent = -lam * s * a
    if surrogate == "bilinear":
        exponent = exponent.clamp(-clamp, clamp)
    valid = torch.ones_like(sim)
    if symmetric:
        valid.fill_diagonal_(False)
    if weighting == "uniform":
        w = valid.to(acc)
    elif weighting == "balanced":
        n_sim = int((sim & valid).sum())
        n_dis = int((~sim & valid).sum())
        w_sim = (0.5 if n_dis else 1.0) / max(n_sim, 1)
        w_dis = (0.5 if n_sim else 1.0) / max(n_dis, 1)
        w = torch.where(sim, torch.tensor(w_sim, dtype=acc), torch.tensor(w_dis, dtype=acc)) * valid
    else:
        raise ValueError(f"unknown weighting {weighting!r}")
    total = w.sum()
    if total == 0:
        return (exponent * 0).sum()  # no pairs: 0, still connected to the graph
    return (w * torch.exp(exponent)).sum() / total
