"""Per-quote fit weights for batched SVI (Numba): spread weights and normalisation to mean 1 per slice."""

from __future__ import annotations

import math

import numba
import numpy as np


@numba.njit(cache=True, fastmath=False, error_model="numpy")
def spread_weights(bid, ask, offsets, out):
    """Weights ``1 / spread^2`` per slice (spread floored at 5% of the slice's median spread; a missing or
    non-positive spread counts as 3x the median), normalised to mean 1 within each slice."""
    ns = offsets.shape[0] - 1
    for s in range(ns):
        lo = offsets[s]
        hi = offsets[s + 1]
        if hi == lo:
            continue
        good = np.empty(hi - lo)
        ng = 0
        for i in range(lo, hi):
            sp = ask[i] - bid[i]
            if sp > 0.0 and sp < math.inf:
                good[ng] = sp
                ng += 1
        med = np.median(good[:ng]) if ng > 0 else 1.0
        tot = 0.0
        for i in range(lo, hi):
            sp = ask[i] - bid[i]
            if not (sp > 0.0 and sp < math.inf):
                sp = 3.0 * med
            sp = max(sp, 0.05 * med)
            out[i] = 1.0 / (sp * sp)
            tot += out[i]
        for i in range(lo, hi):
            out[i] *= (hi - lo) / tot


@numba.njit(cache=True, fastmath=False, error_model="numpy")
def normalise_weights(wt, offsets, out):
    ns = offsets.shape[0] - 1
    for s in range(ns):
        lo = offsets[s]
        hi = offsets[s + 1]
        tot = 0.0
        for i in range(lo, hi):
            tot += wt[i]
        for i in range(lo, hi):
            out[i] = wt[i] * (hi - lo) / tot if tot > 0.0 else math.nan
