"""Random quote domains shared by the implied-vol tests (the issue's accuracy domain)."""

from __future__ import annotations

import numpy as np


def accuracy_domain(n: int, seed: int) -> dict[str, np.ndarray]:
    """Vols 1e-3..5, expiries one hour..30 years, ln(K/F) in [-5, 3] * sqrt(T), calls and puts."""
    rng = np.random.default_rng(seed)
    vol = np.exp(rng.uniform(np.log(1e-3), np.log(5.0), n))
    T = np.exp(rng.uniform(np.log(1.0 / 8760.0), np.log(30.0), n))
    z = rng.uniform(-5.0, 3.0, n)
    F = np.exp(rng.uniform(np.log(10.0), np.log(10000.0), n))
    K = F * np.exp(z * np.sqrt(T))
    D = np.exp(-rng.uniform(-0.01, 0.08, n) * T)
    is_call = rng.random(n) < 0.5
    return {
        "forward": F,
        "strike": K,
        "expiry_years": T,
        "vol": vol,
        "is_call": is_call,
        "discount_factor": D,
    }


def floor(vol: np.ndarray, price: np.ndarray, vega: np.ndarray) -> np.ndarray:
    """Attainable accuracy of an implied vol: the vol's own ulp plus the vol change of one price ulp."""
    with np.errstate(all="ignore"):
        return 2.0**-52 * (vol + price / vega)
