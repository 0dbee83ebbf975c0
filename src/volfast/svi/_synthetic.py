"""SPX-like synthetic SVI slices with known truth (SSVI surfaces), for tests and benchmarks."""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray

from volfast.svi.core import ssvi_to_raw, total_variance


def spx_like_slices(
    n_surfaces: int,
    *,
    seed: int = 0,
    expiries: tuple[float, ...] = (14 / 365, 30 / 365, 60 / 365, 91 / 365, 182 / 365, 1.0),
    noise_vol: float = 0.006,
    strikes: tuple[int, int] = (25, 60),
) -> dict[str, NDArray]:
    """``n_surfaces`` SSVI surfaces (one rho, power-law phi) sampled at 25-60 strikes per expiry.

    Returns flat arrays ``k``, ``w`` (noisy mid total variance), ``bid``/``ask`` (total variance at
    mid vol -+ half a spread of 1-3 vol points), ``w_true``, ``offsets`` (CSR), ``expiry_years``,
    ``surface_id`` and ``true_params`` (n_slices, 5) raw SVI. Noise: normal in vol with sd ``noise_vol``
    (0.006 = 0.6 vol points), rounded to a 0.05 vol-point tick.
    """
    rng = np.random.default_rng(seed)
    ks, ws, bids, asks, wtrue, counts, T_all, sid, truth = [], [], [], [], [], [], [], [], []
    for s in range(n_surfaces):
        v0 = rng.uniform(0.12, 0.30)
        vinf = rng.uniform(0.16, 0.26)
        rho = rng.uniform(-0.9, -0.5)
        eta = min(rng.uniform(1.0, 2.0), 1.95 / (1 + abs(rho)))
        gamma = rng.uniform(0.3, 0.5)
        for T in expiries:
            theta = vinf**2 * T + (v0**2 - vinf**2) * 0.5 * -np.expm1(-T / 0.5)
            phi = eta / (theta**gamma * (1 + theta) ** (1 - gamma))
            p = ssvi_to_raw(theta=theta, phi=phi, rho=rho)
            n = int(rng.integers(strikes[0], strikes[1] + 1))
            sd = np.sqrt(theta)
            k = np.sort(rng.uniform(-4.0 * sd, 1.8 * sd, n))
            wt = total_variance(k, p)
            vol = np.sqrt(wt / T)
            volm = np.round((vol + noise_vol * rng.standard_normal(n)) / 0.0005) * 0.0005
            volm = np.maximum(volm, 0.01)
            half = 0.5 * rng.uniform(0.01, 0.03, n)
            ks.append(k)
            ws.append(volm**2 * T)
            bids.append(np.maximum(volm - half, 0.0) ** 2 * T)
            asks.append((volm + half) ** 2 * T)
            wtrue.append(wt)
            counts.append(n)
            T_all.append(T)
            sid.append(s)
            truth.append(p)
    return {
        "k": np.concatenate(ks),
        "w": np.concatenate(ws),
        "bid": np.concatenate(bids),
        "ask": np.concatenate(asks),
        "w_true": np.concatenate(wtrue),
        "offsets": np.concatenate([[0], np.cumsum(counts)]).astype(np.int64),
        "expiry_years": np.array(T_all),
        "surface_id": np.array(sid),
        "true_params": np.array(truth),
    }
