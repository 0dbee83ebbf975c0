"""Latent "energy": how far a day's (predicted next) latent state lies from the training distribution,
and its alarm threshold, a quantile of the training period's energies (never the test period's)."""

from __future__ import annotations

import dataclasses

import numpy as np
import torch

from volfast.agent._config import AgentError
from volfast.agent.world import World

__all__ = ["EnergyConfig", "EnergySeries", "latent_energy"]

MODES = ("mahalanobis-pred", "mahalanobis", "norm")


@dataclasses.dataclass(frozen=True)
class EnergyConfig:
    mode: str = "mahalanobis-pred"  # mahalanobis-pred: of the LSTM's predicted next latent | mahalanobis:
    #                                 of today's latent | norm: Euclidean norm of the standardised latent
    quantile: float = 0.9  # alarm threshold: this quantile of the training period's energies
    ridge: float = 1e-6  # added to the covariance diagonal (relative to its trace / L)

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise ValueError(f"EnergyConfig.mode must be one of {MODES}; got {self.mode!r}")
        if not 0.0 < self.quantile < 1.0:
            raise ValueError(f"EnergyConfig.quantile must be in (0, 1); got {self.quantile}")


@dataclasses.dataclass
class EnergySeries:
    dates: np.ndarray  # (N,) datetime64[D], the dataset's days
    energy: np.ndarray  # (N,), NaN on incomplete days
    threshold: float
    train: np.ndarray  # (N,) days the threshold was calibrated on

    def alarm(self) -> np.ndarray:
        return np.asarray(np.nan_to_num(self.energy, nan=-np.inf) > self.threshold)


def mahalanobis(z: np.ndarray, mean: np.ndarray, cov: np.ndarray) -> np.ndarray:
    """sqrt((z - mean)^T cov^-1 (z - mean)) per row of z (N, L)."""
    d = np.asarray(z, dtype=np.float64) - mean
    sol = np.linalg.solve(cov, d.T).T
    return np.asarray(np.sqrt(np.maximum((d * sol).sum(axis=1), 0.0)))


def energy_reference(world: World, cfg: EnergyConfig = EnergyConfig()) -> tuple[np.ndarray, np.ndarray]:
    """Mean (L,) and ridged covariance (L, L) of the complete days before the test period."""
    tr = world.train_mask()
    if tr.sum() < 3:
        raise AgentError(f"{int(tr.sum())} complete training days; need at least 3 to calibrate the energy")
    ztr = world.z[tr]
    mean = ztr.mean(axis=0)
    cov = np.atleast_2d(np.cov(ztr, rowvar=False))
    cov = cov + np.eye(cov.shape[0]) * cfg.ridge * max(float(np.trace(cov)) / cov.shape[0], 1e-12)
    return mean, cov


def energy_of(z: np.ndarray, mean: np.ndarray, cov: np.ndarray, mode: str) -> np.ndarray:
    """Energy of latents ``z`` (N, L) (for ``mahalanobis-pred``: the LSTM's predicted next latents)."""
    if mode == "norm":
        return np.asarray(np.linalg.norm((z - mean) / np.sqrt(np.diag(cov)), axis=1))
    return mahalanobis(z, mean, cov)


def latent_energy(world: World, cfg: EnergyConfig = EnergyConfig()) -> EnergySeries:
    """Energy of every complete day; the reference distribution (mean, covariance) and the threshold use
    only complete days before the encoder's test period."""
    tr = world.train_mask()
    mean, cov = energy_reference(world, cfg)
    n = len(world.ds)
    z = world.z.copy()
    if cfg.mode == "mahalanobis-pred":
        seg = world.segments()
        pred = np.full_like(z, np.nan)
        w = world.lstm.config.window
        rows = np.flatnonzero(world.ok)
        wins = []
        for r in rows:  # windows may be shorter than the LSTM's at a segment start
            lo = r
            while lo - 1 >= 0 and seg[lo - 1] == seg[r] and r - lo + 1 < w:
                lo -= 1
            wins.append(z[lo : r + 1])
        with torch.no_grad():
            for r, win in zip(rows, wins, strict=True):
                t = torch.as_tensor(win[None], dtype=torch.float32, device=world.device)
                pred[r] = world.lstm(t)[0].double().cpu().numpy()
        z = pred
    energy = np.full(n, np.nan)
    ok = world.ok
    energy[ok] = energy_of(z[ok], mean, cov, cfg.mode)
    thr = float(np.quantile(energy[tr], cfg.quantile))
    return EnergySeries(dates=world.ds.dates, energy=energy, threshold=thr, train=tr)
