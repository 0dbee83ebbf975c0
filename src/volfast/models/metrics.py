"""Out-of-sample metrics: RMSE in vol points (overall, ATM, wings), SSIM (torch), latent statistics,
and a moving-block bootstrap for forecast improvements."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

__all__ = ["block_bootstrap_ci", "latent_stats", "rmse_ci", "rmse_ratio_ci", "rmse_table", "ssim"]


def ssim(
    x: torch.Tensor,
    y: torch.Tensor,
    *,
    data_range: float | torch.Tensor,
    win_size: int = 7,
    k1: float = 0.01,
    k2: float = 0.03,
) -> torch.Tensor:
    """Structural similarity of images ``x`` and ``y`` (..., H, W), one value per image.

    Same definition as ``skimage.metrics.structural_similarity`` with its defaults (uniform ``win_size``
    window, sample covariance, mean over the window-valid interior): Wang et al. (2004).
    ``data_range``: scalar or per-image tensor (broadcast against the leading dims), in the images' units.
    """
    if x.shape != y.shape:
        raise ValueError(f"ssim: shapes differ {tuple(x.shape)} vs {tuple(y.shape)}")
    h, w = x.shape[-2:]
    if win_size % 2 == 0 or win_size > min(h, w):
        raise ValueError(f"ssim: win_size must be odd and at most min(H, W) = {min(h, w)}; got {win_size}")
    lead = x.shape[:-2]
    xx = x.reshape(-1, 1, h, w).to(torch.float64)
    yy = y.reshape(-1, 1, h, w).to(torch.float64)
    kern = torch.full((1, 1, win_size, win_size), 1.0 / win_size**2, dtype=torch.float64, device=x.device)

    def filt(a: torch.Tensor) -> torch.Tensor:
        return F.conv2d(a, kern)  # valid: (B, 1, H - win + 1, W - win + 1)

    npix = win_size * win_size
    cov_norm = npix / (npix - 1)
    ux, uy = filt(xx), filt(yy)
    vx = cov_norm * (filt(xx * xx) - ux * ux)
    vy = cov_norm * (filt(yy * yy) - uy * uy)
    vxy = cov_norm * (filt(xx * yy) - ux * uy)
    r = torch.as_tensor(data_range, dtype=torch.float64, device=x.device).reshape(-1, 1, 1, 1)
    c1, c2 = (k1 * r) ** 2, (k2 * r) ** 2
    s = ((2 * ux * uy + c1) * (2 * vxy + c2)) / ((ux * ux + uy * uy + c1) * (vx + vy + c2))
    return s.mean(dim=(1, 2, 3)).reshape(lead)


def rmse_table(pred: np.ndarray, true: np.ndarray, k: np.ndarray, *, wing_k: float = 0.2) -> dict[str, float]:
    """RMSE in vol points (100 x vol) of ``pred`` vs ``true`` (N, rows, len(k)): overall, ATM (the column
    nearest k = 0) and wings (columns with |k| >= ``wing_k``); also MSE in vol^2 and the worst cell."""
    err = (np.asarray(pred, dtype=np.float64) - np.asarray(true, dtype=np.float64)) * 100.0
    atm = int(np.argmin(np.abs(k)))
    wings = np.abs(k) >= wing_k
    out = {
        "rmse": float(np.sqrt(np.mean(err**2))),
        "rmse_atm": float(np.sqrt(np.mean(err[..., atm] ** 2))),
        "rmse_wings": float(np.sqrt(np.mean(err[..., wings] ** 2))) if wings.any() else float("nan"),
        "mse": float(np.mean((err / 100.0) ** 2)),
        "max_abs": float(np.max(np.abs(err))),
    }
    return out


def latent_stats(mu: np.ndarray, logvar: np.ndarray | None = None) -> dict[str, Any]:
    """Correlation matrix of the latent means (N, L), their std, and (with ``logvar``) KL per dim (nats)."""
    mu = np.asarray(mu, dtype=np.float64)
    out: dict[str, Any] = {"std": mu.std(axis=0).tolist()}
    out["corr"] = np.corrcoef(mu, rowvar=False).tolist() if mu.shape[1] > 1 else [[1.0]]
    c = np.asarray(out["corr"])
    off = c[~np.eye(c.shape[0], dtype=bool)]
    out["mean_abs_offdiag_corr"] = float(np.mean(np.abs(off))) if off.size else 0.0
    if logvar is not None:
        lv = np.asarray(logvar, dtype=np.float64)
        out["kl_per_dim"] = (0.5 * (mu**2 + np.exp(lv) - 1.0 - lv)).mean(axis=0).tolist()
    return out


def block_bootstrap_ci(
    diff: np.ndarray, *, block: int = 10, reps: int = 2000, level: float = 0.95, seed: int = 0
) -> tuple[float, float, float]:
    """Mean of ``diff`` (per-day loss differences, in time order) and a moving-block bootstrap percentile
    confidence interval (blocks keep the serial correlation of daily errors). Returns (mean, lo, hi)."""
    d = np.asarray(diff, dtype=np.float64)
    n = d.size
    if n == 0:
        raise ValueError("block_bootstrap_ci: no observations")
    b = max(1, min(block, n))
    n_blocks = int(np.ceil(n / b))
    rng = np.random.default_rng(seed)
    starts = rng.integers(0, n - b + 1, size=(reps, n_blocks))
    idx = (starts[:, :, None] + np.arange(b)[None, None, :]).reshape(reps, -1)[:, :n]
    means = d[idx].mean(axis=1)
    a = (1 - level) / 2
    return float(d.mean()), float(np.quantile(means, a)), float(np.quantile(means, 1 - a))


def _block_index(n: int, *, block: int, reps: int, seed: int) -> np.ndarray:
    b = max(1, min(block, n))
    n_blocks = int(np.ceil(n / b))
    rng = np.random.default_rng(seed)
    starts = rng.integers(0, n - b + 1, size=(reps, n_blocks))
    return (starts[:, :, None] + np.arange(b)[None, None, :]).reshape(reps, -1)[:, :n]


def rmse_ci(
    day_mse: np.ndarray, *, block: int = 10, reps: int = 2000, level: float = 0.95, seed: int = 0
) -> tuple[float, float, float]:
    """RMSE in vol points from per-day MSEs in vol^2 (time order), with a moving-block bootstrap percentile
    interval over days. Returns (rmse, lo, hi)."""
    d = np.asarray(day_mse, dtype=np.float64)
    if d.size == 0:
        raise ValueError("rmse_ci: no days")
    idx = _block_index(d.size, block=block, reps=reps, seed=seed)
    boot = np.sqrt(d[idx].mean(axis=1)) * 100.0
    a = (1 - level) / 2
    return float(np.sqrt(d.mean()) * 100.0), float(np.quantile(boot, a)), float(np.quantile(boot, 1 - a))


def rmse_ratio_ci(
    day_mse_a: np.ndarray,
    day_mse_b: np.ndarray,
    *,
    block: int = 10,
    reps: int = 2000,
    level: float = 0.95,
    seed: int = 0,
) -> tuple[float, float, float]:
    """RMSE(a) / RMSE(b) over the same days (paired), with a moving-block bootstrap interval."""
    a_, b_ = np.asarray(day_mse_a, dtype=np.float64), np.asarray(day_mse_b, dtype=np.float64)
    if a_.shape != b_.shape or a_.size == 0:
        raise ValueError("rmse_ratio_ci: need two equal-length, non-empty per-day series")
    idx = _block_index(a_.size, block=block, reps=reps, seed=seed)
    boot = np.sqrt(a_[idx].mean(axis=1) / np.maximum(b_[idx].mean(axis=1), 1e-300))
    q = (1 - level) / 2
    ratio = float(np.sqrt(a_.mean() / max(b_.mean(), 1e-300)))
    return ratio, float(np.quantile(boot, q)), float(np.quantile(boot, 1 - q))
