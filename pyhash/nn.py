"""torch.nn modules around the fused loss, plus the optional regularisers (off by default)."""

import torch

from pyhash.ops.loss import _number, check_loss_options, exp_pair_loss
from pyhash.reference.loss import surrogate_codes


def quantization_loss(u: torch.Tensor) -> torch.Tensor:
    """Mean of (|u| - 1)^2 over u: float[n, B]; pulls relaxed codes towards ±1."""
    return ((u.abs() - 1) ** 2).mean()


def bit_balance_loss(u: torch.Tensor) -> torch.Tensor:
    """Mean over bits of (mean over the batch of u)^2; pushes each bit to be +1 half the time."""
    return (u.mean(dim=0) ** 2).mean()


def _weight(value, name: str) -> float:
    value = _number(value, name)
    if value < 0:
        raise ValueError(f"{name} must be >= 0 (a regulariser's weight), got {value}")
    return value


class ExpHashLoss(torch.nn.Module):
    """Exponentiated pairwise hashing loss (see :func:`pyhash.exp_pair_loss` and docs/loss.md).

    ``loss = exp_pair_loss(z, labels, y, y_labels) + quantization * quantization_loss(u)
    + balance * bit_balance_loss(u)`` with ``u`` the surrogate codes of z.
    """

    def __init__(
        self,
        lam: float = 1.0,
        beta: float = 1.0,
        surrogate: str = "tanh",
        weighting: str = "uniform",
        clamp: float = 30.0,
        quantization: float = 0.0,
        balance: float = 0.0,
    ):
        super().__init__()
        self.lam, self.beta, self.clamp = check_loss_options(lam, beta, clamp, surrogate, weighting)
        self.surrogate, self.weighting = surrogate, weighting
        self.quantization, self.balance = _weight(quantization, "quantization"), _weight(balance, "balance")

    def forward(self, z, labels, y=None, y_labels=None, y_is_codes: bool = False):
        loss = exp_pair_loss(
            z,
            labels,
            y,
            y_labels,
            lam=self.lam,
            beta=self.beta,
            surrogate=self.surrogate,
            weighting=self.weighting,
            clamp=self.clamp,
            y_is_codes=y_is_codes,
        )
        if self.quantization or self.balance:
            u = surrogate_codes(z, self.surrogate, self.beta)
            if self.quantization:
                loss = loss + self.quantization * quantization_loss(u)
            if self.balance:
                loss = loss + self.balance * bit_balance_loss(u)
        return loss

    def extra_repr(self) -> str:
        return (
            f"lam={self.lam}, beta={self.beta}, surrogate={self.surrogate!r}, weighting={self.weighting!r}, "
            f"quantization={self.quantization}, balance={self.balance}"
        )
