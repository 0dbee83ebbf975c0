"""Black-76 implied vols of a day's quotes (bid, ask and mid), with a status per quote.

A quote is *usable* for the smile when its status is :attr:`QuoteStatus.OK` and it is on the chosen side:
by default the out-of-the-money one (puts with ``K < F``, calls with ``K >= F``), since quarterly ES and
equity options are American and their in-the-money side carries an early-exercise premium that Black-76
does not price. The vols come from :func:`volfast.implied_vol` (the C++ core) in one call for all three
prices; its per-price :class:`~volfast.IVStatus` codes are kept beside the quote's own status.
"""

from __future__ import annotations

import dataclasses
import enum
from typing import Any

import numpy as np

from volfast.iv import IVStatus, implied_vol

__all__ = ["SIDES", "QuoteStatus", "QuoteVols", "quote_vols"]

SIDES = ("otm", "call", "put", "both")


class QuoteStatus(enum.IntEnum):
    """Why a quote is (not) in the smile (stored as uint8).

    When several apply the quote gets the first of: BAD_STRIKE, NO_FORWARD, NO_QUOTE, ONE_SIDED, CROSSED,
    NONPOSITIVE, STALE, NO_VOL.
    """

    OK = 0
    NO_FORWARD = 1  # the expiry has no forward (parity regression failed): nothing to invert against
    NO_QUOTE = 2  # neither side quoted
    ONE_SIDED = 3  # exactly one side quoted
    CROSSED = 4  # bid > ask
    NONPOSITIVE = 5  # bid < 0, ask <= 0, or a zero bid (= no bid: no bid vol, no mid, never in a fit)
    STALE = 6  # the snapshot flagged the quote as stale (and ``drop_stale``)
    NO_VOL = 7  # the mid has no implied vol (below intrinsic / above the maximum: see mid_iv_status)
    BAD_STRIKE = 8  # strike or expiry not > 0


QUOTE_STATUS_TEXT = {
    QuoteStatus.OK: "ok",
    QuoteStatus.NO_FORWARD: "no forward for the expiry",
    QuoteStatus.NO_QUOTE: "no quote",
    QuoteStatus.ONE_SIDED: "one-sided quote",
    QuoteStatus.CROSSED: "crossed market (bid > ask)",
    QuoteStatus.NONPOSITIVE: "zero bid (no bid) or negative bid / non-positive ask",
    QuoteStatus.STALE: "stale quote",
    QuoteStatus.NO_VOL: "mid price outside the no-arbitrage bounds (no implied vol)",
    QuoteStatus.BAD_STRIKE: "strike or expiry not positive",
}


@dataclasses.dataclass
class QuoteVols:
    """Per-quote results, all arrays of the quotes' length.

    Vols are annualised fractions, NaN where the price has no vol (its ``*_iv_status`` says why).
    """

    log_moneyness: np.ndarray  # ln(K / F); NaN without a forward
    mid: np.ndarray  # (bid + ask) / 2, index points
    bid_iv: np.ndarray
    ask_iv: np.ndarray
    mid_iv: np.ndarray
    bid_iv_status: np.ndarray  # uint8 IVStatus
    ask_iv_status: np.ndarray
    mid_iv_status: np.ndarray
    status: np.ndarray  # uint8 QuoteStatus
    on_side: np.ndarray  # bool: on the chosen side (out of the money by default)
    use: np.ndarray  # bool: status OK and on the chosen side: the quotes the smile is fitted to

    def status_counts(self) -> dict[str, int]:
        """``{status name (lower case): count}`` for every status that occurs."""
        vals, cnt = np.unique(self.status, return_counts=True)
        return {QuoteStatus(int(v)).name.lower(): int(c) for v, c in zip(vals, cnt, strict=True)}


def _f64(name: str, x: Any, n: int) -> np.ndarray:
    a = np.asarray(x, dtype=np.float64)
    try:
        return np.broadcast_to(a, (n,))
    except ValueError:
        raise ValueError(f"{name}: shape {a.shape} does not match {n} quotes") from None


def quote_vols(
    *,
    strike: Any,
    is_call: Any,
    bid: Any,
    ask: Any,
    forward: Any,
    expiry_years: Any,
    discount_factor: Any = 1.0,
    stale: Any = None,
    side: str = "otm",
    drop_stale: bool = True,
    threads: int | None = None,
) -> QuoteVols:
    """Implied vols of bid, ask and mid for each quote, and whether it belongs in the smile.

    Parameters
    ----------
    strike : array_like
        Strikes, index points, shape (n,).
    is_call : array_like of bool
        (n,).
    bid, ask : array_like
        Quoted premiums in index points, NaN where a side is missing, (n,).
    forward : array_like
        The quote's expiry forward (index points), per quote or broadcast; NaN marks an expiry without
        a forward (status ``NO_FORWARD``).
    expiry_years : array_like
        ACT/365 years from the snapshot's cut to expiry, > 0.
    discount_factor : array_like, default 1.0
        Discount factor to the premium payment date, > 0.
    stale : array_like of bool, optional
        The snapshot's ``stale`` flag; with ``drop_stale`` such quotes get status ``STALE``.
    side : {"otm", "call", "put", "both"}
        Which quotes enter the smile: out of the money (puts below the forward, calls at or above),
        calls only, puts only, or both.
    threads : int, optional
        C++ threads for the implied-vol solver.

    Returns
    -------
    QuoteVols
        Never raises per quote: every problem is a status.
    """
    if side not in SIDES:
        raise ValueError(f"side must be one of {SIDES}, got {side!r}")
    K = np.asarray(strike, dtype=np.float64).reshape(-1)
    n = K.size
    call = np.broadcast_to(np.asarray(is_call, dtype=bool), (n,))
    b = _f64("bid", bid, n)
    a = _f64("ask", ask, n)
    F = _f64("forward", forward, n)
    T = _f64("expiry_years", expiry_years, n)
    D = _f64("discount_factor", discount_factor, n)
    st = np.zeros(n, dtype=bool) if stale is None else np.broadcast_to(np.asarray(stale, dtype=bool), (n,))

    has_b, has_a = np.isfinite(b), np.isfinite(a)
    # A zero (or negative) bid is no bid: it has no vol, and there is no two-sided mid. Likewise an ask <= 0.
    # (implied_vol(0) is 0.0 by continuity; a vol of 0.0 must never stand for "nobody bids".)
    priced_b = has_b & (b > 0)
    priced_a = has_a & (a > 0)
    mid = np.where(priced_b & priced_a, 0.5 * (b + a), np.nan)
    fwd_ok = np.isfinite(F) & (F > 0) & np.isfinite(D) & (D > 0)
    with np.errstate(invalid="ignore", divide="ignore"):
        k = np.where(fwd_ok & (K > 0), np.log(K / np.where(fwd_ok, F, 1.0)), np.nan)

    # the first reason that applies wins: assign from the last to the first
    status = np.full(n, QuoteStatus.OK, dtype=np.uint8)
    two = has_b & has_a
    F_safe = np.where(fwd_ok, F, 1.0)
    D_safe = np.where(fwd_ok, D, 1.0)
    K_safe = np.where(K > 0, K, 1.0)
    T_safe = np.where(T > 0, T, 1.0)
    prices = np.concatenate([np.where(priced_b, b, np.nan), np.where(priced_a, a, np.nan), mid])
    r = implied_vol(
        prices,
        forward=np.tile(F_safe, 3),
        strike=np.tile(K_safe, 3),
        expiry_years=np.tile(T_safe, 3),
        is_call=np.tile(call, 3),
        discount_factor=np.tile(D_safe, 3),
        threads=threads,
    )
    iv = np.asarray(r.iv).reshape(3, n)
    ivs = np.asarray(r.status).reshape(3, n).copy()
    bad_input = ~fwd_ok | ~(K > 0) | ~(T > 0) | ~np.isfinite(T)
    ivs[:, bad_input] = IVStatus.INVALID_INPUT
    ivs[0, ~priced_b] = IVStatus.INVALID_INPUT
    ivs[1, ~priced_a] = IVStatus.INVALID_INPUT
    ivs[2, ~(priced_b & priced_a)] = IVStatus.INVALID_INPUT
    iv = np.where(ivs == IVStatus.OK, iv, np.nan)

    status[two & (ivs[2] != IVStatus.OK)] = QuoteStatus.NO_VOL
    if drop_stale:
        status[st] = QuoteStatus.STALE
    status[two & ((b <= 0) | (a <= 0))] = QuoteStatus.NONPOSITIVE
    status[two & (b > a)] = QuoteStatus.CROSSED
    status[has_b ^ has_a] = QuoteStatus.ONE_SIDED
    status[~has_b & ~has_a] = QuoteStatus.NO_QUOTE
    status[~fwd_ok] = QuoteStatus.NO_FORWARD
    status[~(K > 0) | ~(T > 0) | ~np.isfinite(T)] = QuoteStatus.BAD_STRIKE

    if side == "otm":
        on_side = np.where(call, K >= F, K < F)
    elif side == "call":
        on_side = call.copy()
    elif side == "put":
        on_side = ~call
    else:
        on_side = np.ones(n, dtype=bool)
    on_side &= fwd_ok
    return QuoteVols(
        log_moneyness=k,
        mid=mid,
        bid_iv=iv[0],
        ask_iv=iv[1],
        mid_iv=iv[2],
        bid_iv_status=ivs[0].astype(np.uint8),
        ask_iv_status=ivs[1].astype(np.uint8),
        mid_iv_status=ivs[2].astype(np.uint8),
        status=status,
        on_side=on_side,
        use=on_side & (status == QuoteStatus.OK),
    )
