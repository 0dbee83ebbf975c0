"""Discount factors and forwards per expiry from put-call parity, with box-spread bounds and a pooled curve.

Method (``method="huber"``, the default), per expiry slice:

* Call/put pairs at common strikes with usable two-sided quotes give synthetic forwards
  ``y = mid(C) - mid(P) = D (F - K)`` with bid/ask ``[bid(C) - ask(P), ask(C) - bid(P)]``.
* Near the money (``|ln(K/F0)| <= window * sigma sqrt(T)``, sigma sqrt(T) from the ATM straddle), F and D
  minimise Huber's loss of the residuals in units of each synthetic's spread (weights ``1 / spread^2``).
* Box spreads (two synthetics) bound D by bid/ask; at the fitted D each synthetic bounds F; the fit is
  checked against those bounds (:attr:`ForwardStatus.INFEASIBLE` when the parity line misses the bid/ask of
  most synthetics).
* Short expiries do not pin the rate: the zero rates ``-ln(D)/T`` of all expiries in one call are pooled
  (precision-weighted, Huber-robust, flat or linear in T) and an expiry whose own rate is uninformative
  (standard error above ``pool_rate_se``) or whose free fit failed is refitted with the pooled D
  (:attr:`ForwardStatus.POOLED_DISCOUNT`).
* Honest discounts: an expiry's own D is never reported as a success when it is not identified (rate
  standard error above ``pool_rate_se``) and no *other* expiry is there to pool with
  (:attr:`ForwardStatus.DISCOUNT_UNIDENTIFIED`), when its box-spread bounds are empty (``discount_lo >
  discount_hi``: the quotes admit no single D, e.g. American puts' early-exercise premium;
  :attr:`ForwardStatus.EMPTY_BOX_BOUNDS`) or when its rate lies outside ``rate_band``
  (:attr:`ForwardStatus.RATE_OUT_OF_BAND`). Such expiries take the pooled D of the other expiries where
  there is one (``POOLED_DISCOUNT``, the reason says why); give ``discount_factor`` (a known rate) to avoid
  the question altogether.

``method="bayes"`` samples a posterior for (F, D) per expiry (see :mod:`volfast.forward.bayes`);
``method="naive"`` is the CBOE rule (the strike with the smallest ``|C - P|``), for comparison.
"""

from __future__ import annotations

import enum
import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from volfast.forward import _numba as _nb

__all__ = [
    "ForwardFit",
    "ForwardStatus",
    "OptionChains",
    "implied_forward",
    "option_chains",
]

_NS_PER_YEAR = 365 * 86400 * 1_000_000_000


class ForwardStatus(enum.IntEnum):
    """Outcome of one expiry's fit (``ForwardFit.status``, uint8). ``OK``, ``POOLED_DISCOUNT`` and
    ``FLAGGED_BOX_BOUNDS`` are successes (the last two say why in ``reason``); every other code comes with a
    NaN forward and a ``reason``."""

    OK = 0  # forward and discount factor both fitted from this expiry's quotes
    POOLED_DISCOUNT = 1  # the forward is fitted; D came from the pooled curve (or was given)
    TOO_FEW_PAIRS = 2  # fewer than ``min_pairs`` strikes with a usable call and put
    ONE_SIDED = 3  # only calls or only puts, or quotes missing a side
    CROSSED = 4  # too few pairs once crossed quotes are left out
    NO_CONVERGENCE = 5  # the regression did not converge, or gave D <= 0, and no pooled D was available
    INFEASIBLE = 6  # the parity line lies outside the bid/ask of most synthetics
    INVALID_INPUT = 7  # non-positive expiry or given D, or too few pairs once non-positive mids are left out
    DISCOUNT_UNIDENTIFIED = 8  # the expiry's own quotes do not pin D; no other expiry to pool with
    RATE_OUT_OF_BAND = 9  # its own rate -ln(D)/T lies outside ``rate_band``; nothing to fall back on
    EMPTY_BOX_BOUNDS = 10  # unidentified D and no D prices every box inside its bid/ask (lo > hi)
    FLAGGED_BOX_BOUNDS = 11  # a success, flagged: the robust fit's own D is kept though lo > hi (see reason)


_SUCCESS = (
    int(ForwardStatus.OK),
    int(ForwardStatus.POOLED_DISCOUNT),
    int(ForwardStatus.FLAGGED_BOX_BOUNDS),
)


# -- chains ----------------------------------------------------------------------------------------------
@dataclass
class OptionChains:
    """Options of a snapshot grouped into ragged per-expiry slices (CSR ``offsets``).

    Slices are ordered by expiration then underlying; rows in a slice by (strike, is_call).

    Attributes
    ----------
    offsets : int64 array (n_slices + 1,)
        Rows of slice ``i`` are ``offsets[i]:offsets[i+1]``.
    underlying : object array (n_slices,)
        Underlying symbol per slice (``""`` when the snapshot has none).
    expiration : datetime64[ns] array (n_slices,)
        Expiration (UTC).
    expiry_years : float64 array (n_slices,)
        ACT/365 year fraction from the cut: ``(expiration - cut) / (365 * 86400e9 ns)``.
    row : int64 array (n_rows,)
        Index of each row in the snapshot table.
    instrument_id : uint32 array; strike, bid, ask, multiplier : float64 arrays (NaN when absent);
    is_call : bool array
        Per row.
    cut_ns : int
        The cut (UTC nanoseconds).
    """

    offsets: np.ndarray
    underlying: np.ndarray
    expiration: np.ndarray
    expiry_years: np.ndarray
    row: np.ndarray
    instrument_id: np.ndarray
    strike: np.ndarray
    is_call: np.ndarray
    bid: np.ndarray
    ask: np.ndarray
    multiplier: np.ndarray
    cut_ns: int = 0

    def __len__(self) -> int:
        return int(self.offsets.size - 1)

    def slice(self, i: int) -> dict[str, Any]:
        """Slice ``i`` as a dict of per-row arrays plus its ``underlying``, ``expiration``,
        ``expiry_years``."""
        a, b = int(self.offsets[i]), int(self.offsets[i + 1])
        out: dict[str, Any] = {
            k: getattr(self, k)[a:b]
            for k in ("row", "instrument_id", "strike", "is_call", "bid", "ask", "multiplier")
        }
        out.update(
            underlying=self.underlying[i], expiration=self.expiration[i], expiry_years=self.expiry_years[i]
        )
        return out

    def implied_forward(self, **kwargs: Any) -> ForwardFit:
        """:func:`implied_forward` over these slices (keyword arguments pass through)."""
        return implied_forward(
            strike=self.strike,
            is_call=self.is_call,
            bid=self.bid,
            ask=self.ask,
            expiry_years=self.expiry_years,
            offsets=self.offsets,
            **kwargs,
        )


def _col(table: Any, name: str) -> Any:
    return table.column(name)


def option_chains(table: Any, *, cut_ns: int) -> OptionChains:
    """Group a snapshot table's options into per-expiry slices.

    Parameters
    ----------
    table : pyarrow.Table
        Schema :data:`volfast.snapshot.SNAPSHOT_SCHEMA` (``SnapshotResult.table``).
    cut_ns : int
        The snapshot cut, UTC nanoseconds (``SnapshotResult.cut_ns``); expiries are measured from it.

    Returns
    -------
    OptionChains
        Rows with ``is_call`` not null, a finite positive strike and an expiration after the cut, grouped by
        (underlying, expiration). OPRA expirations are already the 16:00 New York close (see
        :func:`volfast.io.definitions.equity_option_close`).
    """
    import pyarrow as pa
    import pyarrow.compute as pc

    need = ("instrument_id", "underlying", "is_call", "strike", "expiration", "bid", "ask", "multiplier")
    missing = [c for c in need if c not in table.column_names]
    if missing:
        raise ValueError(f"option_chains: the table lacks column(s) {', '.join(missing)}")
    n = table.num_rows
    is_call_col = _col(table, "is_call")
    valid_side = np.asarray(pc.is_valid(is_call_col).to_numpy(zero_copy_only=False), dtype=bool)
    is_call = np.asarray(pc.fill_null(is_call_col, False).to_numpy(zero_copy_only=False), dtype=bool)
    strike = np.asarray(pc.fill_null(_col(table, "strike"), math.nan).to_numpy(zero_copy_only=False), float)
    exp_col = _col(table, "expiration").cast(pa.int64())
    exp_valid = np.asarray(pc.is_valid(exp_col).to_numpy(zero_copy_only=False), dtype=bool)
    exp_ns = np.asarray(pc.fill_null(exp_col, 0).to_numpy(zero_copy_only=False), dtype=np.int64)
    und = np.asarray(pc.fill_null(_col(table, "underlying"), "").to_numpy(zero_copy_only=False), dtype=object)
    with np.errstate(invalid="ignore"):
        keep = valid_side & np.isfinite(strike) & (strike > 0) & exp_valid & (exp_ns > int(cut_ns))
    idx = np.flatnonzero(keep)
    und_k = und[idx].astype(str)
    names, und_code = np.unique(und_k, return_inverse=True) if idx.size else (np.array([], str), idx)
    order = np.lexsort((is_call[idx], strike[idx], und_code, exp_ns[idx]))
    rows = idx[order]
    e_s = exp_ns[rows]
    u_s = np.asarray(und_code)[order]
    if rows.size:
        brk = np.flatnonzero((np.diff(e_s) != 0) | (np.diff(u_s) != 0)) + 1
        starts = np.concatenate([[0], brk])
    else:
        starts = np.zeros(0, dtype=np.int64)
    offsets = np.concatenate([starts, [rows.size]]).astype(np.int64)

    def num(name: str, dtype: Any = float, fill: Any = math.nan) -> np.ndarray:
        a = np.asarray(pc.fill_null(_col(table, name), fill).to_numpy(zero_copy_only=False), dtype=dtype)
        return a[rows] if n else a

    exp_slices = e_s[starts] if rows.size else np.zeros(0, np.int64)
    return OptionChains(
        offsets=offsets,
        underlying=np.asarray([names[c] for c in u_s[starts]], dtype=object),
        expiration=exp_slices.astype("datetime64[ns]"),
        expiry_years=(exp_slices - int(cut_ns)) / _NS_PER_YEAR,
        row=rows.astype(np.int64),
        instrument_id=num("instrument_id", np.uint32, 0),
        strike=strike[rows],
        is_call=is_call[rows],
        bid=num("bid"),
        ask=num("ask"),
        multiplier=num("multiplier"),
        cut_ns=int(cut_ns),
    )


# -- results ---------------------------------------------------------------------------------------------
@dataclass
class ForwardFit:
    """Forward and discount factor per expiry slice (all arrays of length n_slices).

    Attributes
    ----------
    forward : float64
        Forward in price units; NaN where ``status`` is a failure.
    discount_factor : float64
        D = exp(-r T) for the slice's expiry.
    forward_lo, forward_hi : float64
        ``huber`` / ``naive``: the forwards that price every near-the-money synthetic inside its bid/ask at
        the fitted D (an empty interval, lo > hi, means no single forward does). ``bayes``: the central
        credible interval.
    discount_lo, discount_hi : float64
        ``huber`` / ``naive``: the intersection of the bid/ask bounds of all box spreads in the window;
        equal to D when D was given. ``bayes``: the credible interval.
    n_pairs : int64
        Call/put pairs (strikes) used.
    rmse : float64
        Root mean square parity residual ``y - D (F - K)`` over those pairs, price units.
    status : uint8
        :class:`ForwardStatus` codes.
    reason : object array of str
        What went wrong (or what was skipped), naming counts of crossed, one-sided, ... quotes.
    discount_se : float64
        Standard error of D (Huber: sandwich-free least-squares estimate; bayes: posterior sd).
    n_outside : int64
        Pairs whose synthetic bid/ask excludes the fitted D (F - K).
    expiry_years : float64
        The year fractions fitted.
    pooled_rate : dict
        The pooled zero-rate curve (``kind``, ``coef``, ``n_expiries``), empty when none was fitted.
    """

    forward: np.ndarray
    discount_factor: np.ndarray
    forward_lo: np.ndarray
    forward_hi: np.ndarray
    discount_lo: np.ndarray
    discount_hi: np.ndarray
    n_pairs: np.ndarray
    rmse: np.ndarray
    status: np.ndarray
    reason: np.ndarray
    discount_se: np.ndarray
    n_outside: np.ndarray
    expiry_years: np.ndarray
    method: str = "huber"
    pooled_rate: dict[str, Any] = field(default_factory=dict)

    def __len__(self) -> int:
        return int(self.forward.size)

    @property
    def ok(self) -> np.ndarray:
        """Boolean mask of slices with a forward (status OK or POOLED_DISCOUNT)."""
        return np.isin(self.status, _SUCCESS)

    @property
    def rate(self) -> np.ndarray:
        """Continuously compounded zero rate ``-ln(D) / T`` (ACT/365), per slice."""
        with np.errstate(divide="ignore", invalid="ignore"):
            return -np.log(self.discount_factor) / self.expiry_years


# -- pooling ---------------------------------------------------------------------------------------------
def _pool_rates(t: np.ndarray, r: np.ndarray, se: np.ndarray, kind: str) -> tuple[np.ndarray, np.ndarray]:
    """Huber-robust weighted least squares of zero rates on (1) or (1, T); returns (coef, covariance)."""
    x = np.ones((t.size, 1)) if kind == "flat" else np.column_stack([np.ones(t.size), t])
    w0 = 1.0 / se**2
    w = w0.copy()
    coef = np.zeros(x.shape[1])
    for _ in range(50):
        xtw = x.T * w
        new = np.linalg.solve(xtw @ x, xtw @ r)
        u = np.abs(r - x @ new) / se
        w = w0 * np.minimum(1.0, 1.5 / np.maximum(u, 1e-300))
        if np.allclose(new, coef, rtol=0, atol=1e-12):
            coef = new
            break
        coef = new
    cov = np.linalg.inv((x.T * w) @ x)
    return coef, cov


def _curve(coef: np.ndarray, cov: np.ndarray, t: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    x = np.ones((t.size, 1)) if coef.size == 1 else np.column_stack([np.ones(t.size), t])
    r = x @ coef
    se = np.sqrt(np.einsum("ij,jk,ik->i", x, cov, x))
    return r, se


# -- main entry ------------------------------------------------------------------------------------------
def _as_1d(name: str, a: Any, dtype: Any) -> np.ndarray:
    arr = np.asarray(a)
    if arr.ndim != 1:
        raise ValueError(f"{name} must be 1-D, got shape {arr.shape}")
    try:
        return np.ascontiguousarray(arr, dtype=dtype)
    except (TypeError, ValueError) as e:
        raise ValueError(f"{name}: cannot convert to {np.dtype(dtype).name}: {e}") from None


def _per_slice(name: str, a: Any, ns: int) -> np.ndarray:
    arr = np.asarray(a, dtype=float)
    if arr.ndim == 0:
        return np.full(ns, float(arr))
    if arr.shape != (ns,):
        raise ValueError(f"{name} must be a scalar or have one value per slice ({ns}), got shape {arr.shape}")
    return np.ascontiguousarray(arr)


def implied_forward(
    *,
    strike: Any,
    is_call: Any,
    bid: Any,
    ask: Any,
    expiry_years: Any,
    offsets: Any,
    method: str = "huber",
    pool_discount: bool = True,
    discount_factor: Any = None,
    seed: int = 0,
    window: float = 4.0,
    min_pairs: int = 3,
    huber_c: float = 0.25,
    pool_rate_se: float = 0.001,
    pool_curve: str = "auto",
    rate_band: tuple[float, float] | None = (-0.05, 0.20),
    max_outside: float = 0.5,
    max_iter: int = 100,
    n_iter: int = 3000,
    burn: int = 1000,
    nu: float = 4.0,
    credible: float = 0.95,
) -> ForwardFit:
    """Discount factor and forward per expiry slice from option quotes (put-call parity).

    Parameters
    ----------
    strike, is_call, bid, ask : array_like (n_rows,)
        Strikes and quotes in price units (index points); NaN bid/ask = empty side. Rows of slice ``i`` are
        ``offsets[i]:offsets[i+1]`` in any order.
    expiry_years : float or array_like (n_slices,)
        ACT/365 year fraction to expiry, > 0.
    offsets : array_like of int (n_slices + 1,)
        CSR offsets: ``offsets[0] == 0``, non-decreasing, ``offsets[-1] == n_rows``.
    method : {"huber", "bayes", "naive"}
        Huber-weighted parity regression; Gibbs posterior (:mod:`volfast.forward.bayes`); or the CBOE rule
        (the strike with the smallest ``|C - P|``; D from the median adjacent box spread).
    pool_discount : bool
        Pool a zero-rate curve across the slices and use it where a slice's own D is uninformative; a slice
        whose own D is uninformative and that has no other slice to pool with gets
        ``DISCOUNT_UNIDENTIFIED``. False keeps every slice's own D (the caller takes it as it is; the
        ``rate_band`` check still applies).
    discount_factor : None, float or array_like (n_slices,)
        Fix D (NaN entries are estimated). Fixed slices are reported ``OK``.
    seed : int
        Seed of the Bayesian sampler (slice ``i`` uses ``seed`` and ``i``; results do not depend on threads).
    window : float
        Near-the-money window in ATM standard deviations (``sigma sqrt(T)`` from the ATM straddle).
    min_pairs : int
        Fewest call/put pairs for a fit (>= 2 where D is estimated).
    huber_c : float
        Huber threshold in units of each synthetic's bid/ask spread.
    pool_rate_se : float
        A slice whose own zero rate has a standard error above this (a fraction, 0.001 = 10 bp) takes D from
        the pooled curve.
    pool_curve : {"auto", "flat", "linear"}
        Zero rate constant or linear in T; ``auto`` is linear when at least three informative slices span
        0.25 years or more.
    rate_band : (low, high) or None
        Plausible continuously compounded zero rates (fractions, ACT/365); an expiry whose own fitted rate
        lies outside gets the pooled D of the other expiries or status ``RATE_OUT_OF_BAND``, and never
        enters the pool. None: no band.
    max_outside : float
        ``INFEASIBLE`` when more than this fraction of the used synthetics have the fit outside their bid/ask.
    max_iter : int
        IRLS iteration cap (``NO_CONVERGENCE`` past it).
    n_iter, burn, nu, credible : Bayesian sampler: iterations, burn-in, Student-t degrees of freedom, and
        the central credible level of ``forward_lo/hi`` and ``discount_lo/hi``.

    Returns
    -------
    ForwardFit

    Raises
    ------
    ValueError
        Inconsistent array lengths or offsets, an unknown method, or bad sampler settings. Problems of one
        slice never raise: they are a status and a reason.
    """
    if method not in ("huber", "bayes", "naive"):
        raise ValueError(f"method must be 'huber', 'bayes' or 'naive', got {method!r}")
    if pool_curve not in ("auto", "flat", "linear"):
        raise ValueError(f"pool_curve must be 'auto', 'flat' or 'linear', got {pool_curve!r}")
    if not (min_pairs >= 1):
        raise ValueError(f"min_pairs must be >= 1, got {min_pairs}")
    if not (window > 0 and huber_c > 0 and pool_rate_se > 0):
        raise ValueError("window, huber_c and pool_rate_se must be > 0")
    if rate_band is not None and not (len(rate_band) == 2 and float(rate_band[0]) < float(rate_band[1])):
        raise ValueError(f"rate_band must be (low, high) with low < high, got {rate_band!r}")
    if not (0 < credible < 1):
        raise ValueError(f"credible must be in (0, 1), got {credible}")
    if method == "bayes" and not (0 <= burn < n_iter):
        raise ValueError(f"need 0 <= burn < n_iter, got burn={burn}, n_iter={n_iter}")
    k = _as_1d("strike", strike, float)
    n = k.size
    from volfast.iv.black76 import as_is_call

    c = _as_1d("is_call", as_is_call(is_call), bool)
    b = _as_1d("bid", bid, float)
    a = _as_1d("ask", ask, float)
    for name, arr in (("is_call", c), ("bid", b), ("ask", a)):
        if arr.size != n:
            raise ValueError(f"{name} has {arr.size} rows, strike has {n}")
    off = np.asarray(offsets)
    if off.ndim != 1 or off.size < 1 or not np.issubdtype(off.dtype, np.integer):
        raise ValueError("offsets must be a 1-D integer array of n_slices + 1 values")
    off = off.astype(np.int64)
    if off[0] != 0 or off[-1] != n or np.any(np.diff(off) < 0):
        raise ValueError(f"offsets must start at 0, never decrease and end at n_rows ({n})")
    ns = off.size - 1
    t = _per_slice("expiry_years", expiry_years, ns)
    d_given = (
        np.full(ns, math.nan)
        if discount_factor is None
        else _per_slice("discount_factor", discount_factor, ns)
    )

    # rows sorted by (slice, strike, is_call): the kernels walk strikes in order
    sid = np.repeat(np.arange(ns), np.diff(off))
    order = np.lexsort((c, k, sid))
    k, c, b, a = k[order], c[order], b[order], a[order]

    bad_t = ~(np.isfinite(t) & (t > 0))
    bad_d = np.isfinite(d_given) & ~(d_given > 0)
    bad_d |= ~np.isnan(d_given) & ~np.isfinite(d_given)
    d_fix = np.where(bad_d, math.nan, d_given)
    out = np.full((ns, 10), math.nan)
    cnt = np.zeros((ns, _nb.N_COUNTERS), dtype=np.int64)
    m_code = 1 if method == "naive" else 0
    mp_free = max(int(min_pairs), 2)
    # free-D slices need two strikes; fixed-D slices one
    _nb.fit_slices(
        k, c, b, a, off, d_fix, m_code, float(window), mp_free, float(huber_c), int(max_iter), 1e-13, out, cnt
    )
    fixed = np.isfinite(d_fix)
    if fixed.any() and mp_free != int(min_pairs):
        out_f = np.full((ns, 10), math.nan)
        cnt_f = np.zeros_like(cnt)
        _nb.fit_slices(
            k,
            c,
            b,
            a,
            off,
            d_fix,
            m_code,
            float(window),
            int(min_pairs),
            float(huber_c),
            int(max_iter),
            1e-13,
            out_f,
            cnt_f,
        )
        out[fixed], cnt[fixed] = out_f[fixed], cnt_f[fixed]
    status = out[:, 9].astype(np.uint8)
    pooled = np.zeros(ns, dtype=bool)
    pool_info: dict[str, Any] = {}
    d_pool = np.full(ns, math.nan)
    d_pool_se = np.full(ns, math.nan)

    # Honest discounts: what the free fits say about each expiry's own D
    free_ok = (status == 0) & ~fixed & ~bad_t
    with np.errstate(divide="ignore", invalid="ignore"):
        r_i = -np.log(out[:, 1]) / t
        se_r = out[:, 8] / (out[:, 1] * t)
        empty_box = free_ok & (out[:, 4] > out[:, 5])
    own_r, own_se, own_lo, own_hi = r_i.copy(), se_r.copy(), out[:, 4].copy(), out[:, 5].copy()
    lo_band, hi_band = (-math.inf, math.inf) if rate_band is None else map(float, rate_band)
    out_band = free_ok & np.isfinite(r_i) & ~((r_i >= lo_band) & (r_i <= hi_band))
    if method == "naive":  # the CBOE rule is kept as it is, for comparison
        empty_box[:] = False
        out_band[:] = False
    # An out-of-band rate is never trusted. Empty box bounds alone are not decisive (one stray quote empties
    # the intersection while the robust fit stays good): they are noted, and they name the failure of an
    # expiry whose D is also unidentified.
    flagged = out_band
    informative = free_ok & ~flagged & (se_r <= pool_rate_se)
    pool_ok = np.zeros(ns, dtype=bool)  # a pooled D from other expiries exists for the slice
    if pool_discount and method != "naive":
        use = free_ok & ~flagged & np.isfinite(r_i) & np.isfinite(se_r) & (se_r > 0)
        n_use = int(use.sum())
        if use.any():
            kind = pool_curve
            if kind == "auto":
                ti = t[informative]
                kind = "linear" if ti.size >= 3 and ti.max() - ti.min() >= 0.25 else "flat"
            coef, cov = _pool_rates(t[use], r_i[use], se_r[use], kind)
            tt = np.where(bad_t, 0.0, t)
            r_p, r_se = _curve(coef, cov, tt)
            d_pool = np.exp(-r_p * tt)
            d_pool_se = d_pool * tt * r_se
            pool_info = {
                "kind": kind,
                "coef": coef.tolist(),
                "n_expiries": int(use.sum()),
                "n_informative": int(informative.sum()),
            }
            # the pool must hold an expiry other than the slice itself, and its rate must be plausible
            others = n_use - use.astype(np.int64)
            pool_ok = (others >= 1) & np.isfinite(d_pool) & (r_p >= lo_band) & (r_p <= hi_band)
            need = (
                ~fixed
                & ~bad_t
                & pool_ok
                & (((status == 0) & ~(se_r <= pool_rate_se)) | (status == _nb.ST_NO_CONVERGENCE) | flagged)
            )
            if need.any():
                d2 = np.where(need, d_pool, math.nan)
                out2 = np.full((ns, 10), math.nan)
                cnt2 = np.zeros_like(cnt)
                _nb.fit_slices(
                    k,
                    c,
                    b,
                    a,
                    off,
                    d2,
                    0,
                    float(window),
                    int(min_pairs),
                    float(huber_c),
                    int(max_iter),
                    1e-13,
                    out2,
                    cnt2,
                )
                done = need & (out2[:, 9] == 0)
                out2[:, 8] = d_pool_se
                out[done], cnt[done] = out2[done], cnt2[done]
                pooled = done
                status = out[:, 9].astype(np.uint8)

    if method == "bayes":
        from volfast.forward.bayes import _bayes_slices

        prior_mean = np.where(fixed, d_fix, np.where(pooled, d_pool, math.nan))
        prior_sd = np.where(fixed, 0.0, np.where(pooled, d_pool_se, math.nan))
        out_b, cnt_b = _bayes_slices(
            k,
            c,
            b,
            a,
            off,
            prior_mean,
            prior_sd,
            window=window,
            min_pairs=min_pairs,
            nu=nu,
            n_iter=n_iter,
            burn=burn,
            seed=seed,
            credible=credible,
        )
        run = status == 0
        out[run], cnt[run] = out_b[run], cnt_b[run]
        status = out[:, 9].astype(np.uint8)
    elif method != "naive":
        # given D: the bounds are D itself
        out[fixed, 4] = d_fix[fixed]
        out[fixed, 5] = d_fix[fixed]

    # feasibility, input errors, reasons
    rows_call = np.add.reduceat(c.astype(np.int64), off[:-1]) if n else np.zeros(ns, np.int64)
    rows_call = np.where(np.diff(off) > 0, rows_call, 0)
    rows_put = np.diff(off) - rows_call
    n_pairs = out[:, 6].astype(np.int64)
    with np.errstate(invalid="ignore", divide="ignore"):
        frac_out = cnt[:, _nb.C_OUTSIDE] / np.maximum(n_pairs, 1)
    infeasible = (status == 0) & (method != "bayes") & (frac_out > max_outside)
    status = status.copy()
    # own D not trusted and no pooled D from other expiries: flagged, never a success
    unidentified = (
        (status == 0)
        & ~pooled
        & ~fixed
        & ~bad_t
        & pool_discount
        & (method != "naive")
        & ~flagged
        & ~(se_r <= pool_rate_se)
    )
    status[(status == 0) & ~pooled & out_band] = ForwardStatus.RATE_OUT_OF_BAND
    status[unidentified] = np.where(
        empty_box[unidentified], ForwardStatus.EMPTY_BOX_BOUNDS, ForwardStatus.DISCOUNT_UNIDENTIFIED
    )
    infeasible &= status == 0
    status[infeasible] = ForwardStatus.INFEASIBLE
    status[(status == 0) & pooled] = ForwardStatus.POOLED_DISCOUNT

    reasons = np.empty(ns, dtype=object)
    for s in range(ns):
        st, why = _explain(
            int(status[s]),
            cnt[s],
            int(rows_call[s]),
            int(rows_put[s]),
            int(min_pairs if fixed[s] else mp_free),
            bool(bad_t[s]),
            bool(bad_d[s]),
            float(t[s]),
            float(d_given[s]),
            float(frac_out[s]),
            max_outside,
        )
        if st == ForwardStatus.OK and empty_box[s]:
            st = int(ForwardStatus.FLAGGED_BOX_BOUNDS)
        status[s] = st
        reasons[s] = why
        if flagged[s] or unidentified[s] or (empty_box[s] and int(st) in _SUCCESS):
            reasons[s] = _discount_flag(
                int(st),
                why,
                bool(empty_box[s]),
                bool(out_band[s]),
                own_r[s],
                own_se[s],
                own_lo[s],
                own_hi[s],
                (lo_band, hi_band),
                pool_rate_se,
                bool(pooled[s]),
            )
    fail = ~np.isin(status, _SUCCESS)
    for col in (0, 1, 2, 3, 7):
        out[fail, col] = math.nan
    return ForwardFit(
        forward=out[:, 0].copy(),
        discount_factor=out[:, 1].copy(),
        forward_lo=out[:, 2].copy(),
        forward_hi=out[:, 3].copy(),
        discount_lo=out[:, 4].copy(),
        discount_hi=out[:, 5].copy(),
        n_pairs=n_pairs,
        rmse=out[:, 7].copy(),
        status=status.astype(np.uint8),
        reason=reasons,
        discount_se=out[:, 8].copy(),
        n_outside=cnt[:, _nb.C_OUTSIDE].copy(),
        expiry_years=t,
        method=method,
        pooled_rate=pool_info,
    )


def _discount_flag(
    st: int,
    why: str,
    empty_box: bool,
    out_band: bool,
    r: float,
    se: float,
    lo: float,
    hi: float,
    band: tuple[float, float],
    pool_rate_se: float,
    pooled: bool = False,
) -> str:
    """The reason of a slice whose own discount factor was not trusted (flagged, or unidentified)."""
    flags = []
    if empty_box:
        flags.append(
            f"empty box-spread bounds (discount_lo {lo:.6f} > discount_hi {hi:.6f}: no single discount "
            "factor prices every box spread inside its bid/ask)"
        )
    if out_band:
        flags.append(f"own rate {r:.2%} outside the band [{band[0]:.2%}, {band[1]:.2%}]")
    if not flags or st not in _SUCCESS and not out_band:
        flags.append(
            f"own rate {r:.2%} +- {se:.2%} is not identified by the expiry's quotes "
            f"(standard error above {pool_rate_se:.2%})"
        )
    head = "; ".join(flags)
    if st == ForwardStatus.FLAGGED_BOX_BOUNDS:  # empty bounds only: the robust fit is kept, flagged
        return f"{head}; the Huber fit's own discount factor is kept" + (f"; {why}" if why else "")
    if st == ForwardStatus.POOLED_DISCOUNT:
        return f"{head}; discount factor from the pooled curve of the other expiries"
    tail = f" ({why})" if why else ""
    if pooled:
        return f"{head}; the pooled discount factor of the other expiries does not fit its quotes" + tail
    return f"{head}; no other expiry to pool with: give a rate (rate= / --rate){tail}"


def _explain(
    st: int,
    cnt: np.ndarray,
    rows_call: int,
    rows_put: int,
    min_pairs: int,
    bad_t: bool,
    bad_d: bool,
    t: float,
    d: float,
    frac_out: float,
    max_outside: float,
) -> tuple[int, str]:
    """Final status and its reason text for one slice."""
    skipped = []
    for col, what in (
        (_nb.C_CROSSED, "crossed (bid > ask)"),
        (_nb.C_ONE_SIDED, "one-sided"),
        (_nb.C_NO_QUOTE, "without a quote"),
        (_nb.C_NONPOSITIVE, "with a non-positive price (ask <= 0 or bid < 0)"),
        (_nb.C_ZERO_BID, "with a zero bid (no bid)"),
        (_nb.C_BAD_STRIKE, "with a non-finite or non-positive strike"),
        (_nb.C_DUPLICATE, "duplicate (strike, side) rows (the tighter kept)"),
    ):
        if cnt[col]:
            skipped.append(f"{int(cnt[col])} {what}")
    skip = ("; skipped " + ", ".join(skipped)) if skipped else ""
    if bad_t:
        return int(ForwardStatus.INVALID_INPUT), f"expiry_years must be finite and > 0, got {t!r}"
    if bad_d:
        return int(ForwardStatus.INVALID_INPUT), f"discount_factor must be finite and > 0, got {d!r}"
    calls, puts, pairs = int(cnt[_nb.C_CALLS]), int(cnt[_nb.C_PUTS]), int(cnt[_nb.C_PAIRS_ALL])
    summary = f"{int(cnt[_nb.C_ROWS])} rows, {calls} usable calls, {puts} usable puts, {pairs} call/put pairs"
    if st == _nb.ST_TOO_FEW:
        need = f"need {min_pairs} strikes with a usable call and put"
        nz = int(cnt[_nb.C_ZERO_BID] + cnt[_nb.C_NO_QUOTE])
        if int(cnt[_nb.C_ROWS]) > 0 and nz == int(cnt[_nb.C_ROWS]):
            return int(ForwardStatus.ONE_SIDED), (
                f"no bids: all {nz} quotes of the expiry have a zero or missing bid; not fitted"
            )
        if rows_call == 0 or rows_put == 0:
            side = "puts" if rows_call == 0 else "calls"
            if rows_call == 0 and rows_put == 0:
                return int(ForwardStatus.TOO_FEW_PAIRS), f"no options in the slice; {need}"
            return int(ForwardStatus.ONE_SIDED), f"one-sided chain: only {side} ({summary}); {need}"
        causes = {
            ForwardStatus.ONE_SIDED: int(cnt[_nb.C_ONE_SIDED] + cnt[_nb.C_NO_QUOTE] + cnt[_nb.C_ZERO_BID]),
            ForwardStatus.CROSSED: int(cnt[_nb.C_CROSSED]),
            ForwardStatus.INVALID_INPUT: int(cnt[_nb.C_NONPOSITIVE] + cnt[_nb.C_BAD_STRIKE]),
        }
        top, nbad = max(causes.items(), key=lambda kv: kv[1])
        if (
            nbad > 0
            and calls + puts < int(cnt[_nb.C_ROWS])
            and (calls == 0 or puts == 0 or pairs < min_pairs)
        ):
            label = {
                ForwardStatus.ONE_SIDED: "quotes missing a side",
                ForwardStatus.CROSSED: "crossed markets",
                ForwardStatus.INVALID_INPUT: "non-positive prices or bad strikes",
            }[top]
            return int(top), f"too few pairs once {label} are left out ({summary}{skip}); {need}"
        return int(ForwardStatus.TOO_FEW_PAIRS), f"too few quotes ({summary}{skip}); {need}"
    if st == _nb.ST_NO_CONVERGENCE:
        if cnt[_nb.C_NONPOS_D]:
            why = "the parity regression gave a non-positive discount factor"
        else:
            why = f"the parity regression did not converge in {int(cnt[_nb.C_ITER])} iterations"
        return int(ForwardStatus.NO_CONVERGENCE), f"{why} ({summary}{skip}); no pooled discount factor to use"
    if st == ForwardStatus.INFEASIBLE:
        return st, (
            f"parity line outside the bid/ask of {frac_out:.0%} of the synthetics "
            f"(more than {max_outside:.0%}); "
            f"quotes inconsistent with one forward ({summary}{skip})"
        )
    if st == ForwardStatus.POOLED_DISCOUNT:
        return st, "discount factor from the pooled curve (the expiry alone does not pin the rate)" + skip
    return st, skip[2:] if skip else ""
