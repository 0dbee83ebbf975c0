"""Loss terms of the (C)VAEs: reconstruction MSE + alpha * KL + beta * latent-correlation penalty.

Each term is returned separately so that training logs them apart (:class:`LossTerms`).
"""

from __future__ import annotations

import dataclasses

import torch

__all__ = ["LossTerms", "kl_per_dim", "latent_correlation_penalty", "vae_loss"]


@dataclasses.dataclass
class LossTerms:
    total: torch.Tensor
    recon: torch.Tensor
    kl: torch.Tensor
    corr: torch.Tensor

    def floats(self) -> dict[str, float]:
        return {k: float(getattr(self, k).detach()) for k in ("total", "recon", "kl", "corr")}


def kl_per_dim(mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """KL(N(mu, sigma^2) || N(0, 1)) per sample and latent dimension, (B, L) in nats."""
    return 0.5 * (mu.square() + logvar.exp() - 1.0 - logvar)


def latent_correlation_penalty(mu: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    """Mean squared off-diagonal Pearson correlation of ``mu`` (B, L) across the batch (0 for L = 1)."""
    b, n_lat = mu.shape
    if n_lat < 2 or b < 2:
        return mu.new_zeros(())
    c = mu - mu.mean(dim=0, keepdim=True)
    cov = c.T @ c / (b - 1)  # (L, L)
    sd = cov.diagonal().clamp_min(eps).sqrt()
    corr = cov / (sd[:, None] * sd[None, :])
    off = ~torch.eye(n_lat, dtype=torch.bool, device=mu.device)
    return corr[off].square().mean()


def vae_loss(
    recon_err: torch.Tensor, mu: torch.Tensor, logvar: torch.Tensor, *, alpha: float, beta: float
) -> LossTerms:
    """``recon_err``: (B, ...) reconstruction error in normalised units (model minus truth).

    recon = mean squared error over batch and cells; kl = KL summed over latent dimensions, averaged over
    the batch; corr = :func:`latent_correlation_penalty` of ``mu``.
    """
    recon = recon_err.square().mean()
    kl = kl_per_dim(mu, logvar).sum(dim=1).mean()
    corr = latent_correlation_penalty(mu)
    return LossTerms(recon + alpha * kl + beta * corr, recon, kl, corr)
