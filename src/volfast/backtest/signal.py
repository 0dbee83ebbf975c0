"""The rich/cheap signal: residual = observed CVAE-grid vol - CVAE reconstruction at each node, z-scored
against that node's past residuals only (expanding window), with the CVAE refitted walk-forward.

Walk-forward: the usable days (complete 3x11 grid) are numbered 0..M-1. The first fit is on days
``[0, first_train)`` and reconstructs those same days: the in-sample period (the model has seen them).
Fit ``k >= 1`` is trained on days ``[0, first_train + (k-1) * retrain_every)`` and reconstructs the next
``retrain_every`` days: out of sample. A day's z-score uses only residuals of earlier days, each as it was
computed on its own day, so nothing after a decision can move it.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from typing import Any

import numpy as np
import pandas as pd

from volfast.backtest.config import BacktestConfig, BacktestError

__all__ = ["Reconstructor", "SignalResult", "cvae_fitter", "expanding_zscores", "half_life", "walk_forward"]

#: (dataset, boolean mask of training rows) -> function mapping rows (index array) to (R, H, W) vols
Reconstructor = Callable[[Any, np.ndarray], Callable[[np.ndarray], np.ndarray]]


@dataclasses.dataclass
class SignalResult:
    dates: np.ndarray  # (M,) datetime64[D], usable days
    observed: np.ndarray  # (M, H, W) vols
    recon: np.ndarray  # (M, H, W) reconstruction by the fit in force that day
    residual: np.ndarray  # (M, H, W) observed - recon
    z: np.ndarray  # (M, H, W) expanding z-score (NaN before min_history past days)
    fit_index: np.ndarray  # (M,) which fit reconstructed the day (0: in-sample fit)
    in_sample: np.ndarray  # (M,) bool
    expiry_years: np.ndarray  # (M, H) the grid rows' expiries
    log_strikes: np.ndarray  # (W,) the grid columns' ln(K/F)
    half_life: np.ndarray  # (M,) residual half-life (days) measured on days <= t
    fits: list[dict[str, Any]]  # per fit: train_days, train_end, first/last day reconstructed

    def decisions(self, cfg: BacktestConfig) -> pd.DataFrame:
        """One row per day whose most extreme |z| reaches ``cfg.threshold``: date, node (i, j), z, side
        (+1 buy the cheap node, -1 sell the rich one), the node's expiry_years / log_moneyness and the
        holding period (``cfg.hold_days`` or twice the half-life measured up to that day)."""
        rows = []
        m, h, w = self.z.shape
        for t in range(m):
            zt = self.z[t]
            if not np.isfinite(zt).any():
                continue
            flat = int(np.nanargmax(np.abs(zt)))
            i, j = divmod(flat, w)
            z = float(zt[i, j])
            if abs(z) < cfg.threshold:
                continue
            rows.append(
                {
                    "date": pd.Timestamp(self.dates[t]).date(),
                    "i": i,
                    "j": j,
                    "z": z,
                    "side": -1 if z > 0 else 1,
                    "expiry_years": float(self.expiry_years[t, i]),
                    "log_moneyness": float(self.log_strikes[j]),
                    "hold_days": hold_days(cfg, float(self.half_life[t])),
                    "in_sample": bool(self.in_sample[t]),
                }
            )
        cols = ["date", "i", "j", "z", "side", "expiry_years", "log_moneyness", "hold_days", "in_sample"]
        return pd.DataFrame(rows, columns=cols)


def hold_days(cfg: BacktestConfig, half: float) -> int:
    """``cfg.hold_days``, or ``ceil(2 * half-life)`` clipped to ``[1, cfg.max_hold_days]``."""
    if cfg.hold_days > 0:
        return cfg.hold_days
    if not math.isfinite(half):
        return cfg.max_hold_days
    return int(min(max(math.ceil(2.0 * half), 1), cfg.max_hold_days))


def expanding_zscores(residual: np.ndarray, min_history: int) -> np.ndarray:
    """z[t] = (r[t] - mean(r[:t])) / std(r[:t], ddof=1) per node; NaN while fewer than ``min_history``
    past values (or zero dispersion). Only rows before t enter row t's statistics."""
    r = np.asarray(residual, dtype=np.float64)
    m = r.shape[0]
    z = np.full_like(r, np.nan)
    for t in range(min_history, m):
        past = r[:t]
        sd = past.std(axis=0, ddof=1)
        with np.errstate(invalid="ignore", divide="ignore"):
            z[t] = np.where(sd > 0, (r[t] - past.mean(axis=0)) / sd, np.nan)
    return z


def half_life(residual: np.ndarray) -> float:
    """Half-life (days) of a pooled AR(1) fitted to the residuals (rows: days, each node demeaned):
    ``ln 0.5 / ln phi``; 0.5 when phi <= 0 (no persistence), inf when phi >= 1 or too few days."""
    r = np.asarray(residual, dtype=np.float64).reshape(residual.shape[0], -1)
    if r.shape[0] < 3:
        return math.inf
    x = r - r.mean(axis=0)
    den = float((x[:-1] ** 2).sum())
    if den <= 0:
        return math.inf
    phi = float((x[1:] * x[:-1]).sum()) / den
    if phi <= 0:
        return 0.5
    if phi >= 1:
        return math.inf
    return math.log(0.5) / math.log(phi)


def cvae_fitter(mcfg: Any, tcfg: Any, kind: str = "cvae") -> Reconstructor:
    """A :data:`Reconstructor` that trains a (dense by default) CVAE with ``volfast.models.train_surface``
    on the training rows (the last ``tcfg.val_fraction`` of them are its early-stopping slice)."""

    def fit(ds: Any, train: np.ndarray) -> Callable[[np.ndarray], np.ndarray]:
        import torch

        from volfast.models.train import train_surface

        rows = np.flatnonzero(train)
        n_val = max(1, int(round(rows.size * tcfg.val_fraction)))
        if rows.size - n_val < 2:
            raise BacktestError(f"{rows.size} training days are too few to fit the CVAE (need 3 or more)")
        tr, va = rows[:-n_val], rows[-n_val:]
        # the SSVI decoder needs the grid's log-strikes as well as its shape
        k = tuple(float(v) for v in ds.config.cvae_k)
        cfg = dataclasses.replace(mcfg, shape=tuple(ds.cvae.shape[1:]), k=k)
        before = torch.get_num_threads()
        if tcfg.threads > 0:
            torch.set_num_threads(tcfg.threads)
        try:
            model, _ = train_surface(kind, ds, cfg, tcfg, tr, va)
        finally:
            torch.set_num_threads(before)  # no global side effect outlives the fit
        return model_reconstructor(kind, model, ds)

    return fit


def model_reconstructor(kind: str, model: Any, ds: Any) -> Callable[[np.ndarray], np.ndarray]:
    """Rows of ``ds`` -> the model's reconstruction (latent mean decoded), float64 (R, H, W)."""
    import torch

    from volfast.models.train import reconstruct

    dev = next(iter(model.buffers())).device

    def recon(rows: np.ndarray) -> np.ndarray:
        x = torch.as_tensor(ds.cvae[rows], dtype=torch.float32, device=dev)
        y = torch.as_tensor(ds.cvae_expiry_years[rows], dtype=torch.float32, device=dev)
        with torch.no_grad():
            out = reconstruct(kind, model, x, y)
        return np.asarray(out.cpu().double().numpy())

    return recon


def walk_forward(ds: Any, cfg: BacktestConfig, fitter: Reconstructor) -> SignalResult:
    """Residuals, z-scores and half-lives over the complete-grid days of ``ds`` (a SurfaceDataset), the
    reconstructor refitted every ``cfg.retrain_every`` days on earlier days only (module docstring)."""
    ok = ds.complete("cvae")
    ds = ds.subset(ok)
    m = len(ds)
    first = cfg.first_train
    if m <= first:
        raise BacktestError(
            f"{ds.source}: {m} days with a complete CVAE grid; the walk-forward needs more than "
            f"initial_train={first} (set backtest.initial_train / backtest.retrain_every lower, or build "
            "more days with `volfast build`)"
        )
    recon = np.full(ds.cvae.shape, np.nan)
    fit_index = np.zeros(m, dtype=np.int64)
    fits: list[dict[str, Any]] = []
    starts = [0, *range(first, m, cfg.retrain_every)]
    for k, lo in enumerate(starts):
        train_end = first if k == 0 else lo
        hi = first if k == 0 else min(lo + cfg.retrain_every, m)
        train = np.zeros(m, dtype=bool)
        train[:train_end] = True
        rec = fitter(ds, train)
        rows = np.arange(lo, hi)
        recon[rows] = rec(rows)
        fit_index[rows] = k
        fits.append(
            {
                "fit": k,
                "train_days": int(train_end),
                "train_end": str(ds.dates[train_end - 1]),
                "from": str(ds.dates[lo]),
                "to": str(ds.dates[hi - 1]),
                "in_sample": k == 0,
            }
        )
    return _result(ds, recon, fit_index, fit_index == 0, fits, cfg)


def fixed_model(ds: Any, cfg: BacktestConfig, recon_fn: Callable[[np.ndarray], np.ndarray],
                in_sample: np.ndarray, fits: list[dict[str, Any]]) -> SignalResult:  # fmt: skip
    """Signal from one already-trained model (no retraining); ``in_sample`` marks the days it saw."""
    ok = ds.complete("cvae")
    ds = ds.subset(ok)
    rows = np.arange(len(ds))
    recon = recon_fn(rows) if rows.size else np.full(ds.cvae.shape, np.nan)
    return _result(ds, recon, np.zeros(len(ds), dtype=np.int64), np.asarray(in_sample)[ok], fits, cfg)


def _result(
    ds: Any,
    recon: np.ndarray,
    fit_index: np.ndarray,
    in_sample: np.ndarray,
    fits: list[dict[str, Any]],
    cfg: BacktestConfig,
) -> SignalResult:
    resid = ds.cvae - recon
    z = expanding_zscores(resid, cfg.min_history)
    hl = np.array([half_life(resid[: t + 1]) for t in range(len(ds))])
    return SignalResult(
        dates=ds.dates,
        observed=ds.cvae,
        recon=recon,
        residual=resid,
        z=z,
        fit_index=fit_index,
        in_sample=in_sample,
        expiry_years=ds.cvae_expiry_years,
        log_strikes=np.asarray(ds.config.cvae_k, dtype=np.float64),
        half_life=hl,
        fits=fits,
    )
