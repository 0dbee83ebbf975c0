"""Latent "energy": how far a day's (predicted next) latent state lies from the training distribution,
and its alarm threshold, a quantile of the training period's energies (never the test period's).

Two alarms on that energy E_t (``[energy] alarm``):

- ``level``: E_t > the training ``quantile`` of E. After a regime shift (a crash lifts the vol level for
  months) the level stays above a calm-period quantile and the alarm stays on through the regime.
- ``change``: E_t - median(E over the previous ``window`` complete days) > the training ``quantile`` of
  that difference. The trailing median uses past days only, so the alarm fires on a jump in the energy and
  turns off once the new level is the norm (after about ``window`` / 2 days).
"""

from __future__ import annotations

import dataclasses

import numpy as np
import torch

from volfast.agent._config import AgentError
from volfast.agent.world import World

__all__ = ["EnergyConfig", "EnergySeries", "latent_energy", "trailing_change"]

MODES = ("mahalanobis-pred", "mahalanobis", "norm")
ALARMS = ("level", "change")


@dataclasses.dataclass(frozen=True)
class EnergyConfig:
    mode: str = "mahalanobis-pred"  # mahalanobis-pred: of the LSTM's predicted next latent | mahalanobis:
    #                                 of today's latent | norm: Euclidean norm of the standardised latent
    quantile: float = 0.9  # alarm threshold: this quantile of the training period's energies
    ridge: float = 1e-6  # added to the covariance diagonal (relative to its trace / L)
    alarm: str = "level"  # level: energy > threshold | change: energy - its trailing median > threshold
    #                       (the default was chosen by a walk-forward inside the training period: README)
    window: int = 20  # change alarm: complete days in the trailing median (at least window // 2 needed)

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise ValueError(f"EnergyConfig.mode must be one of {MODES}; got {self.mode!r}")
        if not 0.0 < self.quantile < 1.0:
            raise ValueError(f"EnergyConfig.quantile must be in (0, 1); got {self.quantile}")
        if self.alarm not in ALARMS:
            raise ValueError(f"EnergyConfig.alarm must be one of {ALARMS}; got {self.alarm!r}")
        if self.window < 2:
            raise ValueError(f"EnergyConfig.window must be >= 2 days; got {self.window}")


@dataclasses.dataclass
class EnergySeries:
    dates: np.ndarray  # (N,) datetime64[D], the dataset's days
    energy: np.ndarray  # (N,) what the alarm compares with the threshold (the raw energy for the level
    #                     alarm, its excess over the trailing median for the change alarm); NaN: no reading
    threshold: float
    train: np.ndarray  # (N,) days the threshold was calibrated on
    raw: np.ndarray | None = None  # (N,) the energy itself, NaN on incomplete days

    def alarm(self) -> np.ndarray:
        return np.asarray(np.nan_to_num(self.energy, nan=-np.inf) > self.threshold)


def mahalanobis(z: np.ndarray, mean: np.ndarray, cov: np.ndarray) -> np.ndarray:
    """sqrt((z - mean)^T cov^-1 (z - mean)) per row of z (N, L)."""
    d = np.asarray(z, dtype=np.float64) - mean
    sol = np.linalg.solve(cov, d.T).T
    return np.asarray(np.sqrt(np.maximum((d * sol).sum(axis=1), 0.0)))


def trailing_change(history: np.ndarray, paths: np.ndarray, window: int) -> np.ndarray:
    """Excess of each energy over the median of the ``window`` energies before it (the change alarm).

    Parameters
    ----------
    history : (H,) energies of the complete days before the first of ``paths`` (oldest first; only the
        last ``window`` are used).
    paths : (N, T) energies along N paths that all continue ``history``.
    window : trailing days in the median; a step with fewer than ``window // 2`` earlier values is NaN.

    Returns
    -------
    (N, T) ``paths[:, t]`` minus the median of the ``window`` values before it (history, then the path).
    """
    hist = np.asarray(history, dtype=np.float64)[-window:]
    p = np.atleast_2d(np.asarray(paths, dtype=np.float64))
    full = np.concatenate([np.broadcast_to(hist, (p.shape[0], hist.size)), p], axis=1)
    out = np.full(p.shape, np.nan)
    for t in range(p.shape[1]):
        j = hist.size + t
        prev = full[:, max(0, j - window) : j]
        if prev.shape[1] >= max(1, window // 2):
            out[:, t] = p[:, t] - np.median(prev, axis=1)
    return out


def energy_reference(
    world: World, cfg: EnergyConfig = EnergyConfig(), before: np.datetime64 | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Mean (L,) and ridged covariance (L, L) of the complete days before the test period (or before
    ``before``, an earlier day, for a walk-forward inside the training period)."""
    tr = world.train_mask() if before is None else world.train_mask() & (world.ds.dates < before)
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


def latent_energy(
    world: World, cfg: EnergyConfig = EnergyConfig(), before: np.datetime64 | None = None
) -> EnergySeries:
    """Energy of every complete day; the reference distribution (mean, covariance) and the threshold use
    only complete days before the encoder's test period (or before ``before``, an earlier day)."""
    tr = world.train_mask() if before is None else world.train_mask() & (world.ds.dates < before)
    mean, cov = energy_reference(world, cfg, before)
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
    score = energy.copy()
    if cfg.alarm == "change":  # trailing over complete days only, past values only
        score[ok] = trailing_change(np.empty(0), energy[ok][None], cfg.window)[0]
    cal = tr & np.isfinite(score)
    if cal.sum() < 3:
        raise AgentError(
            f"{int(cal.sum())} training days with a {cfg.alarm} energy reading; need at least 3 to calibrate "
            f"the alarm (the change alarm needs {cfg.window // 2} earlier complete days per reading)"
        )
    thr = float(np.quantile(score[cal], cfg.quantile))
    return EnergySeries(dates=world.ds.dates, energy=score, threshold=thr, train=cal, raw=energy)
