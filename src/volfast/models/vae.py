"""Conv VAE on the (tenor x log-moneyness) vol image: the "visual" world model.

Encoder: stride-2 convs (each halves H and W) -> flatten -> mu, logvar. Decoder: Linear -> transposed convs
(each doubles H and W) -> plus a learned per-pixel bias (initialised at the training mean vol) -> softplus,
so the decoder outputs the vol itself and it is positive for every z.
"""

from __future__ import annotations

import dataclasses

import torch
from torch import nn

from volfast.models._norm import GridNorm, inv_softplus

__all__ = ["VAE", "VAEConfig"]


@dataclasses.dataclass(frozen=True)
class VAEConfig:
    latent: int = 8  # latent dimensions
    channels: tuple[int, ...] = (16, 32, 64)  # encoder conv channels; each conv halves H and W
    alpha: float = 1e-4  # weight of the KL term (per-sample KL sum vs per-cell MSE)
    beta: float = 0.01  # weight of the latent-correlation penalty
    shape: tuple[int, int] = (
        32,
        32,
    )  # image (tenors, log-moneyness), set from the data; divisible by 2^depth

    def __post_init__(self) -> None:
        f = 2 ** len(self.channels)
        if self.latent < 1 or not self.channels:
            raise ValueError("VAEConfig: need latent >= 1 and at least one conv layer")
        if self.shape[0] % f or self.shape[1] % f:
            raise ValueError(f"VAEConfig: image shape {self.shape} not divisible by 2^{len(self.channels)}")


class VAE(nn.Module):
    def __init__(self, config: VAEConfig) -> None:
        super().__init__()
        self.config = config
        h, w = config.shape
        f = 2 ** len(config.channels)
        self.bottom = (config.channels[-1], h // f, w // f)
        n_flat = config.channels[-1] * (h // f) * (w // f)
        enc: list[nn.Module] = []
        c_in = 1
        for c in config.channels:
            enc += [nn.Conv2d(c_in, c, kernel_size=4, stride=2, padding=1), nn.SiLU()]
            c_in = c
        self.encoder = nn.Sequential(*enc, nn.Flatten())  # (B, 1, H, W) -> (B, n_flat)
        self.to_mu = nn.Linear(n_flat, config.latent)
        self.to_logvar = nn.Linear(n_flat, config.latent)
        self.from_z = nn.Sequential(nn.Linear(config.latent, n_flat), nn.SiLU())
        dec: list[nn.Module] = []
        chans = list(config.channels[::-1]) + [1]
        for i in range(len(config.channels)):
            dec.append(nn.ConvTranspose2d(chans[i], chans[i + 1], kernel_size=4, stride=2, padding=1))
            if i < len(config.channels) - 1:
                dec.append(nn.SiLU())
        self.decoder = nn.Sequential(*dec)  # (B, C, h, w) -> (B, 1, H, W)
        self.out_bias = nn.Parameter(torch.zeros(h, w))  # per-pixel pre-softplus bias
        self.norm = GridNorm((h, w))

    @torch.no_grad()
    def fit_stats(self, x: torch.Tensor) -> None:
        """Normalisation from the training grids (N, H, W); the output bias starts at their mean vol."""
        self.norm.fit(x)
        self.out_bias.copy_(inv_softplus(self.norm.mean.clamp_min(1e-3)))

    def encode(self, x: torch.Tensor, y: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """(B, H, W) vols -> mu, logvar (B, L)."""
        h = self.encoder(self.norm.normalise(x).unsqueeze(1))
        return self.to_mu(h), self.to_logvar(h)

    def decode(self, z: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        """(B, L) -> (B, H, W) vols (> 0)."""
        h = self.from_z(z).reshape(z.shape[0], *self.bottom)
        return nn.functional.softplus(self.decoder(h).squeeze(1) + self.out_bias)

    def forward(
        self, x: torch.Tensor, y: torch.Tensor | None = None, *, sample: bool = True
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Returns (x_hat, mu, logvar); ``sample=False`` decodes mu (evaluation)."""
        mu, logvar = self.encode(x)
        z = mu + torch.randn_like(mu) * (0.5 * logvar).exp() if sample else mu
        return self.decode(z), mu, logvar
