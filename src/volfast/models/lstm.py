"""Latent dynamics: an LSTM that predicts z(t+1) from a window of past latent means, and its baselines
(persistence, per-latent AR(1)). Multi-step rollouts feed predictions back in."""

from __future__ import annotations

import dataclasses

import numpy as np
import torch
from torch import nn

__all__ = ["AR1", "LSTMConfig", "LatentLSTM", "make_windows", "persistence"]


@dataclasses.dataclass(frozen=True)
class LSTMConfig:
    latent: int = 8  # latent dimensions (set from the encoder run)
    window: int = 20  # past days fed to the LSTM
    hidden: int = 32  # LSTM state size
    layers: int = 1  # stacked LSTM layers
    dropout: float = 0.0  # between stacked layers (needs layers > 1)
    max_gap_days: int = 5  # calendar-day gap that breaks a sequence (weekend + holiday pass)

    def __post_init__(self) -> None:
        if self.window < 1 or self.hidden < 1 or self.layers < 1 or self.latent < 1:
            raise ValueError("LSTMConfig: window, hidden, layers and latent must be >= 1")


class LatentLSTM(nn.Module):
    """z(t+1) = z(t) + std * head(LSTM((z(t-w+1..t) - mean) / std)): the network learns the change, so a
    zero head is persistence."""

    z_mean: torch.Tensor
    z_std: torch.Tensor

    def __init__(self, config: LSTMConfig) -> None:
        super().__init__()
        self.config = config
        c = config
        self.lstm = nn.LSTM(
            c.latent,
            c.hidden,
            num_layers=c.layers,
            batch_first=True,
            dropout=c.dropout if c.layers > 1 else 0.0,
        )
        self.head = nn.Linear(c.hidden, c.latent)
        nn.init.zeros_(self.head.weight)
        nn.init.zeros_(self.head.bias)
        self.register_buffer("z_mean", torch.zeros(c.latent))
        self.register_buffer("z_std", torch.ones(c.latent))

    @torch.no_grad()
    def fit_stats(self, z: torch.Tensor) -> None:
        """Latent standardisation from the training period's latents (N, L)."""
        self.z_mean.copy_(z.mean(dim=0))
        self.z_std.copy_(z.std(dim=0).clamp_min(1e-6))

    def forward(self, window: torch.Tensor) -> torch.Tensor:
        """(B, T, L) past latents -> (B, L) predicted next latent."""
        h, _ = self.lstm((window - self.z_mean) / self.z_std)  # (B, T, H)
        return window[:, -1] + self.z_std * self.head(h[:, -1])

    @torch.no_grad()
    def rollout(self, window: torch.Tensor, steps: int) -> torch.Tensor:
        """(B, T, L) -> (B, steps, L): multi-step forecast feeding each prediction back in."""
        w = window.clone()
        out = []
        for _ in range(steps):
            nxt = self(w)
            out.append(nxt)
            w = torch.cat([w[:, 1:], nxt[:, None]], dim=1)
        return torch.stack(out, dim=1)


def persistence(window: np.ndarray) -> np.ndarray:
    """Random-walk forecast: z(t+1) = z(t). (B, T, L) -> (B, L)."""
    return np.asarray(window)[:, -1].copy()


@dataclasses.dataclass
class AR1:
    """Per-latent AR(1) z_i(t+1) = c_i + phi_i z_i(t), fitted by least squares on training pairs."""

    c: np.ndarray
    phi: np.ndarray

    @classmethod
    def fit(cls, z_now: np.ndarray, z_next: np.ndarray) -> AR1:
        """``z_now``, ``z_next``: (N, L) consecutive training pairs."""
        x = np.asarray(z_now, dtype=np.float64)
        y = np.asarray(z_next, dtype=np.float64)
        if x.shape[0] < 3:
            raise ValueError(f"AR1.fit: {x.shape[0]} pairs; need at least 3")
        xm, ym = x.mean(axis=0), y.mean(axis=0)
        var = ((x - xm) ** 2).sum(axis=0)
        phi = np.where(var > 0, ((x - xm) * (y - ym)).sum(axis=0) / np.where(var > 0, var, 1.0), 1.0)
        return cls(c=ym - phi * xm, phi=phi)

    def predict(self, window: np.ndarray) -> np.ndarray:
        return self.c + self.phi * np.asarray(window)[:, -1]


def make_windows(z: np.ndarray, segment: np.ndarray, window: int) -> tuple[np.ndarray, np.ndarray]:
    """Windows of ``window`` consecutive rows and the row after, never crossing a segment boundary
    (:func:`volfast.models.data.sequence_breaks`). Returns (index of the target row (M,), windows
    (M, window, L)); targets are ``z[index]``."""
    idx = []
    for t in range(window, z.shape[0]):
        s = segment[t - window : t + 1]
        if s[0] >= 0 and (s == s[0]).all():
            idx.append(t)
    ix = np.asarray(idx, dtype=np.int64)
    if ix.size == 0:
        return ix, np.empty((0, window, z.shape[1]))
    win = np.stack([z[t - window : t] for t in ix])
    return ix, win
