"""Numba kernel: early-exercise premiums of American options on a stock paying discrete cash dividends.

Model (escrowed dividends): the stock is ``S(t) = S*(t) + PV_t(dividends ex after t, up to expiry)`` where
``S*`` follows a geometric Brownian motion with the option's European vol under a flat rate. A
Leisen-Reimer binomial lattice (Leisen and Reimer, 1996) on ``S*`` prices the American and the European
option on the same nodes; the exercise value at a node uses the full stock price ``S* + PV_t``. The
early-exercise premium ``american - european`` taken from one lattice has part of the lattice's
discretisation error cancelled (a control variate); the caller adds it to the exact Black-76 European price.

Numeric contract: the premium converges about as 1/N (smoothly, no odd/even oscillation), so two step counts
extrapolate well (:func:`volfast.synth.american.american_prices`); tests compare with a plain binomial tree
written in the test.
"""

from __future__ import annotations

import math

import numba as nb
import numpy as np


@nb.njit(cache=True, inline="always")
def _peizer_pratt(z: float, n: int) -> float:
    """Peizer-Pratt method 2 inversion: the binomial probability whose n-step tail matches N(z)."""
    x = z / (n + 1.0 / 3.0 + 0.1 / (n + 1.0))
    h = 0.5 * math.sqrt(1.0 - math.exp(-x * x * (n + 1.0 / 6.0)))
    return 0.5 + h if z >= 0 else 0.5 - h


@nb.njit(cache=True, parallel=True, nogil=True)
def early_exercise_premium(
    s_star: np.ndarray,  # (n,) escrowed spot S - PV(dividends to expiry)
    strike: np.ndarray,  # (n,)
    expiry_years: np.ndarray,  # (n,)
    vol: np.ndarray,  # (n,)
    rate: np.ndarray,  # (n,) flat continuous zero rate to expiry
    is_call: np.ndarray,  # (n,) bool
    div_offsets: np.ndarray,  # (n + 1,) CSR offsets into div_t / div_amt
    div_t: np.ndarray,  # ex-times in years from now, ascending within an instrument
    div_amt: np.ndarray,  # cash amounts
    n_steps: int,
    out_american: np.ndarray,  # (n,) lattice American price
    out_european: np.ndarray,  # (n,) lattice European price
) -> None:
    n = s_star.size
    for i in nb.prange(n):
        T = expiry_years[i]
        sig = vol[i]
        r = rate[i]
        K = strike[i]
        call = is_call[i]
        N = n_steps if n_steps % 2 == 1 else n_steps + 1  # Leisen-Reimer needs an odd count
        dt = T / N
        growth = math.exp(r * dt)
        a = div_offsets[i]
        b = div_offsets[i + 1]
        s0 = s_star[i]
        # Leisen-Reimer: probabilities from the Peizer-Pratt inversion of d1, d2 (the lattice is centred on
        # the strike, so prices converge smoothly, about as 1/N^2 for Europeans)
        vt = sig * math.sqrt(T)
        d1 = (math.log(s0 / K) + (r + 0.5 * sig * sig) * T) / vt
        d2 = d1 - vt
        p = _peizer_pratt(d2, N)
        pp = _peizer_pratt(d1, N)
        u = growth * pp / p
        d = (growth - p * u) / (1.0 - p)
        disc = 1.0 / growth
        am = np.empty(N + 1)
        eu = np.empty(N + 1)
        # terminal nodes: no dividend remains after expiry
        uu = u / d
        s = s0 * d**N
        for j in range(N + 1):
            v = s - K if call else K - s
            s *= uu
            if v < 0.0:
                v = 0.0
            am[j] = v
            eu[j] = v
        for step in range(N - 1, -1, -1):
            t = step * dt
            pv = 0.0
            k_ex = K
            for q in range(a, b):
                if div_t[q] > t:
                    pv += div_amt[q] * math.exp(-r * (div_t[q] - t))
                    if call and div_t[q] <= t + dt:
                        # an ex-date inside this step: a call is exercised just before it, not at the
                        # node; from the node that is worth S - K exp(-r tau) (the strike paid tau later)
                        k_ex = K * math.exp(-r * (div_t[q] - t))
            base = s0 * d**step
            for j in range(step + 1):
                cont = disc * (p * am[j + 1] + (1.0 - p) * am[j])
                eu[j] = disc * (p * eu[j + 1] + (1.0 - p) * eu[j])
                s = base + pv
                ex = s - k_ex if call else K - s
                am[j] = cont if cont > ex else ex
                base *= uu
        out_american[i] = am[0]
        out_european[i] = eu[0]
