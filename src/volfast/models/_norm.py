"""Normalisation statistics held as module buffers (so they save and reload with the state dict)."""

from __future__ import annotations

import math

import torch
from torch import nn

__all__ = ["CondNorm", "GridNorm", "inv_softplus", "latent_init", "ridge_fit", "zero_residuals"]


def inv_softplus(v: torch.Tensor) -> torch.Tensor:
    """x with softplus(x) = v (v > 0)."""
    return v + torch.log(-torch.expm1(-v))


class GridNorm(nn.Module):
    """Per-cell centring and scaling of a vol grid, fitted on training data only.

    Encoder inputs are ``(x - mean) / scale`` with a per-cell ``scale`` (floored at a tenth of the median
    cell std so that near-constant cells do not blow up). The reconstruction loss compares
    ``(x_hat - x) / loss_scale`` with one scalar ``loss_scale`` (the training vols' overall std: an MSE in
    vol units, rescaled) or, with ``per_cell_loss``, ``(x_hat - x) / scale`` (every cell weighted by its
    own training variability, so quiet cells are fitted as carefully as busy ones). Vols themselves are
    never shifted before a softplus: the decoders output the vol (or a positive multiple of a softplus),
    positive by construction.
    """

    mean: torch.Tensor
    scale: torch.Tensor
    loss_scale: torch.Tensor

    def __init__(self, shape: tuple[int, ...], *, per_cell_loss: bool = False) -> None:
        super().__init__()
        self.per_cell_loss = per_cell_loss
        self.register_buffer("mean", torch.full(shape, 0.25))
        self.register_buffer("scale", torch.full(shape, 0.1))
        self.register_buffer("loss_scale", torch.tensor(0.1))

    @torch.no_grad()
    def fit(self, x: torch.Tensor) -> None:
        """``x``: (N, *shape) training vols, no NaN."""
        if x.shape[1:] != self.mean.shape:
            raise ValueError(f"GridNorm.fit: expected (N, {tuple(self.mean.shape)}), got {tuple(x.shape)}")
        if x.shape[0] < 2 or not torch.isfinite(x).all():
            raise ValueError("GridNorm.fit: need at least 2 training grids without NaN")
        x64 = x.to(torch.float64)
        sd = x64.std(dim=0)
        floor = 0.1 * float(sd.median()) or 1e-4
        self.mean.copy_(x64.mean(dim=0).to(self.mean.dtype))
        self.scale.copy_(sd.clamp_min(max(floor, 1e-6)).to(self.scale.dtype))
        self.loss_scale.fill_(max(float(x64.std()), 1e-6) if not math.isnan(float(x64.std())) else 0.1)

    def normalise(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.mean) / self.scale

    def loss_error(self, x_hat: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        return (x_hat - x) / (self.scale if self.per_cell_loss else self.loss_scale)


class CondNorm(nn.Module):
    """Standardisation of a condition vector (the CVAE's expiry year fractions), training statistics."""

    mean: torch.Tensor
    std: torch.Tensor

    def __init__(self, n: int) -> None:
        super().__init__()
        self.register_buffer("mean", torch.zeros(n))
        self.register_buffer("std", torch.ones(n))

    @torch.no_grad()
    def fit(self, y: torch.Tensor) -> None:
        y64 = y.to(torch.float64)
        self.mean.copy_(y64.mean(dim=0).to(self.mean.dtype))
        self.std.copy_(y64.std(dim=0).clamp_min(1e-6).to(self.std.dtype))

    def forward(self, y: torch.Tensor) -> torch.Tensor:
        return (y - self.mean) / self.std


@torch.no_grad()
@torch.no_grad()
def zero_residuals(last: torch.nn.Module, to_mu: torch.nn.Linear, to_logvar: torch.nn.Linear) -> None:
    """Make a (C)VAE start exactly at its PCA start: the decoder's last (residual) layer and the encoder's mu
    head output 0, and the encoder's log-variance starts at -6 (a near-deterministic latent)."""
    assert isinstance(last, torch.nn.Linear)
    last.weight.zero_()
    last.bias.zero_()
    to_mu.weight.zero_()
    to_mu.bias.zero_()
    to_logvar.weight.zero_()
    to_logvar.bias.fill_(-6.0)


def latent_init(
    u: torch.Tensor, latent: int, *, metric: torch.Tensor | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """PCA of standardised decoder targets ``u`` (N, P): unit-variance scores ``z`` (N, latent) and the
    loading matrix ``W`` (P, latent) with ``u - mean(u) ~ z @ W.T`` (float64 SVD). Components beyond
    ``N - 1`` get zero scores and loadings.

    ``metric`` (P, P), symmetric positive semi-definite: the squared length of a parameter error ``d`` is
    ``d @ metric @ d`` instead of ``d @ d``. With the decoder's output metric (the mean over the fitting
    days of ``J.T diag(weight) J``, ``J`` the Jacobian of the decoded grid in ``u``;
    :meth:`volfast.models.ssvi_head.SSVIHead.output_metric`) the principal directions are those that
    explain the most *output* variance to first order: PCA of ``metric^(1/2) (u - mean)``, mapped back by
    ``metric^(-1/2)`` (the square root regularised at 1e-8 of its largest eigenvalue, so directions the
    output ignores are not amplified). Without it, every standardised parameter weighs alike, and with many
    parameters of little effect (the image grid's 96) the latent is spent on them."""
    u64 = u.to(torch.float64)
    c = u64 - u64.mean(dim=0)
    n = c.shape[0]
    if metric is not None:
        g = metric.to(torch.float64)
        g = 0.5 * (g + g.T)
        ev, q = torch.linalg.eigh(g)
        ev = ev.clamp_min(1e-8 * float(ev.max().clamp_min(1e-300)))
        root, inv_root = (q * ev.sqrt()) @ q.T, (q * ev.rsqrt()) @ q.T
        c = c @ root  # symmetric root: rows are metric^(1/2) (u_i - mean)
    _, s, vh = torch.linalg.svd(c, full_matrices=False)
    m = min(latent, vh.shape[0], max(n - 1, 0))
    z = torch.zeros(n, latent, dtype=torch.float64)
    w = torch.zeros(u.shape[1], latent, dtype=torch.float64)
    if m > 0:
        sd = (s[:m] / max(n - 1, 1) ** 0.5).clamp_min(1e-12)  # (m,) component std
        z[:, :m] = (c @ vh[:m].T) / sd
        w[:, :m] = vh[:m].T * sd
        if metric is not None:
            w = inv_root @ w
    return z.to(u.dtype), w.to(u.dtype)


@torch.no_grad()
def ridge_fit(x: torch.Tensor, z: torch.Tensor, *, lam: float = 1e-3) -> tuple[torch.Tensor, torch.Tensor]:
    """Linear map ``z ~ x @ W.T + b`` by ridge least squares (``lam`` relative to the mean feature variance);
    returns ``W (L, D)``, ``b (L,)`` (float64 solve)."""
    x64, z64 = x.to(torch.float64), z.to(torch.float64)
    xm, zm = x64.mean(dim=0), z64.mean(dim=0)
    xc, zc = x64 - xm, z64 - zm
    d = xc.shape[1]
    gram = xc.T @ xc
    reg = lam * float(gram.diagonal().mean().clamp_min(1e-12))
    w = torch.linalg.solve(gram + reg * torch.eye(d, dtype=torch.float64), xc.T @ zc).T  # (L, D)
    b = zm - w @ xm
    return w.to(x.dtype), b.to(x.dtype)
