"""Conditional VAEs on the (3 expiries x 11 log-strikes) vol grid, conditioned on the 3 expiry year
fractions: the dense CVAE and its conv variant.

Learned statistics, from the fitting days only (:class:`~volfast.models._norm.GridNorm`): each grid cell
has its training mean and std. The encoder reads standardised cells; the decoder outputs
``vol = std_cell * softplus(h)``, its last bias starting at ``inv_softplus(mean_cell / std_cell)`` (about 5 to
20, where softplus is nearly the identity), so the network works in standardised units, extrapolates almost
linearly, and every vol is still positive for any z (a positive multiple of a softplus, no shift); the loss
is the per-cell standardised error ``(vol_hat - vol) / std_cell``. The encoder's mean has a linear path
beside its MLP (``mu = to_mu(MLP(u)) + skip_mu(u)``) so that surfaces a little outside the training range
(a skew the training period never saw) map to latents that the decoder extrapolates smoothly.

The dense decoder is exactly ``nn.Sequential(Linear, SiLU, Linear, SiLU, Linear, Softplus)`` on
``[z, (y - y_mean) / y_std]`` followed by the per-output scale, the shape
:func:`volfast.kernels.mlp_decoder.fused_mlp_decoder` fuses (its ``out_scale``).
"""

from __future__ import annotations

import abc
import dataclasses
import os
import warnings

import torch
from torch import nn

from volfast.models._norm import CondNorm, GridNorm, inv_softplus

__all__ = ["CVAE", "CVAEConfig", "ConvCVAE", "triton_decoder_available"]


@dataclasses.dataclass(frozen=True)
class CVAEConfig:
    latent: int = 4  # latent dimensions
    hidden: int = 48  # width of the Linear + SiLU layers
    layers: int = 2  # hidden layers in the encoder and (mirrored) in the decoder
    alpha: float = 1e-5  # weight of the KL term (per-sample KL sum vs per-cell MSE)
    beta: float = 0.01  # weight of the latent-correlation penalty
    skip: bool = True  # linear path from the standardised input to mu beside the encoder MLP
    conv_channels: tuple[int, int] = (16, 32)  # conv variant only: Conv2d kernel (2, 3) channels
    shape: tuple[int, int] = (3, 11)  # (expiries, log-strikes), set from the data

    def __post_init__(self) -> None:
        if self.latent < 1 or self.hidden < 1 or self.layers < 1:
            raise ValueError("CVAEConfig: latent, hidden and layers must be >= 1")


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
    """What the dense and conv CVAEs share: normalisation, the linear encoder path, forward()."""

    config: CVAEConfig
    skip_mu: nn.Linear | None
    to_mu: nn.Linear

    def _init_common(self, config: CVAEConfig) -> None:
        self.config = config
        self.n_out = config.shape[0] * config.shape[1]
        self.norm = GridNorm(config.shape, per_cell_loss=True)
        self.cond = CondNorm(config.shape[0])

    def _skip(self, n_in: int) -> None:
        self.skip_mu = nn.Linear(n_in, self.config.latent) if self.config.skip else None

    def _mu(self, h: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
        mu: torch.Tensor = self.to_mu(h)
        skip = self.skip_mu
        return mu + skip(u) if isinstance(skip, nn.Linear) else mu

    def _std_input(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """[standardised cells, standardised year fractions] (B, 33 + 3): the linear path's input."""
        return torch.cat([self.norm.normalise(x).reshape(x.shape[0], -1), self.cond(y)], dim=1)

    def _out_bias(self) -> torch.Tensor:
        """Pre-softplus bias giving the training mean: softplus(b) * std = mean."""
        return inv_softplus((self.norm.mean / self.norm.scale).clamp_min(1e-3))

    def forward(
        self, x: torch.Tensor, y: torch.Tensor, *, sample: bool = True
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Returns (x_hat, mu, logvar); ``sample=False`` decodes mu (evaluation)."""
        mu, logvar = self.encode(x, y)
        z = mu + torch.randn_like(mu) * (0.5 * logvar).exp() if sample else mu
        return self.decode(z, y), mu, logvar

    @abc.abstractmethod
    def encode(self, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """x (B, 3, 11) vols, y (B, 3) year fractions -> mu, logvar (B, L)."""

    @abc.abstractmethod
    def decode(self, z: torch.Tensor, y: torch.Tensor, backend: str | None = None) -> torch.Tensor:
        """z (B, L), y (B, 3) -> vols (B, 3, 11)."""


class CVAE(_CVAEBase):
    """Dense CVAE: encoder u = [x_norm (33), y_norm (3)] -> Linear+SiLU x layers -> mu (+ linear path from
    u), logvar (latent); decoder [z, y_norm] -> Linear+SiLU x layers -> Linear -> Softplus, times the
    per-cell training std = vols (3, 11)."""

    def __init__(self, config: CVAEConfig) -> None:
        super().__init__()
        self._init_common(config)
        c = config
        n_y = c.shape[0]
        self.encoder = nn.Sequential(*_mlp(self.n_out + n_y, c.hidden, c.layers))
        self.to_mu = nn.Linear(c.hidden, c.latent)
        self.to_logvar = nn.Linear(c.hidden, c.latent)
        self.decoder = nn.Sequential(
            *_mlp(c.latent + n_y, c.hidden, c.layers), nn.Linear(c.hidden, self.n_out), nn.Softplus()
        )
        self._skip(self.n_out + n_y)

    @torch.no_grad()
    def fit_stats(self, x: torch.Tensor, y: torch.Tensor) -> None:
        """Learned statistics from the fitting days ``x`` (N, 3, 11), ``y`` (N, 3); the decoder starts at
        their mean surface."""
        self.norm.fit(x)
        self.cond.fit(y)
        last = self.decoder[-2]
        assert isinstance(last, nn.Linear)
        last.bias.copy_(self._out_bias().reshape(-1))

    def encode(self, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """x (B, 3, 11) vols, y (B, 3) year fractions -> mu, logvar (B, L)."""
        u = self._std_input(x, y)
        h = self.encoder(u)
        return self._mu(h, u), self.to_logvar(h)

    def decode(self, z: torch.Tensor, y: torch.Tensor, backend: str | None = None) -> torch.Tensor:
        """z (B, L), y (B, 3) year fractions -> vols (B, 3, 11), > 0.

        ``backend``: None picks the fused Triton kernel for CUDA tensors when it is importable, torch
        otherwise; "torch" or "triton" force one ("triton" raises if it cannot run here).
        """
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
                out = fused_mlp_decoder(
                    zy,
                    layers_from_module(self.decoder),
                    hidden_activation="silu",
                    output_activation="softplus",
                    out_scale=self.norm.scale.reshape(-1),
                )
            except ValueError as exc:  # DecoderTooLarge: more weights than a block's shared memory
                if backend == "triton" or type(exc).__name__ != "DecoderTooLarge":
                    raise
                _warn_torch_decoder(str(exc))
                use_triton = False
        if not use_triton:
            out = self.decoder(zy) * self.norm.scale.reshape(-1)
        return out.reshape(z.shape[0], *self.config.shape)


class ConvCVAE(_CVAEBase):
    """Conv CVAE: Conv2d kernel (2, 3) twice on the (1, 3, 11) grid -> (C2, 1, 7), flattened and joined with
    y_norm -> Linear+SiLU -> mu, logvar; decoder [z, y_norm] -> Linear+SiLU -> (C2, 1, 7) ->
    ConvTranspose2d (2, 3) twice -> plus a per-cell bias -> softplus, times the per-cell training std =
    vols (3, 11). The encoder's mu has the same linear path as the dense CVAE's."""

    def __init__(self, config: CVAEConfig) -> None:
        super().__init__()
        self._init_common(config)
        c = config
        c1, c2 = c.conv_channels
        h, w = c.shape
        if h < 3 or w < 5:
            raise ValueError(f"ConvCVAE needs a grid of at least 3 x 5, got {c.shape}")
        self.bottom = (c2, h - 2, w - 4)
        n_flat = c2 * (h - 2) * (w - 4)
        n_y = h
        self.conv = nn.Sequential(
            nn.Conv2d(1, c1, (2, 3)), nn.SiLU(), nn.Conv2d(c1, c2, (2, 3)), nn.SiLU(), nn.Flatten()
        )
        self.encoder = nn.Sequential(*_mlp(n_flat + n_y, c.hidden, c.layers))
        self.to_mu = nn.Linear(c.hidden, c.latent)
        self.to_logvar = nn.Linear(c.hidden, c.latent)
        self.from_z = nn.Sequential(
            *_mlp(c.latent + n_y, c.hidden, c.layers), nn.Linear(c.hidden, n_flat), nn.SiLU()
        )
        self.deconv = nn.Sequential(
            nn.ConvTranspose2d(c2, c1, (2, 3)), nn.SiLU(), nn.ConvTranspose2d(c1, 1, (2, 3))
        )
        self.out_bias = nn.Parameter(torch.zeros(h, w))
        self._skip(self.n_out + n_y)

    @torch.no_grad()
    def fit_stats(self, x: torch.Tensor, y: torch.Tensor) -> None:
        self.norm.fit(x)
        self.cond.fit(y)
        self.out_bias.copy_(self._out_bias())

    def encode(self, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h = self.conv(self.norm.normalise(x).unsqueeze(1))
        h = self.encoder(torch.cat([h, self.cond(y)], dim=1))
        return self._mu(h, self._std_input(x, y)), self.to_logvar(h)

    def decode(self, z: torch.Tensor, y: torch.Tensor, backend: str | None = None) -> torch.Tensor:
        if backend not in (None, "torch"):
            raise ValueError(f"the conv CVAE decodes with torch only; got backend={backend!r}")
        h = self.from_z(torch.cat([z, self.cond(y)], dim=1)).reshape(z.shape[0], *self.bottom)
        return nn.functional.softplus(self.deconv(h).squeeze(1) + self.out_bias) * self.norm.scale
