"""Conv VAE on the (tenor x log-moneyness) vol image: the "visual" world model.

Encoder: stride-2 convs (each halves H and W) -> flatten -> mu (plus a linear path from the standardised
image), logvar. Decoder: z -> a linear map plus an MLP residual -> standardised eSSVI raw parameters ->
:class:`~volfast.models.ssvi_head.SSVIHead` at the image's fixed tenors and log-moneyness: every decoded
image, for any z, is an eSSVI surface free of butterfly and calendar arbitrage, with positive vols. Like the
CVAEs it starts as PCA in eSSVI parameter space fitted on the training days (see :mod:`volfast.models.cvae`),
with two differences that its 96 parameters (32 rows x 3) need: the calibration is not smoothed along the
rows (``calibration_smooth``), and the principal directions are taken in the decoder's output metric (the
mean Gauss-Newton matrix of the weighted vol error, :meth:`SSVIHead.output_metric`), so that the 8 latents
go to the parameter moves that change the image, not to parameters the grid barely sees.
"""

from __future__ import annotations

import dataclasses

import torch
from torch import nn

from volfast.models._norm import GridNorm, latent_init, ridge_fit, zero_residuals
from volfast.models._refine import refine_latent
from volfast.models.ssvi_head import SSVIHead
from volfast.surface.grids import GridConfig

__all__ = ["VAE", "VAEConfig"]

_GRID = GridConfig()


@dataclasses.dataclass(frozen=True)
class VAEConfig:
    latent: int = 8  # latent dimensions
    channels: tuple[int, ...] = (16, 32, 64)  # encoder conv channels; each conv halves H and W
    hidden: int = 64  # width of the decoder MLP's Linear + SiLU layers
    layers: int = 2  # hidden layers of the decoder MLP
    alpha: float = 1e-4  # weight of the KL term (per-sample KL sum vs per-cell MSE)
    beta: float = 0.01  # weight of the latent-correlation penalty (loss "seeds" only)
    loss: str = "vol"  # vol: MSE in vol units (scaled) + alpha KL; seeds: + beta latent correlation
    skip: bool = True  # linear path from the standardised image to mu beside the conv encoder
    refine: int = (
        15  # Levenberg-Marquardt steps on mu at evaluation (semi-amortised encoder; 0: the network's mu)
    )
    extrapolated_weight: float = 0.05  # built surfaces: weight of cells outside the quoted range (loss,
    #                                     calibration, refinement); 1 weighs every cell alike
    calibration_smooth: float = 0.0  # row-smoothness penalty of the start's eSSVI calibration
    #  (calibrate_raw's smooth). 0: the start's PCA runs in the decoder's output metric, where parameters
    #  the grid cannot see cost nothing, so they need no smoothing; 1e-4 (the CVAE's) costs the built demo
    #  images 0.22 -> 0.35 vol points of eSSVI fit over all cells, more where cells are down-weighted
    shape: tuple[int, int] = (
        32,
        32,
    )  # image (tenors, log-moneyness), set from the data; divisible by 2^depth
    k: tuple[float, ...] = tuple(float(v) for v in _GRID.image_k)  # columns' ln(K/F), set from the data
    tenors: tuple[float, ...] = tuple(float(v) for v in _GRID.image_tenor_years)  # rows' years (ACT/365)

    def __post_init__(self) -> None:
        f = 2 ** len(self.channels)
        if self.latent < 1 or not self.channels or self.hidden < 1 or self.layers < 1:
            raise ValueError("VAEConfig: need latent, hidden, layers >= 1 and at least one conv layer")
        if self.shape[0] % f or self.shape[1] % f:
            raise ValueError(f"VAEConfig: image shape {self.shape} not divisible by 2^{len(self.channels)}")
        if not 0.0 <= self.extrapolated_weight <= 1.0:
            raise ValueError(
                f"VAEConfig.extrapolated_weight must be in [0, 1]; got {self.extrapolated_weight}"
            )
        if not self.calibration_smooth >= 0.0:
            raise ValueError(f"VAEConfig.calibration_smooth must be >= 0; got {self.calibration_smooth}")
        if self.loss not in ("vol", "seeds"):
            raise ValueError(f"VAEConfig.loss must be vol or seeds; got {self.loss!r}")
        if len(self.k) != self.shape[1] or len(self.tenors) != self.shape[0]:
            raise ValueError(
                f"VAEConfig: {len(self.tenors)} tenors x {len(self.k)} k for an image of {self.shape}"
            )
        if any(b <= a for a, b in zip(self.tenors, self.tenors[1:], strict=False)) or self.tenors[0] <= 0:
            raise ValueError("VAEConfig.tenors must be positive and increasing")


class VAE(nn.Module):
    def __init__(self, config: VAEConfig) -> None:
        super().__init__()
        self.config = config
        h, w = config.shape
        f = 2 ** len(config.channels)
        n_flat = config.channels[-1] * (h // f) * (w // f)
        enc: list[nn.Module] = []
        c_in = 1
        for c in config.channels:
            enc += [nn.Conv2d(c_in, c, kernel_size=4, stride=2, padding=1), nn.SiLU()]
            c_in = c
        self.encoder = nn.Sequential(*enc, nn.Flatten())  # (B, 1, H, W) -> (B, n_flat)
        self.to_mu = nn.Linear(n_flat, config.latent)
        self.to_logvar = nn.Linear(n_flat, config.latent)
        self.skip_mu = nn.Linear(h * w, config.latent) if config.skip else None
        self.head = SSVIHead(h, config.k, config.tenors)
        mlp: list[nn.Module] = []
        for i in range(config.layers):
            mlp += [nn.Linear(config.latent if i == 0 else config.hidden, config.hidden), nn.SiLU()]
        self.decoder = nn.Sequential(*mlp, nn.Linear(config.hidden, self.head.n_raw))  # residual
        self.dec_lin = nn.Linear(config.latent, self.head.n_raw)
        self.norm = GridNorm((h, w))

    @torch.no_grad()
    def fit_stats(
        self, x: torch.Tensor, y: torch.Tensor | None = None, weight: torch.Tensor | None = None
    ) -> None:
        """Normalisation from the training grids (N, H, W) and the PCA start in eSSVI parameter space
        (calibrated with each cell's squared error times ``weight``, when given)."""
        self.norm.fit(x)
        u = self.head.fit(x, weight=weight, smooth=self.config.calibration_smooth)
        # principal directions in the decoded grid's (weighted) vol error, not in raw parameter units
        z, w = latent_init(u, self.config.latent, metric=self.head.output_metric(u, weight=weight))
        self.dec_lin.weight.copy_(w.to(self.dec_lin.weight.dtype))
        self.dec_lin.bias.copy_(u.mean(dim=0).to(self.dec_lin.bias.dtype))
        zero_residuals(self.decoder[-1], self.to_mu, self.to_logvar)
        if self.skip_mu is not None:
            wt, b = ridge_fit(self.norm.normalise(x).reshape(x.shape[0], -1), z)
            self.skip_mu.weight.copy_(wt)
            self.skip_mu.bias.copy_(b)

    def encode(
        self, x: torch.Tensor, y: torch.Tensor | None = None, weight: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """(B, H, W) vols -> mu, logvar (B, L); in eval mode mu is refined by ``config.refine``
        Levenberg-Marquardt steps on the decoded image's error, each cell's squared error times ``weight``
        when given (:mod:`volfast.models._refine`)."""
        xn = self.norm.normalise(x)
        h = self.encoder(xn.unsqueeze(1))
        mu = self.to_mu(h)
        if self.skip_mu is not None:
            mu = mu + self.skip_mu(xn.reshape(x.shape[0], -1))
        if not self.training and self.config.refine > 0:
            mu = refine_latent(self.decode, x, mu, steps=self.config.refine, weight=weight)
        return mu, self.to_logvar(h)

    def decode_raw(self, z: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        """(B, L) -> SSVI raw parameters (B, 2H + 1)."""
        return self.head.raw(self.decoder(z) + self.dec_lin(z))

    def decode(self, z: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        """(B, L) -> (B, H, W) vols (> 0), arbitrage-free on the image's tenors and log-moneyness."""
        return self.head.vols(self.decode_raw(z))

    def forward(
        self,
        x: torch.Tensor,
        y: torch.Tensor | None = None,
        *,
        sample: bool = True,
        weight: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Returns (x_hat, mu, logvar); ``sample=False`` decodes mu (evaluation)."""
        mu, logvar = self.encode(x, weight=weight)
        z = mu + torch.randn_like(mu) * (0.5 * logvar).exp() if sample else mu
        return self.decode(z), mu, logvar
