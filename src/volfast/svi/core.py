"""Batched raw-SVI fits per expiry slice with butterfly and calendar arbitrage control.

Conventions: ``k = log(K / F)``; total implied variance ``w = vol^2 T`` (vol a fraction, ``T`` in ACT/365
years); raw SVI ``w(k) = a + b (rho (k - m) + sqrt((k - m)^2 + sigma^2))``, parameter rows ordered
``(a, b, rho, m, sigma)``.
"""

from __future__ import annotations

import dataclasses
import enum
import math
import warnings
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray

from volfast._native import resolve_threads
from volfast.errors import VolfastError

PARAM_NAMES = ("a", "b", "rho", "m", "sigma")
MIN_POINTS = 5
RHO_MAX = 1.0 - 1e-6  # |rho| < 1 strictly
HUBER_C = 1.345
# how far beyond the quoted log-moneyness range (in units of its width) the SVI minimum m may lie:
# independent fits search widely; arbitrage-free fits keep m among the quotes, since a minimum beyond the
# last strike with a wing at the slope cap fits the quotes as well but imposes that steep wing on every
# later slice (calendar order holds for all k, so wing slopes must not decrease)
M_OUT_FREE = 2.0
M_OUT_ARBITRAGE_FREE = 0.0
# Roger Lee's moment formula: an arbitrage-free smile has wing slopes b (1 +- rho) <= 2
LEE_SLOPE = 2.0
# the butterfly check interval extends at least this far beyond the quoted log-moneyness range
MIN_CHECK_MARGIN = 0.1


class SVIInputError(VolfastError, ValueError):
    """Inconsistent arguments to :func:`fit_svi` or the SVI helpers (shapes, offsets, settings)."""


class SVIStatus(enum.IntEnum):
    """Per-slice status (uint8 in :attr:`SVIFit.status`)."""

    OK = 0  #: fitted; with ``arbitrage_free`` its own best fit, already free of arbitrage
    #: fitted under the arbitrage constraints (``arbitrage_free`` only): its own best fit would violate
    #: butterfly or calendar no-arbitrage, so a constraint binds (``SVIFit.repair`` says what it costs)
    REPAIRED = 1
    TOO_FEW_POINTS = 2  #: fewer than 5 distinct log-moneyness values
    INVALID_INPUT = 3  #: NaN/inf or negative total variance, bad weight or expiry
    NO_FIT = 4  #: no acceptable fit (non-finite result, or RMSE above ``max_rmse``)
    #: ``arbitrage_free`` only: no fit free of arbitrage was found; parameters withheld (NaN)
    ARBITRAGE = 5


@dataclasses.dataclass(frozen=True)
class SVIFit:
    """Result of :func:`fit_svi`, one row per slice.

    Attributes
    ----------
    params : (n, 5) float64
        Raw SVI ``a, b, rho, m, sigma`` on total variance; NaN rows where the status is not OK/REPAIRED.
    rmse : (n,) float64
        Unweighted RMSE of the fitted vs market implied vol, in vol points (1 = 0.01 vol); NaN without
        ``expiry_years``.
    status : (n,) uint8
        :class:`SVIStatus` codes.
    reason : list of str
        Why a slice is not OK ('' when OK).
    inside_bid_ask : (n,) float64
        Share of the slice's quotes whose fitted total variance lies in [bid, ask]; NaN without bid/ask.
    min_g : (n,) float64
        Minimum of Gatheral-Jacquier's g(k) on the check interval :attr:`check_range` of the continuous
        slice (exact checker :func:`check_butterfly_exact`; -inf if w <= 0 anywhere).
    butterfly_ok, calendar_ok : (n,) bool
        No butterfly arbitrage: ``min_g >= 0`` on the check interval and Lee's wing bound
        ``b (1 + |rho|) <= 2`` beyond it; no calendar arbitrage against the previous usable slice of the
        same surface for every real k (exact checker :func:`check_calendar_exact`; True for the first slice
        of a surface). Computed the same way with and without ``arbitrage_free``.
    objective : (n,) float64
        Weighted sum of squared total-variance residuals ``sum wt (w(k) - w_mkt)^2`` with the weights
        normalised to mean 1 in each slice (Huber loss with ``robust=True``), for the returned params.
    repair : (n,) float64
        Relative increase of the objective over the slice's own unconstrained fit (0 = its own fit).
    check_range : (n, 2) float64
        The butterfly check interval of each slice (quoted range widened by the margin).
    calendar_gap : (n,) float64
        Exact ``min_k w_s(k) - w_prev(k)`` over all real k against the previous usable slice of the surface
        (inf for the first slice).
    """

    params: NDArray[np.float64]
    rmse: NDArray[np.float64]
    status: NDArray[np.uint8]
    reason: list[str]
    inside_bid_ask: NDArray[np.float64]
    min_g: NDArray[np.float64]
    butterfly_ok: NDArray[np.bool_]
    calendar_ok: NDArray[np.bool_]
    objective: NDArray[np.float64]
    repair: NDArray[np.float64]
    check_range: NDArray[np.float64] = dataclasses.field(default_factory=lambda: np.empty((0, 2)))
    calendar_gap: NDArray[np.float64] = dataclasses.field(default_factory=lambda: np.empty(0))

    @property
    def n_slices(self) -> int:
        return int(self.status.shape[0])

    @property
    def ok(self) -> NDArray[np.bool_]:
        """Slices with usable parameters (OK or REPAIRED)."""
        return (self.status == SVIStatus.OK) | (self.status == SVIStatus.REPAIRED)


# ---- parameter helpers ------------------------------------------------------------------------------------
def _params2d(params: ArrayLike) -> NDArray[np.float64]:
    p = np.asarray(params, dtype=np.float64)
    if p.ndim == 1:
        p = p[None, :]
    if p.ndim != 2 or p.shape[1] != 5:
        raise SVIInputError(f"params must have shape (5,) or (n, 5) as a, b, rho, m, sigma; got {p.shape}")
    return p


def _broadcast(
    k: ArrayLike, params: ArrayLike
) -> tuple[NDArray[np.float64], list[NDArray[np.float64]], bool]:
    p = np.asarray(params, dtype=np.float64)
    single = p.ndim == 1
    p2 = _params2d(p)
    kk = np.asarray(k, dtype=np.float64)
    cols = [p2[:, j] for j in range(5)]
    if single:
        return kk, [c[0] for c in cols], True
    # (n, 5) params with k of shape (m,) -> (n, m); k of shape (n, m) -> (n, m); k (n,) -> (n,)
    if kk.ndim == 1 and kk.shape[0] != p2.shape[0] or kk.ndim == 2:
        cols = [c[:, None] for c in cols]
        if kk.ndim == 1:
            kk = kk[None, :]
    return kk, cols, False


def total_variance(log_moneyness: ArrayLike, params: ArrayLike) -> NDArray[np.float64]:
    """Raw-SVI total implied variance ``w(k)``.

    Parameters
    ----------
    log_moneyness : array_like
        ``k = log(K / F)``.
    params : array_like, shape (5,) or (n, 5)
        Raw SVI ``a, b, rho, m, sigma``. With (n, 5) rows and ``k`` of shape (m,) (m != n) or (n, m), the
        result has shape (n, m); with ``k`` of shape (n,), one value per row.
    """
    kk, (a, b, rho, m, sig), _ = _broadcast(log_moneyness, params)
    x = kk - m
    return np.asarray(a + b * (rho * x + np.sqrt(x * x + sig * sig)), dtype=np.float64)


def svi_g(log_moneyness: ArrayLike, params: ArrayLike) -> NDArray[np.float64]:
    """Gatheral-Jacquier's butterfly function ``g(k)`` for raw SVI (analytic derivatives).

    ``g(k) = (1 - k w' / (2 w))^2 - w'^2 / 4 (1 / w + 1 / 4) + w'' / 2``; the slice is free of butterfly
    arbitrage where ``g >= 0`` (and ``w > 0``). NaN where ``w(k) <= 0`` (g undefined there).

    Parameters
    ----------
    log_moneyness : array_like
        ``k = log(K / F)``.
    params : array_like, shape (5,) or (n, 5)
        Raw SVI rows ``a, b, rho, m, sigma`` (broadcast as in :func:`total_variance`).
    """
    kk, (a, b, rho, m, sig), _ = _broadcast(log_moneyness, params)
    x = kk - m
    r = np.sqrt(x * x + sig * sig)
    w = a + b * (rho * x + r)
    w1 = b * (rho + x / r)
    w2 = b * sig * sig / r**3
    with np.errstate(divide="ignore", invalid="ignore"):
        t = 1.0 - kk * w1 / (2.0 * w)
        g = t * t - 0.25 * w1 * w1 * (1.0 / w + 0.25) + 0.5 * w2
    return np.asarray(np.where(w > 0.0, g, np.nan), dtype=np.float64)


def raw_to_jw(params: ArrayLike, *, expiry_years: ArrayLike) -> NDArray[np.float64]:
    """Raw SVI -> SVI-JW ``(v, psi, p, c, v_tilde)`` (Gatheral and Jacquier 2014, section 3.3).

    ``v = w(0) / T`` ATM variance, ``psi`` ATM skew, ``p``/``c`` put/call wing slopes, ``v_tilde`` minimum
    implied variance (annualised). ``expiry_years`` broadcasts against the rows.
    """
    p = _params2d(params)
    a, b, rho, m, sig = p.T
    t = np.asarray(expiry_years, dtype=np.float64)
    r = np.sqrt(m * m + sig * sig)
    wt = a + b * (-rho * m + r)
    sw = np.sqrt(wt)
    out = np.stack(
        [
            wt / t,
            b / (2.0 * sw) * (rho - m / r),
            b * (1.0 - rho) / sw,
            b * (1.0 + rho) / sw,
            (a + b * sig * np.sqrt(1.0 - rho * rho)) / t,
        ],
        axis=-1,
    )
    return out[0] if np.ndim(params) == 1 else out


def jw_to_raw(jw: ArrayLike, *, expiry_years: ArrayLike) -> NDArray[np.float64]:
    """SVI-JW ``(v, psi, p, c, v_tilde)`` -> raw ``(a, b, rho, m, sigma)`` (Gatheral-Jacquier Lemma 3.2).

    Rows whose JW parameters do not correspond to a raw SVI (``|beta| > 1``) give NaN, and so does the
    symmetric case ``psi = 0, p = c, v = v_tilde`` (``rho = m = 0``), where ``sigma`` is not identified.
    """
    j = _params2d(jw)
    v, psi, p, c, vt = j.T
    t = np.asarray(expiry_years, dtype=np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        w = v * t
        sw = np.sqrt(w)
        b = 0.5 * sw * (c + p)
        rho = 1.0 - p * sw / b
        beta = rho - 2.0 * psi * sw / b
        alpha = np.sign(beta) * np.sqrt(1.0 / (beta * beta) - 1.0)
        sq = np.sqrt(1.0 - rho * rho)
        m = (v - vt) * t / (b * (-rho + np.sign(alpha) * np.sqrt(1.0 + alpha * alpha) - alpha * sq))
        sig = alpha * m
        # m = 0 (v == v_tilde): the minimum is at k = 0, sigma from w(0) - v~ t = b sigma (1 - sqrt(1-rho^2))
        m0 = v == vt
        sig = np.where(m0, (w - vt * t) / (b * (1.0 - sq)), sig)
        m = np.where(m0, 0.0, m)
        a = vt * t - b * sig * sq
        out = np.stack([a, b, rho, m, sig], axis=-1)
    out[~(np.abs(beta) <= 1.0)] = np.nan
    out[~np.isfinite(out).all(axis=-1)] = np.nan
    return out[0] if np.ndim(jw) == 1 else out


def gj_jw_repair(jw: ArrayLike) -> NDArray[np.float64]:
    """Gatheral-Jacquier's butterfly repair in JW terms (section 5.1): keep ``v, psi, p``, set
    ``c' = p + 2 psi`` and ``v~' = v 4 p c' / (p + c')^2`` (the SSVI slice with the same ATM variance,
    skew and put wing)."""
    j = _params2d(jw).copy()
    v, psi, p = j[:, 0], j[:, 1], j[:, 2]
    c2 = p + 2.0 * psi
    j[:, 3] = c2
    j[:, 4] = v * 4.0 * p * c2 / (p + c2) ** 2
    return j[0] if np.ndim(jw) == 1 else j


@dataclasses.dataclass(frozen=True)
class ButterflyCheck:
    """Per row: ``ok`` (g >= 0 and w > 0 on the grid), ``min_g``, and ``k_at_min`` where it is reached."""

    ok: NDArray[np.bool_]
    min_g: NDArray[np.float64]
    k_at_min: NDArray[np.float64]


def check_butterfly(params: ArrayLike, log_moneyness: ArrayLike) -> ButterflyCheck:
    """Butterfly check of raw-SVI rows on a log-moneyness grid (shape (m,) shared, or (n, m) per row).

    A point with ``w(k) <= 0`` counts as a violation with ``g = -inf``.
    """
    p = _params2d(params)
    k = np.asarray(log_moneyness, dtype=np.float64)
    kk = np.broadcast_to(k if k.ndim == 2 else k[None, :], (p.shape[0], k.shape[-1]))
    g = svi_g(kk, p)
    g = np.where(np.isnan(g), -np.inf, g)
    i = np.argmin(g, axis=1)
    mg = g[np.arange(p.shape[0]), i]
    return ButterflyCheck(ok=mg >= 0.0, min_g=mg, k_at_min=kk[np.arange(p.shape[0]), i])


def check_calendar(
    params: ArrayLike, log_moneyness: ArrayLike
) -> tuple[NDArray[np.bool_], NDArray[np.float64]]:
    """Calendar check of consecutive raw-SVI rows (ordered by increasing expiry) on a shared grid.

    Returns ``(ok, min_gap)`` of length n - 1: ``min_gap[i] = min_k w_{i+1}(k) - w_i(k)`` and
    ``ok = min_gap >= 0``.
    """
    p = _params2d(params)
    w = total_variance(np.asarray(log_moneyness, dtype=np.float64), p)
    if w.ndim == 1:
        w = w[None, :]
    gap = (w[1:] - w[:-1]).min(axis=1) if p.shape[0] > 1 else np.empty(0)
    return gap >= 0.0, gap


def check_butterfly_exact(
    params: ArrayLike, *, k_low: ArrayLike, k_high: ArrayLike, min_points: int = 201
) -> ButterflyCheck:
    """Butterfly check of raw-SVI rows as continuous functions on ``[k_low, k_high]``.

    The minimum of Gatheral-Jacquier's g is found on a uniform grid in ``u`` (``k - m = sigma sinh u``,
    step <= 0.05, at least ``min_points`` points) with every local minimum refined by golden section;
    ``ok`` also requires Lee's wing bound ``b (1 + |rho|) <= 2``, which keeps g >= 0 asymptotically
    beyond the interval. A slice with ``w <= 0`` anywhere gets ``min_g = -inf``.

    Parameters
    ----------
    params : array_like, (5,) or (n, 5)
        Raw SVI rows ``a, b, rho, m, sigma``.
    k_low, k_high : array_like
        Interval ends in log-moneyness ``log(K / F)``, scalars or one per row.
    min_points : int
        Minimum grid points before refinement.
    """
    from volfast.svi._arbitrage import min_g as _min_g_jit

    _min_g: Any = _min_g_jit  # a Numba dispatcher (its type declarations do not know the signature)

    p = _params2d(params)
    lo = np.broadcast_to(np.asarray(k_low, dtype=np.float64), (p.shape[0],))
    hi = np.broadcast_to(np.asarray(k_high, dtype=np.float64), (p.shape[0],))
    mg = np.empty(p.shape[0])
    km = np.empty(p.shape[0])
    for i, row in enumerate(p):
        if not (np.isfinite(row).all() and row[4] > 0.0 and lo[i] <= hi[i]):
            raise SVIInputError(f"row {i}: need finite params with sigma > 0 and k_low <= k_high")
        mg[i], km[i] = _min_g(*(float(x) for x in row), float(lo[i]), float(hi[i]), int(min_points))
    lee = p[:, 1] * (1.0 + np.abs(p[:, 2])) <= LEE_SLOPE * (1.0 + 1e-12)
    return ButterflyCheck(ok=(mg >= 0.0) & lee, min_g=mg, k_at_min=km)


def check_calendar_exact(
    params: ArrayLike,
) -> tuple[NDArray[np.bool_], NDArray[np.float64], NDArray[np.float64]]:
    """Calendar check of consecutive raw-SVI rows (increasing expiry) over the whole real line.

    The crossings of two raw-SVI slices are among the real roots of a quartic (the equation
    ``w_{i+1}(k) = w_i(k)`` squared twice); the gap keeps its sign between consecutive roots, so its minimum
    on each interval (golden section) and the wing slopes ``b (1 +- rho)`` decide ``w_{i+1} >= w_i``
    everywhere. Returns ``(ok, min_gap, k_at_min)`` of length n - 1; ``min_gap = -inf`` (with
    ``k = -+inf``) when a wing of the later slice is less steep than the earlier one's.
    """
    from volfast.svi._arbitrage import calendar_gap

    p = _params2d(params)
    n = max(p.shape[0] - 1, 0)
    gap = np.empty(n)
    kk = np.empty(n)
    for i in range(n):
        if not (np.isfinite(p[i : i + 2]).all() and (p[i : i + 2, 4] > 0.0).all()):
            raise SVIInputError(f"rows {i}, {i + 1}: need finite params with sigma > 0")
        gap[i], kk[i] = calendar_gap(np.ascontiguousarray(p[i + 1]), np.ascontiguousarray(p[i]))
    return gap >= 0.0, gap, kk


def ssvi_to_raw(*, theta: ArrayLike, phi: ArrayLike, rho: ArrayLike) -> NDArray[np.float64]:
    """An SSVI slice ``w = theta/2 (1 + rho phi k + sqrt((phi k + rho)^2 + 1 - rho^2))`` as raw SVI:
    ``a = theta/2 (1 - rho^2), b = theta phi / 2, m = -rho / phi, sigma = sqrt(1 - rho^2) / phi``."""
    th, ph, r = np.broadcast_arrays(*(np.asarray(x, dtype=np.float64) for x in (theta, phi, rho)))
    out = np.stack([0.5 * th * (1 - r * r), 0.5 * th * ph, r, -r / ph, np.sqrt(1 - r * r) / ph], axis=-1)
    return np.asarray(out, dtype=np.float64)


# ---- the batched fit --------------------------------------------------------------------------------------
def _as1d(name: str, x: ArrayLike, n: int | None = None) -> NDArray[np.float64]:
    a = np.ascontiguousarray(np.asarray(x, dtype=np.float64))
    if a.ndim != 1:
        raise SVIInputError(f"{name} must be 1-D, got shape {a.shape}")
    if n is not None and a.shape[0] != n:
        raise SVIInputError(f"{name} has length {a.shape[0]}, expected {n}")
    return a


def _numba_threads(n_threads: int | None) -> int:
    import numba

    t = resolve_threads(n_threads)
    cap = int(numba.config.NUMBA_NUM_THREADS)  # type: ignore[attr-defined]
    return cap if t == 0 else min(t, cap)


def fit_svi(
    log_moneyness: ArrayLike,
    total_variance: ArrayLike,
    offsets: ArrayLike,
    *,
    weights: ArrayLike | None = None,
    expiry_years: ArrayLike | None = None,
    arbitrage_free: bool = True,
    robust: bool = False,
    max_wing_slope: float = 4.0,
    bid_total_variance: ArrayLike | None = None,
    ask_total_variance: ArrayLike | None = None,
    threads: int | None = None,
    surface_id: ArrayLike | None = None,
    check_margin: float = 0.5,
    check_margin_sd: float | None = 4.0,
    check_points: int = 201,
    max_rmse: float | None = None,
    n_starts: int = 1,
    max_iter: int = 200,
    n_threads: int | None = None,
) -> SVIFit:
    """Fit raw SVI to every expiry slice of a ragged batch (quasi-explicit method, Numba, threads).

    Parameters
    ----------
    log_moneyness : array_like, (N,)
        ``k = log(K / F)`` of every quote, slice after slice.
    total_variance : array_like, (N,)
        Market total implied variance ``vol^2 T`` (mid), same layout.
    offsets : array_like of int, (n_slices + 1,)
        CSR offsets: slice ``s`` is ``[offsets[s], offsets[s + 1])``. Slices of one surface are ordered by
        increasing expiry.
    weights : array_like, (N,), optional
        Non-negative weights (e.g. vega^2 or 1 / spread^2); default ``1 / (ask - bid)^2`` when bid/ask are
        given, else equal. Normalised to mean 1 within each slice.
    expiry_years : array_like, (n_slices,), optional
        ACT/365 year fraction per slice; needed for the RMSE in vol points and for calendar checks. Without
        ``surface_id``, a new surface starts wherever the expiry does not increase.
    arbitrage_free : bool
        Enforce no arbitrage inside the fit: every OK/REPAIRED slice is free of butterfly arbitrage
        (g >= 0 on its quoted range widened by the check margin, Lee's wing bound ``b (1 + |rho|) <= 2``
        beyond) and of calendar arbitrage against the previous usable slice of its surface for every real
        k, by construction and as confirmed by the exact checkers (:func:`check_butterfly_exact`,
        :func:`check_calendar_exact`). A slice whose own best fit (``m`` among its quotes) already passes
        is OK; otherwise it is fitted under the constraints (all slices of a surface jointly as one QP in
        their linear parameters, or one after another with calendar bounds as cutting planes inside the
        quasi-explicit solve and butterfly as an exact-checked penalty; see :mod:`volfast.svi._enforce`
        and :mod:`volfast.svi._joint`) and is REPAIRED; ARBITRAGE where no arbitrage-free fit was found.
        False: independent unconstrained fits (``max_wing_slope`` as given, ``m`` free), flagged by the
        same exact checkers.
    robust : bool
        Huber IRLS (c = 1.345 on the MAD scale) against stray quotes.
    max_wing_slope : float
        Bound on ``b (1 + |rho|)`` (4 as in Gatheral's SVI; 2 is Roger Lee's moment bound).
    bid_total_variance, ask_total_variance : array_like, (N,), optional
        Total variance at the bid and ask implied vols (NaN bid allowed: one-sided quote). Used for the
        default weights and for :attr:`SVIFit.inside_bid_ask`.
    threads : int, optional
        Numba threads; default ``VOLFAST_NUM_THREADS`` or all cores (the one thread keyword of the
        public API; ``n_threads`` is a deprecated alias).
    surface_id : array_like of int, (n_slices,), optional
        Explicit surface membership; consecutive slices with the same id form a surface (expiries must
        increase within it).
    check_margin : float
        The butterfly check interval spans the quoted log-moneyness range extended on each side by this
        much at most (log-moneyness units) ...
    check_margin_sd : float or None
        ... and by at most this many "standard deviations" ``sqrt(w)`` of the slice (``w`` its median
        quoted total variance), but never by less than ``min(0.1, check_margin)``. None: ``check_margin``
        alone. The interval used for each slice is returned in :attr:`SVIFit.check_range`.
    check_points : int
        Minimum points of the uniform u-grid of the exact butterfly checker before refinement (its step is
        at most 0.05 in ``u``, ``k - m = sigma sinh u``).
    max_rmse : float, optional
        Slices whose RMSE (vol points) exceeds this get status NO_FIT.
    n_starts, max_iter : int
        Nelder-Mead starts (best grid points) and iterations per start of the outer (m, sigma) search.

    Returns
    -------
    SVIFit

    Raises
    ------
    SVIInputError
        (a ``ValueError``) for inconsistent array shapes, offsets or settings (per-slice problems give a
        status instead).
    """
    from volfast.svi import _enforce as enf
    from volfast.svi import _quasi_explicit as qe
    from volfast.svi import _weights as wts

    k = _as1d("log_moneyness", log_moneyness)
    n = k.shape[0]
    v = _as1d("total_variance", total_variance, n)
    off = np.ascontiguousarray(np.asarray(offsets))
    if off.ndim != 1 or off.shape[0] < 1 or not np.issubdtype(off.dtype, np.integer):
        raise SVIInputError("offsets must be a 1-D integer array of length n_slices + 1")
    off = off.astype(np.int64)
    if off[0] != 0 or off[-1] != n or np.any(np.diff(off) < 0):
        raise SVIInputError(
            f"offsets must start at 0, end at {n} (the number of quotes) and be non-decreasing"
        )
    ns = off.shape[0] - 1
    if not (max_wing_slope > 0.0 and math.isfinite(max_wing_slope)):
        raise SVIInputError(f"max_wing_slope must be positive and finite, got {max_wing_slope}")
    if check_points < 2 or not (check_margin >= 0.0):
        raise SVIInputError("check_points must be >= 2 and check_margin >= 0")
    if check_margin_sd is not None and not (check_margin_sd >= 0.0 and math.isfinite(check_margin_sd)):
        raise SVIInputError(f"check_margin_sd must be None or finite and >= 0, got {check_margin_sd}")
    T = _as1d("expiry_years", expiry_years, ns) if expiry_years is not None else np.full(ns, np.nan)
    has_ba = bid_total_variance is not None or ask_total_variance is not None
    if has_ba and (bid_total_variance is None or ask_total_variance is None):
        raise SVIInputError("give both bid_total_variance and ask_total_variance, or neither")
    bid, ask = np.empty(0), np.empty(0)
    if bid_total_variance is not None and ask_total_variance is not None:
        bid = _as1d("bid_total_variance", bid_total_variance, n)
        ask = _as1d("ask_total_variance", ask_total_variance, n)

    seg = np.repeat(np.arange(ns), np.diff(off))
    status = np.zeros(ns, np.uint8)
    reason = [""] * ns

    def _flag(bad: NDArray[np.bool_], code: SVIStatus, what: str) -> None:
        for s in np.unique(seg[bad]):
            if status[s] == 0:
                i = int(np.flatnonzero(bad[off[s] : off[s + 1]])[0])
                status[s] = code
                val = what.format(k=k[off[s] + i], v=v[off[s] + i])
                reason[s] = f"slice {s}: quote {i} (index {off[s] + i}): {val}"

    _flag(~np.isfinite(k), SVIStatus.INVALID_INPUT, "log-moneyness is {k}")
    _flag(~np.isfinite(v), SVIStatus.INVALID_INPUT, "total variance is {v}")
    _flag(v < 0.0, SVIStatus.INVALID_INPUT, "negative total variance {v}")
    if weights is not None:
        wt_in = _as1d("weights", weights, n)
        _flag(
            ~(np.isfinite(wt_in) & (wt_in >= 0.0)),
            SVIStatus.INVALID_INPUT,
            "weight is not a finite non-negative number",
        )
    if expiry_years is not None:
        for s in np.flatnonzero(~(np.isfinite(T) & (T > 0.0))):
            if status[s] == 0:
                status[s] = SVIStatus.INVALID_INPUT
                reason[s] = f"slice {s}: expiry_years is {T[s]} (must be > 0)"
    # distinct log-moneyness values per slice
    order_k = np.lexsort((k, seg))
    ks, ss = k[order_k], seg[order_k]
    new = np.ones(n, bool)
    new[1:] = (ks[1:] != ks[:-1]) | (ss[1:] != ss[:-1])
    distinct = np.bincount(ss[new], minlength=ns) if n else np.zeros(ns, np.int64)
    for s in np.flatnonzero(distinct < MIN_POINTS):
        if status[s] == 0:
            status[s] = SVIStatus.TOO_FEW_POINTS
            reason[s] = f"slice {s}: {distinct[s]} distinct log-moneyness values, need at least {MIN_POINTS}"

    wt = np.empty(n)
    if weights is not None:
        wts.normalise_weights(wt_in, off, wt)
        sums = np.add.reduceat(wt_in, off[:-1]) if n else np.zeros(0)
        for s in np.flatnonzero((np.diff(off) > 0) & ~(sums > 0.0)):
            if status[s] == 0:
                status[s] = SVIStatus.INVALID_INPUT
                reason[s] = f"slice {s}: all weights are zero"
    elif has_ba:
        wts.spread_weights(bid, ask, off, wt)
    else:
        wt.fill(1.0)

    # arbitrage-free slices obey Roger Lee's moment bound on the wing slopes
    slope = min(float(max_wing_slope), LEE_SLOPE) if arbitrage_free else float(max_wing_slope)
    m_out = M_OUT_ARBITRAGE_FREE if arbitrage_free else M_OUT_FREE
    todo = status == 0
    params = np.full((ns, 5), np.nan)
    obj = np.full(ns, np.nan)
    wt_fit = wt.copy()
    import numba

    prev_threads = numba.get_num_threads()
    if n_threads is not None:
        warnings.warn("fit_svi(n_threads=) is deprecated: use threads=", DeprecationWarning, stacklevel=2)
        threads = n_threads if threads is None else threads
    numba.set_num_threads(_numba_threads(threads))
    try:
        qe.fit_batch(
            k,
            v,
            wt,
            off,
            todo,
            slope,
            RHO_MAX,
            bool(robust),
            HUBER_C,
            int(n_starts),
            int(max_iter),
            params,
            obj,
            m_out,
            wt_fit,
        )
        bad = todo & ~(np.isfinite(params).all(axis=1) & np.isfinite(obj))
        for s in np.flatnonzero(bad):
            status[s] = SVIStatus.NO_FIT
            reason[s] = f"slice {s}: the optimiser returned non-finite parameters"
        todo &= ~bad

        kmin = np.full(ns, np.nan)
        kmax = np.full(ns, np.nan)
        nz = np.diff(off) > 0
        if n and nz.any():
            kmin[nz] = np.minimum.reduceat(k, off[:-1][nz])
            kmax[nz] = np.maximum.reduceat(k, off[:-1][nz])
        margin = np.full(ns, float(check_margin))
        if check_margin_sd is not None:
            for s in np.flatnonzero(todo):
                med = float(np.median(v[off[s] : off[s + 1]]))
                margin[s] = min(margin[s], float(check_margin_sd) * math.sqrt(max(med, 0.0)))
        margin = np.maximum(margin, min(MIN_CHECK_MARGIN, float(check_margin)))
        bf_klo = kmin - margin
        bf_khi = kmax + margin
        # surfaces: runs of fitted slices in increasing expiry
        order = np.flatnonzero(todo).astype(np.int64)
        starts = _surface_starts(order, T, surface_id, ns, expiry_years is not None)
        surf_off = np.append(np.flatnonzero(starts), order.shape[0]).astype(np.int64)

        repair = np.zeros(ns)
        if arbitrage_free and order.shape[0]:
            free_obj = obj.copy()
            fitted = params.copy()
            how = np.full(ns, -1, np.int64)
            enf.enforce_surfaces(
                k,
                v,
                wt_fit,
                off,
                params,
                surf_off,
                order,
                bf_klo,
                bf_khi,
                slope,
                slope,
                RHO_MAX,
                int(max_iter),
                m_out,
                int(check_points),
                how,
                T,
                enf._JOINT,
            )
            for s in np.flatnonzero(todo & (how != enf.FREE)):
                lo, hi = off[s], off[s + 1]
                if how[s] == enf.FAILED:
                    status[s] = SVIStatus.ARBITRAGE
                    reason[s] = (
                        f"slice {s}: no fit free of butterfly and calendar arbitrage found (its own fit "
                        f"violates them)"
                    )
                    continue
                r = total_variance_raw(k[lo:hi], params[s]) - v[lo:hi]
                obj[s] = float(np.sum(wt_fit[lo:hi] * r * r)) if not robust else _huber(r, wt[lo:hi])
                status[s] = SVIStatus.REPAIRED
                repair[s] = obj[s] / free_obj[s] - 1.0 if free_obj[s] > 0.0 else 0.0
                if how[s] == enf.COPIED:
                    reason[s] = (
                        f"slice {s}: no arbitrage-free fit of its own; takes its neighbour's parameters"
                    )
                else:
                    reason[s] = (
                        f"slice {s}: fitted under the butterfly and calendar constraints (its own fit "
                        f"would violate them); objective +{100 * repair[s]:.3g}%"
                    )
            params[status == SVIStatus.ARBITRAGE] = fitted[status == SVIStatus.ARBITRAGE]

        usable = todo & ((status == SVIStatus.OK) | (status == SVIStatus.REPAIRED))
        prev = np.full(ns, -1, np.int64)
        chk = np.flatnonzero(todo).astype(np.int64)
        surf_of = np.zeros(ns, np.int64)
        surf_of[order] = np.cumsum(starts) - 1
        last = -1
        for s in chk:
            if last >= 0 and surf_of[s] == surf_of[last]:
                prev[s] = last
            if usable[s] or not arbitrage_free:
                last = int(s)
            elif last >= 0 and surf_of[s] != surf_of[last]:
                last = -1

        rmse = np.full(ns, np.nan)
        inside = np.full(ns, np.nan)
        min_g = np.full(ns, np.nan)
        k_min_g = np.full(ns, np.nan)
        gap = np.full(ns, np.nan)
        k_gap = np.full(ns, np.nan)
        enf.diagnostics(
            k,
            v,
            bid if has_ba else k,
            ask if has_ba else k,
            has_ba,
            off,
            todo,
            params,
            T,
            prev,
            bf_klo,
            bf_khi,
            int(check_points),
            rmse,
            inside,
            min_g,
            k_min_g,
            gap,
            k_gap,
        )
    finally:
        numba.set_num_threads(prev_threads)

    if max_rmse is not None:
        for s in np.flatnonzero(todo & (rmse > max_rmse)):
            status[s] = SVIStatus.NO_FIT
            reason[s] = f"slice {s}: RMSE {rmse[s]:.3g} vol points exceeds max_rmse={max_rmse}"
    usable = (status == SVIStatus.OK) | (status == SVIStatus.REPAIRED)
    lee = params[:, 1] * (1.0 + np.abs(params[:, 2])) <= LEE_SLOPE * (1.0 + 1e-12)
    bfly = usable & (min_g >= 0.0) & lee
    cal = usable & (gap >= 0.0)
    if arbitrage_free:
        # enforcement accepts only slices that pass these checks; should one not, it is never reported OK
        for s in np.flatnonzero(usable & ~(bfly & cal)):
            status[s] = SVIStatus.ARBITRAGE
            reason[s] = f"slice {s}: the enforced fit fails the exact arbitrage checks (min g {min_g[s]:.3g})"
        usable = (status == SVIStatus.OK) | (status == SVIStatus.REPAIRED)
        bfly &= usable
        cal &= usable
    params[~usable] = np.nan
    return SVIFit(
        params=params,
        rmse=np.where(usable, rmse, np.nan),
        status=status,
        reason=reason,
        inside_bid_ask=np.where(usable, inside, np.nan),
        min_g=np.where(usable, min_g, np.nan),
        butterfly_ok=bfly,
        calendar_ok=cal,
        objective=np.where(usable, obj, np.nan),
        repair=np.where(usable, repair, np.nan),
        check_range=np.where(usable[:, None], np.stack([bf_klo, bf_khi], axis=1), np.nan),
        calendar_gap=np.where(usable, gap, np.nan),
    )


def total_variance_raw(k: NDArray[np.float64], p: NDArray[np.float64]) -> NDArray[np.float64]:
    x = k - p[3]
    return np.asarray(p[0] + p[1] * (p[2] * x + np.sqrt(x * x + p[4] * p[4])), dtype=np.float64)


def _huber(r: NDArray[np.float64], wt: NDArray[np.float64]) -> float:
    u = np.sqrt(wt) * np.abs(r)
    scale = 1.4826 * float(np.median(u))
    c = HUBER_C * scale
    return float(np.sum(np.where(u > c, 2.0 * c * u - c * c, u * u)))


def _surface_starts(
    order: NDArray[np.int64], T: NDArray[np.float64], surface_id: ArrayLike | None, ns: int, has_T: bool
) -> NDArray[np.bool_]:
    """For the fitted slices ``order``: True where a new surface starts."""
    m = order.shape[0]
    starts = np.ones(m, bool)
    if m == 0 or not has_T:
        return starts
    if surface_id is not None:
        sid = np.asarray(surface_id)
        if sid.shape != (ns,):
            raise SVIInputError(f"surface_id must have shape ({ns},), got {sid.shape}")
        for a in np.flatnonzero(sid[1:] == sid[:-1]):
            b = a + 1
            if np.isfinite(T[a]) and np.isfinite(T[b]) and not T[b] > T[a]:
                raise SVIInputError(
                    f"slices {a} and {b} of surface {sid[a]!r}: expiry_years must increase "
                    f"({T[a]} then {T[b]})"
                )
        starts[1:] = sid[order[1:]] != sid[order[:-1]]
        # a gap of unfitted slices between two slices of one surface keeps them in it
        return starts
    starts[1:] = ~(T[order[1:]] > T[order[:-1]])
    return starts
