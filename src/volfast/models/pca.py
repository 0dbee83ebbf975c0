"""PCA baseline on the same grids and latent size as the VAEs, fitted on the training period only."""

from __future__ import annotations

import dataclasses

import torch
from torch import nn

__all__ = ["PCA", "PCAConfig"]


@dataclasses.dataclass(frozen=True)
class PCAConfig:
    latent: int = 8  # principal components kept (the VAE's latent size)
    grid: str = "image"  # image (32 x 32) or cvae (3 x 11); the CVAE condition is ignored
    shape: tuple[int, int] = (32, 32)  # grid shape, set from the data at training time


class PCA(nn.Module):
    """Linear encoder/decoder: z = (x - mean) @ W.T, x_hat = z @ W + mean, W the top right singular
    vectors of the centred training grids (float64 SVD)."""

    mean: torch.Tensor
    components: torch.Tensor
    explained_var: torch.Tensor

    def __init__(self, config: PCAConfig) -> None:
        super().__init__()
        self.config = config
        d = config.shape[0] * config.shape[1]
        if not 1 <= config.latent <= d:
            raise ValueError(f"PCAConfig.latent must be in [1, {d}], got {config.latent}")
        self.register_buffer("mean", torch.zeros(d))
        self.register_buffer("components", torch.zeros(config.latent, d))  # (L, D)
        self.register_buffer("explained_var", torch.zeros(config.latent))

    @torch.no_grad()
    def fit(self, x: torch.Tensor) -> PCA:
        """``x``: (N, H, W) training grids without NaN; N must be at least ``latent + 1``."""
        n = x.shape[0]
        if n <= self.config.latent:
            raise ValueError(f"PCA: {n} training grids for {self.config.latent} components; need more")
        flat = x.reshape(n, -1).to(torch.float64)  # (N, D)
        mu = flat.mean(dim=0)
        _, s, vh = torch.linalg.svd(flat - mu, full_matrices=False)
        # fix the sign of each component (largest |loading| positive) so refits are comparable
        sign = torch.sign(vh[: self.config.latent].gather(1, vh[: self.config.latent].abs().argmax(1, True)))
        self.mean.copy_(mu.to(self.mean.dtype))
        self.components.copy_((vh[: self.config.latent] * sign).to(self.components.dtype))
        self.explained_var.copy_((s[: self.config.latent] ** 2 / (n - 1)).to(self.explained_var.dtype))
        return self

    def encode(self, x: torch.Tensor, y: torch.Tensor | None = None) -> tuple[torch.Tensor, None]:
        """(B, H, W) -> mu (B, L); no variance (PCA is deterministic)."""
        return (x.reshape(x.shape[0], -1) - self.mean) @ self.components.T, None

    def decode(self, z: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        """(B, L) -> (B, H, W) vols."""
        return (z @ self.components + self.mean).reshape(z.shape[0], *self.config.shape)

    def forward(self, x: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        return self.decode(self.encode(x)[0])
