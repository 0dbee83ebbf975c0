"""Pinned Arrow schemas of the ``volfast surfaces`` tables (besides the grids' :data:`GRID_SCHEMA`).

Status columns are small integers: quotes ``status`` is :class:`volfast.surface.QuoteStatus`, the
``*_iv_status`` columns :class:`volfast.IVStatus`, forwards ``status`` :class:`volfast.forward.ForwardStatus`,
svi ``status`` :class:`volfast.svi.SVIStatus`; each non-OK slice also carries its ``reason`` as text.

No table stores the date: it is the hive partition (``date=YYYY-MM-DD``), so ``pyarrow.parquet.read_table``
or ``pandas.read_parquet`` on a table's folder adds it as a column (and :func:`volfast.surface.read_output`
adds it as ``date32``).
"""

from __future__ import annotations

from typing import Any

__all__ = ["DAYS_SCHEMA", "FORWARDS_SCHEMA", "QUOTES_SCHEMA", "SVI_SCHEMA"]


def _schemas() -> tuple[Any, Any, Any, Any]:
    import pyarrow as pa

    ts = pa.timestamp("ns", tz="UTC")
    f64, u8, i16, i32, b, s = pa.float64(), pa.uint8(), pa.int16(), pa.int32(), pa.bool_(), pa.string()
    quotes = pa.schema(
        [
            pa.field("slice", i16, nullable=False),  # row of the day's forwards / svi tables
            pa.field("instrument_id", pa.uint32(), nullable=False),
            pa.field("raw_symbol", s),
            pa.field("underlying", s),
            pa.field("expiration", ts),
            pa.field("expiry_years", f64),  # ACT/365 from the cut
            pa.field("strike", f64),  # index points
            pa.field("is_call", b),
            pa.field("bid", f64),  # index points, NaN when the side is missing
            pa.field("ask", f64),
            pa.field("mid", f64),
            pa.field("stale", b),  # the snapshot's flag
            pa.field("forward", f64),  # the expiry's forward, NaN without one
            pa.field("discount_factor", f64),
            pa.field("log_moneyness", f64),  # ln(K/F)
            pa.field("bid_iv", f64),  # Black-76 vols, fractions; NaN where the *_iv_status is not OK
            pa.field("ask_iv", f64),
            pa.field("mid_iv", f64),
            pa.field("bid_iv_status", u8),
            pa.field("ask_iv_status", u8),
            pa.field("mid_iv_status", u8),
            pa.field("status", u8),  # QuoteStatus
            pa.field("on_side", b),  # on the smile's side (out of the money by default)
            pa.field("used", b),  # in the SVI fit: status OK and on_side
            pa.field("fit_iv", f64),  # the slice's SVI vol at log_moneyness, NaN without a fit
            pa.field("inside_bid_ask", b),  # used and bid_iv <= fit_iv <= ask_iv
            # American (de-Americanised): the early-exercise premium taken off bid, ask and mid before parity
            # and the vols (bid_iv... are the European-equivalent prices' vols); 0 for European options
            pa.field("exercise_premium", f64),
        ],
        metadata={b"volfast.schema": b"surface-quotes/1"},
    )
    forwards = pa.schema(
        [
            pa.field("slice", i16, nullable=False),
            pa.field("underlying", s),
            pa.field("expiration", ts),
            pa.field("expiry_years", f64),
            pa.field("n_options", i32),
            pa.field("forward", f64),  # index points; NaN unless status is OK / POOLED_DISCOUNT
            pa.field("discount_factor", f64),
            pa.field("rate", f64),  # -ln(D) / T, continuously compounded, ACT/365
            pa.field("forward_lo", f64),
            pa.field("forward_hi", f64),
            pa.field("discount_lo", f64),
            pa.field("discount_hi", f64),
            pa.field("n_pairs", i32),
            pa.field("n_outside", i32),
            pa.field("rmse", f64),  # parity residual RMSE, index points
            pa.field("status", u8),  # ForwardStatus
            pa.field("reason", s),
            pa.field("method", s),
        ],
        metadata={b"volfast.schema": b"surface-forwards/1"},
    )
    svi = pa.schema(
        [
            pa.field("slice", i16, nullable=False),
            pa.field("underlying", s),
            pa.field("expiration", ts),
            pa.field("expiry_years", f64),
            pa.field("forward", f64),
            pa.field("n_quotes", i32),  # quotes fitted
            pa.field("n_strikes", i32),  # distinct strikes among them
            pa.field("k_min", f64),  # their ln(K/F) range
            pa.field("k_max", f64),
            pa.field("a", f64),  # raw SVI on total variance; NaN without an acceptable fit
            pa.field("b", f64),
            pa.field("rho", f64),
            pa.field("m", f64),
            pa.field("sigma", f64),
            pa.field("rmse", f64),  # vol points
            pa.field("inside_bid_ask", f64),  # share of fitted quotes with the fit inside bid/ask
            pa.field("min_g", f64),  # Gatheral-Jacquier g(k) minimum on the check grid
            pa.field("butterfly_ok", b),
            pa.field("calendar_ok", b),
            pa.field("repair", f64),
            pa.field("status", u8),  # SVIStatus
            pa.field("reason", s),
            pa.field("expiry_valid", b),  # passes the day-validity checks
            pa.field("validity_reason", s),
            pa.field("in_surface", b),  # one of the slices w(k, T) was built from
        ],
        metadata={b"volfast.schema": b"surface-svi/1"},
    )
    days = pa.schema(
        [
            pa.field("valid", b, nullable=False),
            pa.field("reason", s),  # why not valid ("" when valid)
            pa.field("cut", ts),
            pa.field("options", i32),
            pa.field("quotes_used", i32),
            pa.field("expiries", i32),
            pa.field("expiries_with_forward", i32),
            pa.field("expiries_fitted", i32),
            pa.field("expiries_valid", i32),
            pa.field("counts", s),  # JSON: every count, status histograms included
            pa.field("timings", s),  # JSON: seconds per stage
        ],
        metadata={b"volfast.schema": b"surface-days/1"},
    )
    return quotes, forwards, svi, days


QUOTES_SCHEMA, FORWARDS_SCHEMA, SVI_SCHEMA, DAYS_SCHEMA = _schemas()
