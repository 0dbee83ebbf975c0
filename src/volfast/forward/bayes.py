"""Bayesian forward and discount factor per expiry: a Gibbs sampler (Numba), deterministic from a seed.

Model for the near-the-money call/put pairs of one expiry (``y_i = mid(C_i) - mid(P_i)``, ``h_i`` half the
synthetic bid/ask spread ``ask(C) - bid(P) - (bid(C) - ask(P))``)::

    y_i = D (F - K_i) + e_i,   e_i ~ Student-t(nu, scale tau h_i)
    tau^2 ~ InvGamma(1/2, tau0^2 / 2);  (D F, D) flat, D > 0;  or D ~ N(D_pool, se_pool) when the expiry
    takes its discount factor from the pooled curve, or D fixed when given

The bid/ask interval enters the likelihood through each quote's scale ``tau h_i`` (a quote's error is
measured in its own spread), and the t error (a scale mixture of normals, ``lam_i ~ Gamma(nu/2, nu/2)``)
makes the fit robust to stale or wrong quotes, as the Huber loss does. Gibbs steps: ``lam | rest``,
``(D F, D) | rest`` (bivariate normal), ``tau^2 | rest``. ``forward`` and ``discount_factor`` are posterior
medians; ``forward_lo/hi`` and ``discount_lo/hi`` the central ``credible`` interval.

Slice ``i`` is seeded from ``(seed, i)`` only, so results are reproducible and independent of threads.
"""

from __future__ import annotations

import numpy as np

from volfast.forward import _numba as _nb

__all__ = ["slice_seeds"]


def slice_seeds(seed: int, n_slices: int) -> np.ndarray:
    """Per-slice sampler seeds (uint32 range) derived from ``numpy.random.SeedSequence(seed)``."""
    ss = np.random.SeedSequence(int(seed))
    return ss.generate_state(max(n_slices, 1), dtype=np.uint32)[:n_slices].astype(np.int64)


def _bayes_slices(
    strike: np.ndarray,
    is_call: np.ndarray,
    bid: np.ndarray,
    ask: np.ndarray,
    offsets: np.ndarray,
    prior_mean: np.ndarray,
    prior_sd: np.ndarray,
    *,
    window: float,
    min_pairs: int,
    nu: float,
    n_iter: int,
    burn: int,
    seed: int,
    credible: float,
    tau0: float = 0.25,
) -> tuple[np.ndarray, np.ndarray]:
    """Run the sampler on sorted rows; returns the kernel's ``(out, counters)`` arrays."""
    ns = offsets.size - 1
    out = np.full((ns, 10), np.nan)
    cnt = np.zeros((ns, _nb.N_COUNTERS), dtype=np.int64)
    q = 0.5 * (1.0 - credible)
    _nb.gibbs_slices(
        strike,
        is_call,
        bid,
        ask,
        offsets,
        np.ascontiguousarray(prior_mean, dtype=float),
        np.ascontiguousarray(prior_sd, dtype=float),
        float(window),
        max(int(min_pairs), 2),
        float(nu),
        float(tau0),
        int(n_iter),
        int(burn),
        slice_seeds(seed, ns),
        q,
        1.0 - q,
        out,
        cnt,
    )
    return out, cnt
