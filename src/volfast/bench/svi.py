"""``volfast bench svi``: raw-SVI slice fits, volfast's batched fit against scipy ``least_squares``.

The slices are SPX-like SSVI smiles with known truth and 0.6 vol points of noise
(:func:`volfast.svi._synthetic.spx_like_slices`); the error is the largest |fitted vol - true vol| at the
quoted strikes over the slices scipy fits (a subsample: it runs slice by slice from Python).
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial

import numpy as np

from volfast.bench._common import Row, Suite, best_time, dist_version

#: slices scipy fits (at most)
SCIPY_SLICES = 12


def slices_for(quotes: int) -> int:
    """Slices benched for a ``--quotes`` setting: one per 1,000 quotes, between 12 and 1,000."""
    return int(min(1000, max(12, quotes // 1000)))


def run(quotes: int, threads: int, progress: Callable[[str], None] | None = None) -> Suite:
    from volfast.svi import fit_svi
    from volfast.svi._synthetic import spx_like_slices
    from volfast.svi.core import total_variance_raw

    say = progress or (lambda _msg: None)
    s = Suite("svi", "slice")
    n = slices_for(quotes)
    d = spx_like_slices(n // 6 + 1, seed=2024)
    off = d["offsets"][: n + 1]
    npts = int(off[-1])
    k, w, w_true, T = d["k"][:npts], d["w"][:npts], d["w_true"][:npts], d["expiry_years"][:n]
    sub = np.unique(np.linspace(0, n - 1, min(SCIPY_SLICES, n)).astype(int))

    def vol_err(params: np.ndarray) -> float:
        worst = 0.0
        for j, sl in enumerate(sub):
            a, b = off[sl], off[sl + 1]
            fit = np.sqrt(np.maximum(total_variance_raw(k[a:b], params[j]), 0.0) / T[sl])
            worst = max(worst, float(np.max(np.abs(fit - np.sqrt(w_true[a:b] / T[sl])))))
        return worst

    vf = dist_version("volfast")
    for af in (False, True):
        for th in sorted({1, max(1, threads)}):
            say(f"volfast fit_svi ({'arbitrage-free' if af else 'independent'}, {th} thread(s))")
            t, r = best_time(partial(fit_svi, k, w, off, expiry_years=T, arbitrage_free=af, threads=th))
            note = "arbitrage-free surface" if af else "independent slices"
            s.rows.append(Row("svi", "volfast", vf, t / n * 1e9, vol_err(r.params[sub]), th, n, note))

    sp = s.peer("scipy")
    if sp is not None:
        from volfast.svi import _reference as ref

        say(f"scipy least_squares ({len(sub)} slices)")

        def run_scipy() -> np.ndarray:
            out = np.empty((len(sub), 5))
            for j, sl in enumerate(sub):
                kk, vv = k[off[sl] : off[sl + 1]], w[off[sl] : off[sl + 1]]
                out[j], _ = ref.fit_slice_least_squares(kk, vv, np.ones_like(kk), n_starts=3, seed=int(sl))
            return out

        t, params = best_time(run_scipy, repeats=1, warmup=False)
        s.rows.append(
            Row(
                "svi",
                "scipy least_squares",
                dist_version("scipy"),
                t / len(sub) * 1e9,
                vol_err(params),
                1,
                len(sub),
                "3 starts, analytic Jacobian, independent slices",
            )
        )
    s.notes.append(
        f"svi: {n} SPX-like slices ({npts:,} quotes, noise 0.6 vol points); max_abs_err = largest"
        " |fitted vol -"
        f" true vol| at the quoted strikes over {len(sub)} slices"
    )
    return s
