"""Numba kernel: early-exercise premiums of American options on a stock paying discrete cash dividends.

Model (escrowed dividends): the stock is ``S(t) = S*(t) + PV_t(dividends ex after t, up to expiry)`` where
``S*`` follows a geometric Brownian motion with the option's European vol under a flat rate. A
Cox-Ross-Rubinstein lattice on ``S*`` prices the American and the European option on the same nodes; the
exercise value at a node uses the full stock price ``S* + PV_t``. The early-exercise premium
``american - european`` taken from one lattice has most of the lattice's discretisation error cancelled
(a control variate); the caller adds it to the exact Black-76 European price.

Numeric contract: with 200 steps the premium is within about 1e-3 of the spot-level premium of a 4,000-step
lattice for one-year options (tests compare with a plain binomial tree written in the test).
"""

from __future__ import annotations

import math

import numba as nb
import numpy as np


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
        N = n_steps
        dt = T / N
        u = math.exp(sig * math.sqrt(dt))
        d = 1.0 / u
        growth = math.exp(r * dt)
        p = (growth - d) / (u - d)
        if p < 0.0:
            p = 0.0
        elif p > 1.0:
            p = 1.0
        disc = 1.0 / growth
        a = div_offsets[i]
        b = div_offsets[i + 1]
        am = np.empty(N + 1)
        eu = np.empty(N + 1)
        s0 = s_star[i]
        # terminal nodes: no dividend remains after expiry
        uu = u * u
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
            for q in range(a, b):
                if div_t[q] > t:
                    pv += div_amt[q] * math.exp(-r * (div_t[q] - t))
            base = s0 * d**step
            for j in range(step + 1):
                cont = disc * (p * am[j + 1] + (1.0 - p) * am[j])
                eu[j] = disc * (p * eu[j + 1] + (1.0 - p) * eu[j])
                s = base + pv
                ex = s - K if call else K - s
                am[j] = cont if cont > ex else ex
                base *= uu
        out_american[i] = am[0]
        out_european[i] = eu[0]
