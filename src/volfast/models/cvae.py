"""Conditional VAEs on the (3 expiries x 11 log-strikes) vol grid, conditioned on the 3 expiry year
fractions: the dense CVAE and its conv variant (a conv encoder; the same decoder).

Decoder: ``[z, (y - y_mean) / y_std]`` -> a linear map plus an MLP residual -> standardised eSSVI raw
parameters -> :class:`~volfast.models.ssvi_head.SSVIHead` -> vols at the grid's log-strikes and the day's
expiries. Every decoded surface, for any ``z`` and any increasing expiries, is an eSSVI surface free of
butterfly and calendar arbitrage (see :mod:`volfast.models.ssvi_head`). The MLP is exactly
``nn.Sequential(Linear, SiLU, Linear, SiLU, Linear)``, the shape
:func:`volfast.kernels.mlp_decoder.fused_mlp_decoder` fuses (``output_activation="none"``).

Learned statistics, from the fitting days only (:meth:`_CVAEBase.fit_stats`): each grid cell's mean and std
(the encoder reads standardised cells), the condition's mean and std, and the SSVI raw parameters of every
fitting day (calibrated by least squares), whose mean and std standardise the decoder's output. The model
starts as PCA in that parameter space: the linear decoder holds the top ``latent`` principal directions of
the calibrated parameters (unit-variance latents), the encoder's linear path is the ridge regression of
those latents on the standardised input, and the MLP residuals start at zero. Training then refines the
whole network on the reconstruction error.
"""

from __future__ import annotations

import abc
import dataclasses
import os
import warnings

import torch
from torch import nn

from volfast.models._norm import CondNorm, GridNorm, latent_init, ridge_fit, zero_residuals
from volfast.models._refine import refine_latent
from volfast.models.ssvi_head import SSVIHead
from volfast.surface.grids import GridConfig

__all__ = ["CVAE", "CVAEConfig", "ConvCVAE", "triton_decoder_available"]

LOSSES = ("vol", "seeds")


@dataclasses.dataclass(frozen=True)
class CVAEConfig:
    latent: int = 4  # latent dimensions
    hidden: int = 48  # width of the Linear + SiLU layers
    layers: int = 2  # hidden layers in the encoder and (mirrored) in the decoder
    alpha: float = 1e-5  # weight of the KL term (per-sample KL sum vs per-cell MSE)
    beta: float = 0.01  # weight of the latent-correlation penalty (loss "seeds" only)
    loss: str = "vol"  # vol: MSE in vol units (scaled) + alpha KL; seeds: per-cell standardised MSE +
    #                    alpha KL + beta latent-correlation penalty (the original research's loss)
    skip: bool = True  # linear path from the standardised input to mu beside the encoder MLP
    refine: int = (
        15  # Levenberg-Marquardt steps on mu at evaluation (semi-amortised encoder; 0: the network's mu)
    )
    extrapolated_weight: float = 0.05  # built surfaces: weight of cells outside the quoted range (loss,
    #                                     calibration, refinement); 1 weighs every cell alike
    conv_channels: tuple[int, int] = (16, 32)  # conv variant only: Conv2d kernel (2, 3) channels
    shape: tuple[int, int] = (3, 11)  # (expiries, log-strikes), set from the data
    k: tuple[float, ...] = tuple(float(v) for v in GridConfig().cvae_k)  # the columns' ln(K/F), from data

    def __post_init__(self) -> None:
        if self.latent < 1 or self.hidden < 1 or self.layers < 1:
            raise ValueError("CVAEConfig: latent, hidden and layers must be >= 1")
        if not 0.0 <= self.extrapolated_weight <= 1.0:
            raise ValueError(
                f"CVAEConfig.extrapolated_weight must be in [0, 1]; got {self.extrapolated_weight}"
            )
        if self.loss not in LOSSES:
            raise ValueError(f"CVAEConfig.loss must be one of {', '.join(LOSSES)}; got {self.loss!r}")
        if len(self.k) != self.shape[1]:
            raise ValueError(f"CVAEConfig: {len(self.k)} log-strikes k for a grid of {self.shape[1]} columns")


def _mlp(d_in: int, hidden: int, layers: int) -> list[nn.Module]:
    mods: list[nn.Module] = []
    for i in range(layers):
        mods += [nn.Linear(d_in if i == 0 else hidden, hidden), nn.SiLU()]
    return mods


_WARNED: set[str] = set()


def _warn_torch_decoder(why: str) -> None:
    """Say once per reason that the CVAE decodes with torch instead of the fused kernel."""
    if why not in _WARNED:
        _WARNED.add(why)
        warnings.warn(f"{why}; decoding with torch instead", RuntimeWarning, stacklevel=3)


def triton_decoder_available() -> bool:
    try:
        from volfast.kernels.mlp_decoder import fused_mlp_decoder  # noqa: F401
    except Exception:
        return False
    return torch.cuda.is_available()


class _CVAEBase(nn.Module, abc.ABC):
    """What the dense and conv CVAEs share: normalisation, the linear encoder path, the SSVI decoder."""

    config: CVAEConfig
    skip_mu: nn.Linear | None
    to_mu: nn.Linear
    to_logvar: nn.Linear

    def _init_common(self, config: CVAEConfig) -> None:
        self.config = config
        rows, cols = config.shape
        self.n_out = rows * cols
        self.norm = GridNorm(config.shape, per_cell_loss=config.loss == "seeds")
        self.cond = CondNorm(rows)
        self.head = SSVIHead(rows, config.k)
        n_in = config.latent + rows
        self.decoder = nn.Sequential(
            *_mlp(n_in, config.hidden, config.layers), nn.Linear(config.hidden, self.head.n_raw)
        )
        self.dec_lin = nn.Linear(n_in, self.head.n_raw)

    def _skip(self, n_in: int) -> None:
        self.skip_mu = nn.Linear(n_in, self.config.latent) if self.config.skip else None

    def _mu(self, h: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
        mu: torch.Tensor = self.to_mu(h)
        skip = self.skip_mu
        return mu + skip(u) if isinstance(skip, nn.Linear) else mu

    def _std_input(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """[standardised cells, standardised year fractions] (B, 33 + 3): the linear path's input."""
        return torch.cat([self.norm.normalise(x).reshape(x.shape[0], -1), self.cond(y)], dim=1)

    @torch.no_grad()
    def fit_stats(self, x: torch.Tensor, y: torch.Tensor, weight: torch.Tensor | None = None) -> None:
        """Learned statistics from the fitting days ``x`` (N, 3, 11), ``y`` (N, 3), and the PCA start in
        eSSVI parameter space (module docstring; calibrated with each cell's squared error times
        ``weight``, when given)."""
        self.norm.fit(x)
        self.cond.fit(y)
        u = self.head.fit(x, y, weight=weight)  # (N, P) standardised calibrated parameters
        # conditional PCA: what the expiries explain linearly, then principal directions of the rest
        yn = self.cond(y)
        wy, by = ridge_fit(yn, u)
        z, w = latent_init(u - yn @ wy.T - by, self.config.latent)
        lat = self.config.latent
        self.dec_lin.weight[:, :lat] = w.to(self.dec_lin.weight.dtype)
        self.dec_lin.weight[:, lat:] = wy.to(self.dec_lin.weight.dtype)
        self.dec_lin.bias.copy_(by.to(self.dec_lin.bias.dtype))
        zero_residuals(self.decoder[-1], self.to_mu, self.to_logvar)
        if isinstance(self.skip_mu, nn.Linear):
            wt, b = ridge_fit(self._std_input(x, y), z)
            self.skip_mu.weight.copy_(wt)
            self.skip_mu.bias.copy_(b)

    def forward(
        self, x: torch.Tensor, y: torch.Tensor, *, sample: bool = True, weight: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Returns (x_hat, mu, logvar); ``sample=False`` decodes mu (evaluation)."""
        mu, logvar = self.encode(x, y, weight=weight)
        z = mu + torch.randn_like(mu) * (0.5 * logvar).exp() if sample else mu
        return self.decode(z, y), mu, logvar

    def encode(
        self, x: torch.Tensor, y: torch.Tensor, weight: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """x (B, 3, 11) vols, y (B, 3) year fractions -> mu, logvar (B, L). In eval mode mu is refined by
        ``config.refine`` Levenberg-Marquardt steps on the decoded surface's error, each cell's squared
        error times ``weight`` when given (:mod:`volfast.models._refine`)."""
        mu, logvar = self._encode(x, y)
        if not self.training and self.config.refine > 0:
            mu = refine_latent(
                lambda z: self.decode(z, y, backend="torch"), x, mu, steps=self.config.refine, weight=weight
            )
        return mu, logvar

    @abc.abstractmethod
    def _encode(self, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The network's amortised mu, logvar (B, L)."""

    def decode_raw(self, z: torch.Tensor, y: torch.Tensor, backend: str | None = None) -> torch.Tensor:
        """z (B, L), y (B, 3) -> eSSVI raw parameters (B, 3 * 3) (see :class:`SSVIHead`)."""
        if backend not in (None, "torch", "triton"):
            raise ValueError(f"backend must be None, 'torch' or 'triton'; got {backend!r}")
        zy = torch.cat([z, self.cond(y)], dim=1)  # (B, L + 3)
        use_triton = backend == "triton" or (backend is None and z.is_cuda and triton_decoder_available())
        if use_triton:
            try:
                from volfast.kernels.mlp_decoder import fused_mlp_decoder, layers_from_module
            except Exception as exc:
                raise RuntimeError(
                    f"backend='triton' requested but volfast.kernels is unusable: {exc}"
                ) from exc
            if not z.is_cuda and os.environ.get("TRITON_INTERPRET") != "1":
                raise RuntimeError("backend='triton' needs CUDA tensors (or TRITON_INTERPRET=1 for testing)")
            try:
                h = fused_mlp_decoder(
                    zy,
                    layers_from_module(self.decoder, output_activation="none"),
                    hidden_activation="silu",
                    output_activation="none",
                )
            except ValueError as exc:  # DecoderTooLarge: more weights than a block's shared memory
                if backend == "triton" or type(exc).__name__ != "DecoderTooLarge":
                    raise
                _warn_torch_decoder(str(exc))
                use_triton = False
        if not use_triton:
            h = self.decoder(zy)
        return self.head.raw(h + self.dec_lin(zy))

    def decode(self, z: torch.Tensor, y: torch.Tensor, backend: str | None = None) -> torch.Tensor:
        """z (B, L), y (B, 3) year fractions (ascending per row) -> vols (B, 3, 11), > 0, arbitrage-free.

        ``backend``: None picks the fused Triton kernel for the MLP on CUDA tensors when it is importable,
        torch otherwise; "torch" or "triton" force one ("triton" raises if it cannot run here).
        """
        return self.head.vols(self.decode_raw(z, y, backend), y)


class CVAE(_CVAEBase):
    """Dense CVAE: encoder u = [x_norm (33), y_norm (3)] -> Linear+SiLU x layers -> mu (+ linear path from
    u), logvar (latent); decoder [z, y_norm] -> linear + MLP residual -> SSVI parameters -> vols (3, 11)."""

    def __init__(self, config: CVAEConfig) -> None:
        super().__init__()
        self._init_common(config)
        c = config
        n_y = c.shape[0]
        self.encoder = nn.Sequential(*_mlp(self.n_out + n_y, c.hidden, c.layers))
        self.to_mu = nn.Linear(c.hidden, c.latent)
        self.to_logvar = nn.Linear(c.hidden, c.latent)
        self._skip(self.n_out + n_y)

    def _encode(self, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        u = self._std_input(x, y)
        h = self.encoder(u)
        return self._mu(h, u), self.to_logvar(h)


class ConvCVAE(_CVAEBase):
    """Conv CVAE: Conv2d kernel (2, 3) twice on the (1, 3, 11) grid -> (C2, 1, 7), flattened and joined with
    y_norm -> Linear+SiLU -> mu (+ the dense CVAE's linear path), logvar; the dense CVAE's SSVI decoder."""

    def __init__(self, config: CVAEConfig) -> None:
        super().__init__()
        self._init_common(config)
        c = config
        c1, c2 = c.conv_channels
        h, w = c.shape
        if h < 3 or w < 5:
            raise ValueError(f"ConvCVAE needs a grid of at least 3 x 5, got {c.shape}")
        n_flat = c2 * (h - 2) * (w - 4)
        n_y = h
        self.conv = nn.Sequential(
            nn.Conv2d(1, c1, (2, 3)), nn.SiLU(), nn.Conv2d(c1, c2, (2, 3)), nn.SiLU(), nn.Flatten()
        )
        self.encoder = nn.Sequential(*_mlp(n_flat + n_y, c.hidden, c.layers))
        self.to_mu = nn.Linear(c.hidden, c.latent)
        self.to_logvar = nn.Linear(c.hidden, c.latent)
        self._skip(self.n_out + n_y)

    def _encode(self, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h = self.conv(self.norm.normalise(x).unsqueeze(1))
        h = self.encoder(torch.cat([h, self.cond(y)], dim=1))
        return self._mu(h, self._std_input(x, y)), self.to_logvar(h)
